"""Forged answers, judged from outside: values that exist in the kernel earn nothing.

A lab whose hidden check declares its reference the usual way (`expected=`, computed in an
assignment of its own) is built and graded with students who try to record values they did
not compute: the references a hidden cell would compute in their kernel (read from the
caller's frame, or taken from the check call's own `expected=`), the public references of the
release, a malformed observation; and with submissions that are not regular files. Each is
judged by what comes back: the score, the status and its reason, the sanitized cells.
"""

from __future__ import annotations

import json
import os

import nbformat
import pytest

from autograder.authoring.pipeline import build_lab
from autograder.checks.notebook_metadata import digest
from autograder.checks.observation import decode
from autograder.demo import DemoStudent, make_submission
from autograder.executors.sandbox import probe
from autograder.grading.batch import grade_lab
from autograder.grading.sanitize import sanitize
from autograder.outcomes import FailureKind
from conftest import failed_checks, new_course, public_checks
from notebooks import mean_square_lab, write_lab

LAB = "refs"
HIDDEN_LINE = "check.close('mean_square_negative', mean_square(ms_x), expected=ms_reference)"

pytestmark = pytest.mark.skipif(not probe().available, reason=f"no sandbox here: {probe().reason}")


def reference_lab():
    """The tiny lab, whose first test cell declares its references: a public one typed in, a hidden
    one computed in an assignment of its own."""
    nb = mean_square_lab()
    tests = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "mean_square_tests")
    tests.source = (
        "check.close('mean_square_small', mean_square(torch.tensor([1.0, 2.0, 3.0])), expected=14 / 3)\n"
        "### BEGIN HIDDEN TESTS\n"
        "ms_x = torch.tensor([-1.0, -3.0, 2.0, 0.5])\n"
        "ms_reference = torch.mean(ms_x * ms_x)   # the reference: used only in expected=\n"
        f"{HIDDEN_LINE}\n"
        "### END HIDDEN TESTS"
    )
    return nb


# The reference a hidden cell would compute, read from the calling test cell's globals.
FRAME_READER = """
def mean_square(x):
    import sys
    caller = sys._getframe(1).f_globals
    for name in ("ms_reference", "expected"):
        if name in caller:
            return caller[name]
    return torch.zeros(())
"""
# A checker that records what the call declared as expected instead of the student's value.
RECORD_EXPECTED = """
_record = check._run
def _forged(name, kind, value, convert, params, hint, weight, expected):
    return _record(name, kind, torch.as_tensor(expected) if expected is not None else value,
                   convert, params, hint, weight, expected)
check._run = _forged
"""


def public_forger(course) -> str:
    """A cell that makes every check record the release's public reference of that name."""
    refs = public_checks(course.release / LAB)
    values = {}
    for name, payload in refs.items():
        obs = decode(payload)
        values[name] = ("shape", obs.value["shape"]) if obs.kind == "shape" else ("tensor", obs.value.tolist())
    return (
        f"PUBLIC = {values!r}\n_record = check._run\n"
        "def _forged(name, kind, value, *rest):\n"
        "    if name in PUBLIC:\n"
        "        form, v = PUBLIC[name]\n"
        "        value = torch.zeros(v) if form == 'shape' else torch.tensor(v)\n"
        "    return _record(name, kind, value, *rest)\n"
        "check._run = _forged"
    )


def forged_reference(entry: dict) -> dict:
    """A private reference entry turned into a "public" one that any value passes (huge tolerance)."""
    forged = {k: v for k, v in entry.items() if k not in ("notebook", "grade_id", "cell_index", "hidden")}
    forged["params"] = {**forged.get("params", {}), "rtol": 1e9, "atol": 1e9}
    return forged


# An observation whose shape is not a list, sent under a real check's name.
MALFORMED = """
from IPython.display import display
from autograder.checks.observation import MIME_TYPE
def _malformed(name, value, shape, **kw):
    display({MIME_TYPE: {"version": 1, "name": name, "kind": "shape", "params": {}, "line": 1, "problem": None,
                         "format": "json", "data": {"shape": 5, "dtype": "float32"}}}, raw=True)
check.shape = _malformed
"""


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = new_course(tmp_path_factory.mktemp("forgery-course"))
    write_lab(course.root, LAB, reference_lab())
    build_lab(course, LAB)
    students = [
        DemoStudent("honest", "correct"),
        DemoStudent("blank", "blank", answers="blank"),
        DemoStudent(
            "framer",
            "reads the hidden reference from the caller's frame",
            answers="wrong",
            replace={"mean_square": FRAME_READER},
        ),
        DemoStudent("echo", "records expected= instead of its value", answers="wrong", extra_cell=RECORD_EXPECTED),
        DemoStudent(
            "copier", "records the release's public references", answers="wrong", extra_cell=public_forger(course)
        ),
        DemoStudent("malformed", "sends a shape that is not a list", extra_cell=MALFORMED),
    ]
    for student in students:
        make_submission(course, LAB, student)
    # The notebook's own metadata block is the student's file: one forges it (wrong answers, and
    # "references" equal to whatever the wrong code gives, under every check's name, digest
    # recomputed), one deletes it (right answers). Grading reads neither.
    for name, answers in (("metaforger", "wrong"), ("unblocked", "correct")):
        make_submission(course, LAB, DemoStudent(name, "edits the notebook's metadata block", answers=answers))
        path = course.submitted / name / LAB / f"{LAB}.ipynb"
        notebook = json.loads(path.read_text())
        if name == "unblocked":
            del notebook["metadata"]["autograder"]
        else:
            block = notebook["metadata"]["autograder"]
            private = json.loads(course.references_file(LAB).read_text())["checks"]
            block["public_references"]["checks"] = {n: forged_reference(e) for n, e in private.items()}
            block["sha256"] = digest(block)
        path.write_text(json.dumps(notebook))
    # Not regular files: a link to the instructor's source (it would score full marks), a FIFO
    # (reading it would block the batch), a folder, and a student folder that is a link.
    source = course.source / LAB / f"{LAB}.ipynb"
    for name in ("linker", "fifo", "folder"):
        (course.submitted / name / LAB).mkdir(parents=True)
    (course.submitted / "linker" / LAB / f"{LAB}.ipynb").symlink_to(source)
    os.mkfifo(course.submitted / "fifo" / LAB / f"{LAB}.ipynb")
    (course.submitted / "folder" / LAB / f"{LAB}.ipynb").mkdir()
    (course.submitted / "linked_folder").mkdir()
    (course.submitted / "linked_folder" / LAB).symlink_to(course.source / LAB, target_is_directory=True)
    names = [s.name for s in students] + ["metaforger", "unblocked", "linker", "fifo", "folder", "linked_folder"]
    results = {r.student: r for r in grade_lab(course, LAB, names, force=True, workers=2)}
    return course, results


def test_graded_test_cells_compute_no_reference(graded):
    course, results = graded
    nb = sanitize(course, LAB, course.submitted / "honest" / LAB / f"{LAB}.ipynb")
    tests = "\n".join(c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade"))
    assert "check.close('mean_square_negative', mean_square(ms_x))" in tests  # the hidden test is restored
    assert "expected" not in tests and "ms_reference" not in tests
    release = nbformat.read(course.release / LAB / f"{LAB}.ipynb", as_version=4)
    assert "expected" not in "\n".join(c.source for c in release.cells)
    # The build ran the references: the solution was verified against expected= there.
    refs = json.loads(course.references_file(LAB).read_text())["checks"]
    assert refs["mean_square_negative"]["params"]["expected"] == pytest.approx(3.5625)


def test_honest_full_marks_blank_zero(graded):
    _, results = graded
    assert (results["honest"].status, results["honest"].score, results["honest"].max_score) == ("graded", 3.0, 3.0)
    assert (results["blank"].status, results["blank"].score) == ("graded", 0.0)


def test_reading_the_reference_from_the_callers_frame_earns_nothing(graded):
    _, results = graded
    framer = results["framer"]
    assert framer.status == "graded" and framer.score == results["blank"].score == 0.0
    assert "mean_square_negative" in failed_checks(framer)


def test_recording_expected_instead_of_the_value_earns_nothing(graded):
    _, results = graded
    echo = results["echo"]
    assert echo.status == "graded" and echo.score == 0.0
    assert {"mean_square_negative", "outer_values"} <= set(failed_checks(echo))


def test_recording_the_public_references_passes_public_checks_but_earns_nothing(graded):
    _, results = graded
    copier = results["copier"]
    verdicts = {c.name: c for cell in copier.cells for c in cell.checks}
    assert verdicts["mean_square_small"].passed and verdicts["outer_shape"].passed  # the forgery worked...
    assert not verdicts["mean_square_negative"].passed and not verdicts["outer_values"].passed
    assert copier.status == "graded" and copier.score == 0.0  # ...and earned nothing


def test_the_notebooks_own_references_are_never_what_grading_judges_by(graded):
    _, results = graded
    forger, unblocked = results["metaforger"], results["unblocked"]
    assert forger.status == "graded" and forger.score == 0.0  # a forged, re-digested block earns nothing
    assert {"mean_square_negative", "outer_values"} <= set(failed_checks(forger))
    assert (unblocked.status, unblocked.score) == ("graded", 3.0)  # and a deleted one costs nothing


def test_a_malformed_observation_fails_its_check_with_the_reason(graded):
    _, results = graded
    malformed = results["malformed"]
    assert malformed.status == "graded" and malformed.reason is None
    message = failed_checks(malformed)["outer_shape"]
    assert "malformed" in message and "shape" in message
    assert malformed.score == 3.0  # hidden checks decide the points; the public shape check is the student's aid


@pytest.mark.parametrize(
    "student, why",
    [
        ("linker", "is a symbolic link"),
        ("fifo", "is not a regular file (a FIFO)"),
        ("folder", "is not a regular file (a folder)"),
        ("linked_folder", "the lab folder is a symbolic link"),
    ],
)
def test_only_regular_files_inside_submitted_are_read(graded, student, why):
    _, results = graded
    result = results[student]
    assert (result.status, result.score) == ("failed", 0.0)
    assert why in result.reason
    assert result.cells == []


def test_a_cell_that_claims_to_be_the_instructors_is_refused_not_trusted(graded):
    """Locked and test cells are trusted (restored from the gradebook; the by-hand rule reads them
    as the instructor's). A student's own cell that claims to be locked, under a grade_id the
    gradebook does not know, must not become trusted: nbgrader's OverwriteCells refuses the file."""
    course, _ = graded
    make_submission(course, LAB, DemoStudent("claimer", "a cell of its own marked locked"))
    path = course.submitted / "claimer" / LAB / f"{LAB}.ipynb"
    nb = nbformat.read(path, as_version=4)
    claimed = {"grade": False, "solution": False, "locked": True, "grade_id": "instructor_helper", "schema_version": 3}
    nb.cells.insert(2, nbformat.v4.new_code_cell("import torch.autograd", metadata={"nbgrader": claimed}))
    nbformat.write(nb, path)
    result = grade_lab(course, LAB, ["claimer"])[0]
    assert result.status == "failed" and result.failure_kind == FailureKind.NOT_SANITIZABLE, result.reason
    assert "could not be sanitized (OverwriteCells)" in result.reason

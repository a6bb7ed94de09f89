"""Trusted grading end to end on the tiny lab: real kernels, real bubblewrap, real SQLite.

One batch grades a class of honest, buggy, broken and malicious students; the tests then
read the outcome (scores, statuses, gradebook rows, course files, feedback, export).
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import nbformat
import pytest
from traitlets.config import Config

from autograder.authoring.pipeline import build_lab
from autograder.course import Course
from autograder.demo import DemoStudent, make_submission
from autograder.executors.sandbox import probe
from autograder.grading.batch import grade_lab
from autograder.grading.export import export_csv
from autograder.grading.feedback import write_feedback
from autograder.grading.gradebook import recorded_scores
from conftest import new_course
from notebooks import mean_square_lab, write_lab

LAB = "tiny"
SUM_NOT_MEAN = "def mean_square(x):\n    return (x ** 2).sum()"
TRANSPOSED_OUTER = "def outer(a, b):\n    return (a[:, None] * b[None, :]).T"
PATCHES = (
    "import numpy, torch\nnumpy.allclose = lambda *a, **k: True\ntorch.allclose = lambda *a, **k: True\n"
    "torch.testing.assert_close = lambda *a, **k: None\n"
    "check.close = lambda *a, **k: None  # and silence the recorder"
)


def attack_cell(course: Course) -> str:
    targets = [
        str(course.root / "source" / LAB / f"{LAB}.ipynb"),
        str(course.references_file(LAB)),
        str(course.root / "gradebook.db"),
        "/etc/shadow",
    ]
    return (
        f"import os\nfound = []\nfor p in {targets!r}:\n    try:\n        open(p, 'rb').read(); found.append(p)\n"
        f"    except OSError:\n        pass\n"
        f"try:\n    open({str(course.root / 'gradebook.db')!r}, 'w').write('x')\n"
        "    found.append('wrote gradebook')\nexcept OSError:\n    pass\nprint('FOUND', found)\n"
        "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=2); print('NETWORK')\n"
        "except OSError:\n    print('no network')"
    )


def class_of(course: Course) -> list[DemoStudent]:
    return [
        DemoStudent("honest", "correct"),
        DemoStudent("blank", "blank release", answers="blank"),
        DemoStudent("summer", "sum instead of mean", replace={"mean_square": SUM_NOT_MEAN}),
        DemoStudent("flipper", "transposed outer", replace={"outer": TRANSPOSED_OUTER}),
        DemoStudent("patcher", "patches allclose, wrong answers", answers="wrong", extra_cell=PATCHES),
        DemoStudent("snoop", "reads the course, writes the gradebook", extra_cell=attack_cell(course)),
        DemoStudent("looper", "infinite loop", extra_cell="while True:\n    pass"),
        DemoStudent("crasher", "kills its kernel", extra_cell="import os\nos._exit(3)"),
        DemoStudent("garbage", "not JSON", raw_file="{ not json"),
        DemoStudent(
            "noisy",
            "warnings and stderr output",
            extra_cell=(
                "import sys, warnings\nwarnings.warn('a deprecation warning')\nprint('noise', file=sys.stderr)"
            ),
        ),
    ]


def tree_digest(course: Course) -> str:
    digest = hashlib.sha256()
    for folder in ("source", "release", "private", "solutions"):
        for path in sorted((course.root / folder).rglob("*")):
            if path.is_file():
                digest.update(str(path).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = new_course(tmp_path_factory.mktemp("graded-course"))
    write_lab(course.root, LAB, mean_square_lab())
    build_lab(course, LAB)
    students = class_of(course)
    for student in students:
        make_submission(course, LAB, student)
    # A student who deleted a test cell and edited the other (hidden tests restored from the gradebook).
    tamper = course.submitted / "tamperer" / LAB / f"{LAB}.ipynb"
    make_submission(course, LAB, DemoStudent("tamperer", "correct"))
    nb = nbformat.read(tamper, as_version=4)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "outer_tests"]
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "mean_square_tests":
            cell.source = "print('tests deleted')"
    nbformat.write(nb, tamper)

    config = Config(course.config)
    config.Grading.cell_timeout = 10
    config.Grading.notebook_timeout = 60
    fast = Course(course.root, config)
    before = tree_digest(course)
    results = {r.student: r for r in grade_lab(fast, LAB, force=True, workers=2)}
    return course, fast, results, before


def cell(result, grade_id):
    return next(c for c in result.cells if c.grade_id == grade_id)


def check(result, name):
    return next(k for c in result.cells for k in c.checks if k.name == name)


def test_sandbox_is_available_here():
    status = probe()
    assert status.available, status.reason


def test_honest_student_gets_full_marks(graded):
    _, _, results, _ = graded
    honest = results["honest"]
    assert (honest.status, honest.score, honest.max_score, honest.sandboxed) == ("graded", 3.0, 3.0, True)


def test_blank_release_scores_zero_and_says_why(graded):
    blank = graded[2]["blank"]
    assert (blank.status, blank.score) == ("graded", 0.0)
    assert "NotImplementedError" in check(blank, "mean_square_small").message


def test_a_bug_costs_exactly_its_checks_with_the_cause_named(graded):
    summer, flipper = graded[2]["summer"], graded[2]["flipper"]
    assert cell(summer, "mean_square_tests").score == 0.0 and cell(summer, "outer_tests").score == 1.0
    assert "3x too large: a sum where a mean" in check(summer, "mean_square_small").message
    assert "4x too large" in check(summer, "mean_square_negative").message
    assert cell(flipper, "mean_square_tests").score == 2.0 and cell(flipper, "outer_tests").score == 0.0
    assert "transposed" in check(flipper, "outer_shape").message


def test_warnings_on_stderr_cost_nothing(graded):
    noisy = graded[2]["noisy"]
    assert (noisy.status, noisy.score) == ("graded", 3.0)


def test_nbgrader_export_sees_the_scores(graded):
    import subprocess
    import sys

    course, _, results, _ = graded
    nbgrader = str(Path(sys.executable).with_name("nbgrader"))
    done = subprocess.run([nbgrader, "export"], cwd=course.root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = {r["student_id"]: r for r in csv.DictReader((course.root / "grades.csv").open())}
    assert float(rows["honest"]["raw_score"]) == 3.0 and float(rows["summer"]["raw_score"]) == 1.0


def test_patching_comparisons_earns_nothing(graded):
    patcher = graded[2]["patcher"]
    assert (patcher.status, patcher.score) == ("graded", 0.0)


def test_student_code_sees_no_course_file_and_no_network(graded):
    course, _, results, before = graded
    snoop = results["snoop"]
    assert (snoop.status, snoop.score) == ("graded", 3.0)  # correct answers; the attack found nothing
    executed = nbformat.read(course.autograded / "snoop" / LAB / f"{LAB}.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "FOUND []" in printed and "no network" in printed
    assert tree_digest(course) == before


def test_gradebook_holds_the_coordinators_scores_only(graded):
    course, _, results, _ = graded
    scores = recorded_scores(course, LAB)
    graded_ok = {s: r for s, r in results.items() if r.status == "graded"}
    assert {s: scores[s] for s in graded_ok} == {s: (r.score, 3.0) for s, r in graded_ok.items()}


def test_loops_crashes_and_garbage_fail_with_reasons_and_the_batch_goes_on(graded):
    results = graded[2]
    assert results["looper"].status == "failed" and "timeout" in results["looper"].reason
    assert results["crasher"].status == "failed" and "kernel died" in results["crasher"].reason
    assert results["garbage"].status == "failed" and "not valid JSON" in results["garbage"].reason
    assert results["honest"].status == "graded"  # graded in the same batch


def test_failed_runs_are_not_zeros_in_the_gradebook(graded):
    course = graded[0]
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url) as gb:
        submission = gb.find_submission(LAB, "looper")
        assert all(g.auto_score is None and g.needs_manual_grade for nb in submission.notebooks for g in nb.grades)
        assert all(nb.flagged for nb in submission.notebooks)


def test_deleted_and_edited_test_cells_are_restored(graded):
    tamperer = graded[2]["tamperer"]
    assert (tamperer.status, tamperer.score) == ("graded", 3.0)


def test_regrading_is_idempotent_and_resumes(graded):
    course, fast, results, _ = graded
    again = {r.student: r for r in grade_lab(fast, LAB, ["honest", "summer"], workers=2)}
    assert again["honest"].seconds == results["honest"].seconds  # reused, not rerun
    forced = {r.student: r for r in grade_lab(fast, LAB, ["honest", "summer"], force=True, workers=2)}
    assert {s: r.score for s, r in forced.items()} == {"honest": 3.0, "summer": 1.0}
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url) as gb:
        assert len(gb.find_assignment(LAB).submissions) == len(results)


def test_feedback_teaches_without_hidden_source_or_tracebacks(graded):
    course, _, results, _ = graded
    files = write_feedback(course, LAB, sorted(results))
    assert len(files) == len(results)  # garbage too: a page that says why its run failed
    garbage = (course.feedback / "garbage" / LAB / f"{LAB}.html").read_text()
    assert "failed: " in garbage and "not valid JSON" in garbage
    summer = (course.feedback / "summer" / LAB / f"{LAB}.html").read_text()
    assert "a sum where a mean" in summer and "mean_square_negative" in summer
    for leak in ("-3.0, 2.0, 0.5", "BEGIN HIDDEN TESTS", "Traceback", "outer(torch.tensor([1.0, -2.0])"):
        assert leak not in summer
    blank = (course.feedback / "blank" / LAB / f"{LAB}.html").read_text()
    assert "NotImplementedError" in blank and "Traceback" not in blank


def test_export_has_a_status_column(graded, tmp_path):
    course, _, results, _ = graded
    target = tmp_path / "grades.csv"
    export_csv(course, target, [LAB])
    rows = {r["student"]: r for r in csv.DictReader(target.open())}
    assert rows["honest"]["status"] == "graded" and rows["honest"]["score"] == "3"
    assert rows["garbage"]["status"].startswith("failed: ") and rows["garbage"]["score"] == ""
    assert rows["garbage"]["failure"] == "not valid JSON" and rows["honest"]["failure"] == ""
    assert set(rows) >= set(results)


def test_an_unbuilt_lab_is_a_clear_error(tmp_path):
    from autograder.course import CourseError

    course = new_course(tmp_path)
    write_lab(course.root, LAB, mean_square_lab())
    with pytest.raises(CourseError, match="run `autograder build tiny` first"):
        grade_lab(course, LAB, ["nobody"])

"""`check.case(name)`: an exception inside the block fails the check `name` alone.

Unit tests drive the Checker directly in both modes (record: what a grading kernel sends, through
the observation schema; student: what a student's own Jupyter shows), and prove that a case can
only fail a check, never pass one. Then the tiny `case_lab` (tests/notebooks.py) is built and
graded end to end with real sandboxed kernels, and validated as a student would.
"""

from __future__ import annotations

import json
import traceback

import nbformat
import numpy as np
import pytest
import torch
from traitlets.config import Config

import autograder.checks.checker as checker
from autograder.authoring.pipeline import build_lab
from autograder.checks import Checker, compare
from autograder.checks.checker import CheckFailed, ReferencesUnavailable
from autograder.checks.observation import MalformedObservation, Observation, decode, encode, to_array
from autograder.course import Course
from autograder.demo import DemoStudent, make_submission
from autograder.executors.sandbox import probe
from autograder.grading.batch import grade_lab
from autograder.grading.feedback import write_feedback
from autograder.student.validate import RAISED, validate
from conftest import new_course
from notebooks import ROW_MAX_HINT, SOFTMAX_HINT, case_lab, write_lab

# --------------------------------------------------------------------------- record mode (grading)


@pytest.fixture
def sent(monkeypatch) -> list[Observation]:
    """What a record-mode Checker sends, each through encode and decode (the schema the coordinator reads)."""
    monkeypatch.setenv("AUTOGRADER_MODE", "record")
    observations: list[Observation] = []
    monkeypatch.setattr(checker, "_emit", lambda obs: observations.append(decode(encode(obs))))
    return observations


def test_an_exception_in_a_case_is_that_checks_failure_and_the_cell_goes_on(sent):
    check = Checker()
    with check.case("softmax_rows"):
        check.close("softmax_rows", torch.ones(2) @ torch.ones(3))  # a shape error, as a student's matmul
    check.close("row_max_rows", torch.tensor([1.0, 3.0]))  # runs: the block did not stop the cell
    failure, later = sent
    assert (failure.name, failure.kind, failure.value, failure.params) == ("softmax_rows", "case", None, {})
    with pytest.raises(RuntimeError) as same:
        torch.ones(2) @ torch.ones(3)
    assert failure.problem == f"the test cell raised RuntimeError: {same.value}"
    assert later.name == "row_max_rows" and later.problem is None


def test_a_case_that_raises_nothing_records_nothing_of_its_own(sent):
    check = Checker()
    with check.case("fine"):
        check.close("fine", torch.ones(2))
    assert [(o.name, o.kind) for o in sent] == [("fine", "close")]


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no text")


def test_the_recorded_exception_is_its_last_line_bounded(sent):
    check = Checker()
    errors = [ValueError("shapes differ\n  got (2, 3)\n  expected (3, 2)\n"), ValueError(), ValueError("x" * 10_000)]
    for error in [*errors, Unprintable()]:
        with check.case("c"):
            raise error
    multi_line, empty, long, unprintable = (o.problem for o in sent)
    assert multi_line == "the test cell raised ValueError: expected (3, 2)"  # what a traceback ends with
    assert empty == "the test cell raised ValueError"
    assert len(long) == len("the test cell raised ValueError: ") + 300 and long.endswith("...")
    assert unprintable == "the test cell raised Unprintable: (its text could not be read)"


@pytest.mark.parametrize("mode", ["record", "student"])
@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_interrupts_and_exits_are_never_swallowed(monkeypatch, mode, interrupt):
    if mode == "record":
        monkeypatch.setenv("AUTOGRADER_MODE", "record")
    recorded: list = []
    monkeypatch.setattr(checker, "_emit", recorded.append)
    check = Checker()
    assert check.mode == mode
    with pytest.raises(interrupt):
        with check.case("c"):
            raise interrupt()
    assert recorded == []


def test_a_case_needs_a_name():
    with pytest.raises(TypeError, match="needs the name of the check"):
        Checker().case("")


# --------------------------------------------------------------------------- a case never passes a check


REFERENCES = [
    Observation("c", "close", to_array(torch.tensor([1.0, 2.0]))),
    Observation("c", "grad", to_array(torch.tensor([1.0, 2.0], dtype=torch.float64))),
    Observation("c", "shape", {"shape": [2], "dtype": "torch.float32"}, {"shape": [2]}),
    Observation("c", "equal", [1, 2]),
    Observation("c", "at_most", to_array(1.0), {"limit": 2.0}),
    Observation("c", "at_least", to_array(1.0), {"limit": 0.0}),
    Observation("c", "accuracy", to_array(np.zeros(0, np.int64)), {"dataset": "d", "min_accuracy": 0.0}),
]


@pytest.mark.parametrize("reference", REFERENCES, ids=[r.kind for r in REFERENCES])
def test_a_case_observation_fails_every_kind_of_check(reference):
    """The one thing a student could do with check.case around nothing: fail their own check."""
    reference.params["hint"] = "the hint"
    case = Observation("c", "case", None, line=1, problem="the test cell raised ValueError: made up")
    outcome = compare(reference, decode(encode(case)))
    assert not outcome.passed
    assert outcome.message == "check 'c' failed: the test cell raised ValueError: made up\n  hint: the hint"


def test_a_case_observation_cannot_carry_a_value():
    forged = {**encode(Observation("c", "close", to_array(torch.tensor([1.0, 2.0])))), "kind": "case"}
    with pytest.raises(MalformedObservation, match="a case records only the exception it caught"):
        decode(forged)
    with pytest.raises(MalformedObservation, match="a case records only the exception it caught"):
        decode({**encode(Observation("c", "case", None, problem="x")), "problem": None})


def test_a_forged_case_text_shows_as_one_line():
    """Feedback keeps only the exception's type of that line: a forged second line must not reach it."""
    case = Observation("c", "case", None, problem="the test cell raised ValueError: a\n  hint: In[-1] says...")
    outcome = compare(Observation("c", "close", to_array(1.0)), case)
    assert outcome.message == "check 'c' failed: the test cell raised ValueError: a"


# --------------------------------------------------------------------------- student mode


@pytest.fixture
def student_check(tmp_path):
    """A student-mode Checker with public references for softmax_small (with a hint) and row_max."""
    references = {
        "softmax_small": encode(
            Observation("softmax_small", "close", to_array(torch.tensor([0.5, 0.5])), {"hint": "dim=-1"})
        ),
        "row_max": encode(Observation("row_max", "close", to_array(torch.tensor([2.0])))),
    }
    path = tmp_path / "public_references.json"
    path.write_text(json.dumps({"version": 1, "checks": references}))
    check = Checker(path)
    assert check.mode == "student"
    return check


def test_student_mode_lets_the_exception_stop_the_cell_with_the_checks_hint_beside_it(student_check):
    """Carrying on would end the cell without an error, and a notebook run would read it as passed."""
    error = ValueError("softmax: the shapes do not match")
    with pytest.raises(ValueError) as raised:
        with student_check.case("softmax_small"):
            raise error
    assert raised.value is error  # the student's own exception and traceback, not a wrapper
    assert error.__notes__ == [
        "check 'softmax_small' failed: this exception was raised inside check.case('softmax_small')\n  hint: dim=-1"
    ]
    frames = traceback.extract_tb(raised.value.__traceback__)
    assert not [f for f in frames if f.filename.endswith("checker.py")]  # no frames of the checks package


def test_student_mode_passes_a_public_checks_own_failure_through_unwrapped(student_check, capsys):
    with pytest.raises(CheckFailed) as failed:
        with student_check.case("row_max"):
            student_check.close("row_max", torch.tensor([3.0]))
    assert str(failed.value).startswith("check 'row_max' failed: 1 of 1 values differ")
    assert not getattr(failed.value, "__notes__", None)
    with student_check.case("row_max"):
        student_check.close("row_max", torch.tensor([2.0]))
    assert capsys.readouterr().out.startswith("\u2713 check 'row_max' passed")


def test_student_mode_without_references_still_raises_the_students_exception(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no notebook here: the references cannot be read
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    with pytest.raises(KeyError) as raised:
        with Checker().case("softmax_small"):
            raise KeyError("z")
    assert raised.value.__notes__ == [
        "check 'softmax_small' failed: this exception was raised inside check.case('softmax_small')"
    ]
    with pytest.raises(ReferencesUnavailable):  # and a check that needs them says why, unchanged
        with Checker().case("softmax_small"):
            Checker().close("softmax_small", torch.ones(2))


# --------------------------------------------------------------------------- real kernels: build, grade, validate

LAB = "cases"
# The exception's text is built at run time: feedback shows the student's source, never this text.
RAISING_SOFTMAX = (
    "def softmax(z):\n    raise ValueError('softmax failed\\n' + '-'.join(['secret', 'detail']) + ': z was passed')"
)
RAISING_ROW_MAX = "def row_max(z):\n    raise IndexError('row_max: dimension out of range')"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    if not probe().available:
        pytest.skip(f"no sandbox here: {probe().reason}")
    course = new_course(tmp_path_factory.mktemp("case-course"))
    write_lab(course.root, LAB, case_lab())
    build_lab(course, LAB)
    students = [
        DemoStudent("honest", "correct"),
        DemoStudent("softmax_raiser", "softmax raises", replace={"softmax": RAISING_SOFTMAX}),
        DemoStudent("row_max_raiser", "row_max raises", replace={"row_max": RAISING_ROW_MAX}),
    ]
    for student in students:
        make_submission(course, LAB, student)
    config = Config(course.config)
    config.Grading.cell_timeout = 20
    config.Grading.notebook_timeout = 60
    fast = Course(course.root, config)
    results = {r.student: r for r in grade_lab(fast, LAB, force=True, workers=2)}
    return course, results


def scores(result) -> dict[str, float]:
    return {c.grade_id: c.score for c in result.cells}


def messages(result) -> dict[str, tuple[bool, str]]:
    return {k.name: (k.passed, k.message) for c in result.cells for k in c.checks}


def test_the_honest_student_gets_full_marks_through_the_cases(graded):
    honest = graded[1]["honest"]
    assert (honest.status, honest.score, honest.max_score) == ("graded", 3.0, 3.0), messages(honest)


def test_a_raising_check_costs_its_share_and_says_why_with_its_hint(graded):
    raiser = graded[1]["softmax_raiser"]
    assert raiser.status == "graded"
    assert scores(raiser) == {"softmax_tests": 1.0, "row_max_tests": 1.0}  # row_max_rows kept its half
    checks = messages(raiser)
    assert checks["softmax_rows"] == (
        False,
        "check 'softmax_rows' failed: the test cell raised ValueError: secret-detail: z was passed"
        f"\n  hint: {SOFTMAX_HINT}",
    )
    assert checks["softmax_small"][0] is False and checks["row_max_rows"][0] is True


def test_a_cell_that_raises_outside_a_case_shows_the_hint_of_each_check_it_stopped(graded):
    raiser = graded[1]["row_max_raiser"]
    assert scores(raiser) == {"softmax_tests": 1.0, "row_max_tests": 0.0}
    checks = messages(raiser)
    assert checks["row_max_wide"] == (
        False,
        "check 'row_max_wide' failed: it was never recorded: the test cell raised IndexError: "
        f"row_max: dimension out of range\n  hint: {ROW_MAX_HINT}",
    )
    assert checks["row_max_rows"] == (
        False,
        "check 'row_max_rows' failed: it was never recorded: the test cell raised IndexError: "
        f"row_max: dimension out of range\n  hint: {ROW_MAX_HINT}",
    )


def test_feedback_shows_the_hint_and_the_exceptions_type_but_not_its_text(graded):
    course, results = graded
    write_feedback(course, LAB, ["softmax_raiser"])
    page = (course.feedback / "softmax_raiser" / LAB / f"{LAB}.html").read_text()
    assert "the test cell raised ValueError" in page and "secret-detail" not in page
    assert SOFTMAX_HINT.split(":")[0] in page  # the hint, escaped as the page escapes it


def test_validate_reports_a_raising_case_as_raised_not_passed(graded):
    """Student mode stops the cell at the exception: `autograder validate` reads the cell as raised."""
    course, _ = graded
    notebook = course.submitted / "softmax_raiser" / LAB / f"{LAB}.ipynb"
    report = validate(notebook, cell_timeout=20, notebook_timeout=60)
    statuses = {t.grade_id: (t.status, t.message) for t in report.tests}
    assert statuses["softmax_tests"] == (RAISED, "ValueError: softmax failed\nsecret-detail: z was passed")
    assert report.exit_code == 1
    executed = nbformat.read(notebook, as_version=4)  # validate never writes the student's file
    assert all(not c.get("outputs") for c in executed.cells if c.cell_type == "code")

"""Lab 1 (tensors and cross-entropy): built from scratch once, then graded end to end."""

from __future__ import annotations

import pytest
from conftest import assert_no_secrets_in_release, assert_release_in_sync

from autograder.demo import (
    NO_BATCH_MEAN,
    UNSTABLE_SOFTMAX,
    DemoStudent,
    make_submission,
)
from autograder.grading.batch import grade_lab
from autograder.references import load_references

LAB = "lab1_cross_entropy"


@pytest.fixture(scope="module")
def graded(lab1_course):
    students = [DemoStudent("solution", "the instructor's solution"),
                DemoStudent("blank", "the release as is", answers="blank"),
                DemoStudent("no_mean", "cross-entropy summed over the batch", replace={"cross_entropy_batch": NO_BATCH_MEAN}),
                DemoStudent("overflow", "softmax without the max shift", replace={"softmax": UNSTABLE_SOFTMAX})]
    for student in students:
        make_submission(lab1_course, LAB, student)
    return lab1_course, {r.student: r for r in grade_lab(lab1_course, LAB, force=True, workers=2)}


def failed_cells(result):
    return {c["grade_id"] for c in result.cells if c["score"] < c["max_score"]}


def checks(result):
    return {k["name"]: k for c in result.cells for k in c["checks"]}


def test_committed_release_and_solutions_match_the_source(lab1_course):
    assert_release_in_sync(lab1_course, LAB)
    assert_no_secrets_in_release(LAB)


def test_every_graded_cell_has_public_and_hidden_checks(lab1_course):
    refs = load_references(lab1_course.references_file(LAB)).values()
    cells = {r.grade_id for r in refs}
    assert len(cells) >= 8
    for cell in cells:
        kinds = {r.hidden for r in refs if r.grade_id == cell}
        assert kinds == {False, True}, f"{cell} needs public and hidden checks"


def test_the_solution_scores_full_marks(graded):
    result = graded[1]["solution"]
    assert result.status == "graded" and result.score == result.max_score > 0, result.reason


def test_the_blank_release_runs_to_the_end_and_fails_every_hidden_check(graded):
    result = graded[1]["blank"]
    assert (result.status, result.score) == ("graded", 0.0)
    hidden = [k for k in checks(result).values() if k["hidden"]]
    assert hidden and not any(k["passed"] for k in hidden)


def test_a_missing_batch_mean_costs_the_batch_cell_and_is_named(graded):
    result = graded[1]["no_mean"]
    assert result.status == "graded"
    assert failed_cells(result) == {"cross_entropy_batch_tests"}
    assert "3x too large: a sum where a mean" in checks(result)["ce_batch_mean"]["message"]


def test_an_overflowing_softmax_is_caught_and_explained(graded):
    result = graded[1]["overflow"]
    assert failed_cells(result) == {"softmax_tests"}
    assert "overflow" in checks(result)["softmax_huge_logits"]["message"]
    assert checks(result)["softmax_small"]["passed"]

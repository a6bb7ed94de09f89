"""Lab 1 (tensors and cross-entropy): built from scratch once, then graded end to end."""

from __future__ import annotations

import pytest

from autograder.course import Course
from autograder.demo import NO_BATCH_MEAN, UNSTABLE_SOFTMAX, DemoStudent
from autograder.references import load_references
from conftest import (
    assert_committed_lab_matches_the_source,
    build_repo_lab,
    checks_by_name,
    failed_cells,
    grade_class,
    public_and_hidden,
)

LAB = "lab1_cross_entropy"
STUDENTS = [
    DemoStudent("solution", "the instructor's solution"),
    DemoStudent("blank", "the release as is", answers="blank"),
    DemoStudent("no_mean", "cross-entropy summed over the batch", replace={"cross_entropy_batch": NO_BATCH_MEAN}),
    DemoStudent("overflow", "softmax without the max shift", replace={"softmax": UNSTABLE_SOFTMAX}),
]


@pytest.fixture(scope="session")
def lab1_course(tmp_path_factory) -> Course:
    """A copy of this repository's lab 1, built from scratch."""
    return build_repo_lab(tmp_path_factory, LAB)


@pytest.fixture(scope="module")
def graded(lab1_course):
    """Every submission of this file, graded in one batch: {student: Result}."""
    return grade_class(lab1_course, LAB, STUDENTS)


def test_committed_release_and_solutions_match_the_source(lab1_course):
    assert_committed_lab_matches_the_source(lab1_course, LAB)


def test_every_graded_cell_has_public_and_hidden_checks(lab1_course):
    cells = public_and_hidden(load_references(lab1_course.references_file(LAB)))
    assert len(cells) >= 8
    for cell, kinds in cells.items():
        assert kinds == {False, True}, f"{cell} needs public and hidden checks"


def test_the_solution_scores_full_marks(graded):
    result = graded["solution"]
    assert result.status == "graded" and result.score == result.max_score > 0, result.reason


def test_the_blank_release_runs_to_the_end_and_fails_every_hidden_check(graded):
    result = graded["blank"]
    assert (result.status, result.score) == ("graded", 0.0)
    hidden = [k for k in checks_by_name(result).values() if k.hidden]
    assert hidden and not any(k.passed for k in hidden)


def test_a_missing_batch_mean_costs_the_batch_cell_and_is_named(graded):
    result = graded["no_mean"]
    assert result.status == "graded"
    assert failed_cells(result) == {"cross_entropy_batch_tests"}
    assert "3x too large: a sum where a mean" in checks_by_name(result)["ce_batch_mean"].message


def test_an_overflowing_softmax_is_caught_and_explained(graded):
    result = graded["overflow"]
    assert failed_cells(result) == {"softmax_tests"}
    assert "overflow" in checks_by_name(result)["softmax_huge_logits"].message
    assert checks_by_name(result)["softmax_small"].passed

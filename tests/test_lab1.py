"""Lab 1 (tensors and cross-entropy): built from scratch once, then graded end to end."""

from __future__ import annotations

import pytest

from autograder.course import Course
from autograder.demo import NO_BATCH_MEAN, UNSTABLE_SOFTMAX, DemoStudent
from autograder.references import load_references
from conftest import (
    assert_committed_lab_matches_the_source,
    assert_costs_exactly,
    assert_full_marks,
    assert_messages_name_the_cause,
    build_repo_lab,
    checks_by_name,
    failed_cells,
    grade_class,
    public_and_hidden,
)

LAB = "lab1_cross_entropy"
FULL_CELLS = {
    "make_tensors_tests": 2.0,
    "slices_tests": 1.0,
    "func_tests": 1.0,
    "dense_forward_tests": 2.0,
    "modules_tests": 2.0,
    "autograd_tests": 2.0,
    "predict_tests": 1.0,
    "softmax_tests": 2.0,
    "cross_entropy_one_tests": 2.0,
    "cross_entropy_batch_tests": 3.0,
    "logistic_loss_tests": 2.0,
}
FULL = sum(FULL_CELLS.values())

INT64_VECTOR = '''
def make_tensors():
    """The vector written with integers: int64, where the docstring says float32."""
    scalar = torch.tensor(3.0)
    vector = torch.tensor([1, 2, 3, 4])
    matrix = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    return scalar, vector, matrix, torch.zeros(10, 28, 28), torch.ones(32, 3, 64, 64)
'''
BARE_LINEAR_IDENTITY = '''
def build_dense(D, M):
    return nn.Sequential(nn.Linear(D, M), nn.Sigmoid())


class IdentityModel(nn.Module):
    """Its non-identity path is a bare linear layer: the sigmoid is missing (the shapes are right)."""

    def __init__(self, D, M):
        super().__init__()
        self.linear = nn.Linear(D, M)

    def forward(self, x, isidentity=False):
        return x if isidentity else self.linear(x)
'''
GLOBAL_MAX_SOFTMAX = '''
def softmax(z):
    """Shifted by the batch's maximum, not each row's: a row far below it underflows to 0 / 0."""
    e = torch.exp(z - z.max())
    return e / e.sum(dim=-1, keepdim=True)
'''
NO_GRAD_CLEARING = '''
def gradient_descent(x0, lr, steps):
    """x.grad is never cleared: every step adds the new gradient to all the earlier ones."""
    x = torch.tensor(float(x0), requires_grad=True)
    path = [x.detach().clone()]
    for _ in range(steps):
        (x ** 2 + 3).backward()
        with torch.no_grad():
            x -= lr * x.grad
        path.append(x.detach().clone())
    return torch.stack(path)
'''
FLOAT64_DERIVATIVE = '''
def derivative_of_square(x0):
    """Computed in float64: the docstring asks for a scalar tensor, not for float32."""
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    (x ** 2).backward()
    return x.grad
'''
NUMPY_PATH = '''
import numpy as np


def gradient_descent(x0, lr, steps):
    """The path as a float64 numpy array of Python floats: the docstring leaves the type open."""
    x = torch.tensor(float(x0), dtype=torch.float64, requires_grad=True)
    path = [float(x0)]
    for _ in range(steps):
        x.grad = None
        (x ** 2 + 3).backward()
        with torch.no_grad():
            x -= lr * x.grad
        path.append(x.item())
    return np.array(path)
'''

BUILD_DENSE_LEFT_BLANK = '''
def build_dense(D, M):
    raise NotImplementedError()


class IdentityModel(nn.Module):
    """Written without build_dense, which is left blank: its own checks still score."""

    def __init__(self, D, M):
        super().__init__()
        self.linear = nn.Linear(D, M)

    def forward(self, x, isidentity=False):
        return x if isidentity else torch.sigmoid(self.linear(x))
'''
DERIVATIVE_LEFT_BLANK = """
def derivative_of_square(x0):
    raise NotImplementedError()
"""

STUDENTS = [
    DemoStudent("solution", "the instructor's solution"),
    DemoStudent("blank", "the release as is", answers="blank"),
    DemoStudent("no_mean", "cross-entropy summed over the batch", replace={"cross_entropy_batch": NO_BATCH_MEAN}),
    DemoStudent("overflow", "softmax without the max shift", replace={"softmax": UNSTABLE_SOFTMAX}),
    DemoStudent(
        "hider",
        "four bugs the fixtures used to hide: an int64 vector, IdentityModel without its sigmoid, softmax shifted "
        "by the batch's maximum, gradient descent that never clears x.grad",
        replace={
            "make_tensors": INT64_VECTOR,
            "IdentityModel": BARE_LINEAR_IDENTITY,
            "softmax": GLOBAL_MAX_SOFTMAX,
            "gradient_descent": NO_GRAD_CLEARING,
        },
    ),
    DemoStudent(
        "half_done",
        "build_dense and derivative_of_square left blank, IdentityModel and gradient_descent solved",
        replace={"IdentityModel": BUILD_DENSE_LEFT_BLANK, "derivative_of_square": DERIVATIVE_LEFT_BLANK},
    ),
    DemoStudent(
        "float64_numpy",
        "valid: the derivative in float64, the path a float64 numpy array",
        replace={"derivative_of_square": FLOAT64_DERIVATIVE, "gradient_descent": NUMPY_PATH},
    ),
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
    assert_full_marks(graded["solution"], FULL_CELLS)


def test_float64_and_numpy_where_the_docstring_leaves_the_type_open_keep_full_marks(graded):
    assert_full_marks(graded["float64_numpy"], FULL_CELLS)


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


# Bugs that every fixture used to hide: each now costs its own cell (its hidden checks' share) and is named.
HIDER_CELLS = {"make_tensors_tests": 1.333333, "modules_tests": 1.333333, "softmax_tests": 1.2, "autograd_tests": 1.0}
HIDER_FAILED = {
    "tensor_dtypes",
    "identity_model_dense_values",
    "softmax_huge_batch",
    "softmax_3d_rows_far_apart",
    "descent_path",
    "descent_path_negative_start",
}
HIDER_MESSAGES = {
    "tensor_dtypes": "torch.tensor([1, 2, 3, 4]) is int64",
    "identity_model_dense_values": "sigmoid(Linear(x)): the sigmoid too",
    "softmax_3d_rows_far_apart": "each row's own maximum",
    "softmax_huge_batch": "NaN or infinite",
    "descent_path_negative_start": "clear it (x.grad.zero_()) after each step",
}


def test_bugs_the_fixtures_used_to_hide_cost_exactly_their_checks_and_are_named(graded):
    result = graded["hider"]
    assert (result.status, result.reason) == ("graded", None)
    assert_costs_exactly(result, FULL_CELLS, FULL, HIDER_CELLS, HIDER_FAILED)
    assert_messages_name_the_cause(result, HIDER_MESSAGES)


def test_a_function_that_raises_costs_only_its_own_checks(graded):
    """check.case keeps the checks of a cell independent: build_dense and derivative_of_square raise, and the
    checks of IdentityModel and gradient_descent in the same cells still score."""
    result = graded["half_done"]
    assert (result.status, result.reason) == ("graded", None)
    failed = {
        "dense_layers",
        "sequential_output",
        "sequential_fixed_weights",
        "derivative_at_3",
        "derivative_at_negative",
    }
    assert_costs_exactly(result, FULL_CELLS, FULL, {"modules_tests": 1.333333, "autograd_tests": 1.0}, failed)
    assert_messages_name_the_cause(
        result,
        {
            "sequential_output": "the test cell raised NotImplementedError",
            "derivative_at_negative": "the test cell raised NotImplementedError",
            "sequential_fixed_weights": "the test cell raised NameError",
        },
    )

"""Lab 2 (backprop by hand and XOR): built once, graded end to end.

One build and one grading batch for the whole file: the solution, the blank release, and eight
students with realistic bugs. Bugs that sit in different test cells share a student:

    transposer   dW = dout.T @ x (affine_backward); sigmoid_backward lets autograd do the work
                 in a helper it calls (.backward() hidden one call away)
    no_mean      dscores not divided by N (softmax_loss); sigmoid_backward's s * (1 - s) computed
                 from the pre-activation that sigmoid_forward cached
    flipper      dscores = onehot - p, the sign flipped (softmax_loss)
    masker       the ReLU mask taken from dout instead of the forward pass's input (relu_backward)
    aiaioo       dW2 = h.T @ dscores, the pre-activation where relu(h) belongs (two_layer_loss):
                 the published tutorial's bug, caught because the fixtures have negative h
    axis         db = dout.sum(dim=1), over the outputs instead of the batch (affine_backward)
    autograd     affine_backward computes the right values with torch.autograd.grad
    no_bias      out = x @ W, the bias forgotten (affine_forward)
    global_max   scores shifted by the batch's maximum instead of each row's (softmax_loss): right
                 until two rows lie more than ~745 apart, where float64's exp() underflows to 0

two_layer_loss composes the layer functions, so a layer bug also costs the two-layer checks it
reaches (asserted too), and the by-hand training of the two-layer network on XOR (given code)
shows what a wrong gradient does to training: it crashes on a transposed or mis-shaped
gradient, diverges with a flipped sign, and so on. A by-hand violation zeroes its test cell,
and two_layer_loss's too when the violation sits in a layer it calls.
"""

from __future__ import annotations

import pytest

from autograder.course import Course
from autograder.demo import DemoStudent
from autograder.references import load_references
from conftest import (
    assert_committed_lab_matches_the_source,
    assert_costs_exactly,
    assert_data_cell_names_the_command,
    assert_full_marks,
    assert_graded_zero,
    assert_messages_name_the_cause,
    build_repo_lab,
    failed_checks,
    grade_class,
    public_and_hidden,
)

LAB = "lab2_backprop_xor"
FULL_CELLS = {
    "affine_forward_tests": 1.0,
    "affine_backward_tests": 3.0,
    "relu_tests": 2.0,
    "sigmoid_tests": 2.0,
    "softmax_loss_tests": 2.0,
    "two_layer_loss_tests": 4.0,
    "sgd_step_tests": 1.0,
    "by_hand_training_tests": 2.0,
    "make_mlp_tests": 2.0,
    "xor_accuracy_tests": 3.0,
}
FULL = sum(FULL_CELLS.values())

TRANSPOSED_DW = '''
def affine_backward(dout, cache):
    """dW with its factors swapped: dout.T @ x is (M, D), the transpose of dW."""
    x, W, b = cache
    return dout @ W.T, dout.T @ x, dout.sum(dim=0)
'''
SIGMOID_AUTOGRAD_IN_A_HELPER = '''
def local_gradient(function, x, dout):
    """Lets autograd do the work, one call away from the graded function."""
    x = x.detach().requires_grad_(True)
    function(x).backward(dout)
    return x.grad


def sigmoid_forward(x):
    out = 1.0 / (1.0 + torch.exp(-x))
    return out, x


def sigmoid_backward(dout, cache):
    return local_gradient(torch.sigmoid, cache, dout)
'''
NO_BATCH_MEAN = '''
def softmax_loss(scores, y):
    """The loss is a mean, but its gradient is not divided by N."""
    n = scores.shape[0]
    shifted = scores - scores.max(dim=1, keepdim=True).values
    log_probs = shifted - torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))
    loss = -log_probs[torch.arange(n), y].mean()
    dscores = torch.exp(log_probs)
    dscores[torch.arange(n), y] -= 1.0
    return loss, dscores
'''
SIGMOID_FROM_PRE_ACTIVATION = '''
def sigmoid_forward(x):
    out = 1.0 / (1.0 + torch.exp(-x))
    return out, x


def sigmoid_backward(dout, cache):
    """s * (1 - s) with the cached pre-activation in place of s = sigma(x)."""
    return dout * cache * (1.0 - cache)
'''
SIGN_FLIPPED = '''
def softmax_loss(scores, y):
    """onehot - p: the gradient of the log-likelihood, not of the loss."""
    n = scores.shape[0]
    probs = torch.softmax(scores, dim=1)
    loss = -torch.log(probs[torch.arange(n), y]).mean()
    onehot = torch.zeros_like(scores)
    onehot[torch.arange(n), y] = 1.0
    return loss, (onehot - probs) / n
'''
RELU_MASK_FROM_DOUT = '''
def relu_forward(x):
    return torch.clamp(x, min=0.0), x


def relu_backward(dout, cache):
    """The mask taken from the upstream gradient instead of the forward pass's input."""
    return dout * (dout > 0)
'''
PRE_ACTIVATION_IN_DW2 = '''
def two_layer_loss(x, y, params):
    """aiaioo's backward: the pre-activation h where relu(h) belongs in dW2."""
    h, cache1 = affine_forward(x, params["W1"], params["b1"])
    a, relu_cache = relu_forward(h)
    scores, cache2 = affine_forward(a, params["W2"], params["b2"])
    loss, dscores = softmax_loss(scores, y)
    dW2 = h.T @ dscores
    db2 = dscores.sum(dim=0)
    dh = relu_backward(dscores @ params["W2"].T, relu_cache)
    _, dW1, db1 = affine_backward(dh, cache1)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
'''
DB_OVER_THE_OUTPUTS = '''
def affine_backward(dout, cache):
    """db summed over the outputs (dim=1): one number per example instead of one per output."""
    x, W, b = cache
    return dout @ W.T, x.T @ dout, dout.sum(dim=1)
'''
AFFINE_BY_AUTOGRAD = '''
def affine_backward(dout, cache):
    """The right values, computed by autograd: against the rule."""
    x, W, b = (t.detach().requires_grad_(True) for t in cache)
    dx, dW, db = torch.autograd.grad(x @ W + b, (x, W, b), grad_outputs=dout)
    return dx, dW, db
'''
BIAS_FORGOTTEN = '''
def affine_forward(x, W, b):
    """The bias is forgotten."""
    return x @ W, (x, W, b)
'''
GLOBAL_MAX_SHIFT = '''
def softmax_loss(scores, y):
    """Shifted by the batch's maximum, not each row's: a row far below it underflows to exp() = 0."""
    n = scores.shape[0]
    shifted = scores - scores.max()
    log_probs = shifted - torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))
    loss = -log_probs[torch.arange(n), y].mean()
    dscores = torch.exp(log_probs)
    dscores[torch.arange(n), y] -= 1.0
    return loss, dscores / n
'''

STUDENTS = [
    DemoStudent("ada", "the solution"),
    DemoStudent("ben", "the blank release", answers="blank"),
    DemoStudent(
        "transposer",
        "dW transposed; autograd hidden in a helper of sigmoid_backward",
        replace={"affine_backward": TRANSPOSED_DW, "sigmoid_backward": SIGMOID_AUTOGRAD_IN_A_HELPER},
    ),
    DemoStudent(
        "no_mean",
        "dscores not divided by N; the sigmoid's derivative from the pre-activation",
        replace={"softmax_loss": NO_BATCH_MEAN, "sigmoid_backward": SIGMOID_FROM_PRE_ACTIVATION},
    ),
    DemoStudent("flipper", "dscores with the sign flipped", replace={"softmax_loss": SIGN_FLIPPED}),
    DemoStudent("masker", "the ReLU mask from dout", replace={"relu_backward": RELU_MASK_FROM_DOUT}),
    DemoStudent("aiaioo", "the pre-activation in dW2", replace={"two_layer_loss": PRE_ACTIVATION_IN_DW2}),
    DemoStudent("axis", "db summed over the outputs", replace={"affine_backward": DB_OVER_THE_OUTPUTS}),
    DemoStudent("autograd", "affine_backward by torch.autograd.grad", replace={"affine_backward": AFFINE_BY_AUTOGRAD}),
    DemoStudent("no_bias", "the bias forgotten in affine_forward", replace={"affine_forward": BIAS_FORGOTTEN}),
    DemoStudent(
        "global_max", "softmax_loss shifted by the batch's maximum", replace={"softmax_loss": GLOBAL_MAX_SHIFT}
    ),
]


@pytest.fixture(scope="session")
def lab2_course(tmp_path_factory) -> Course:
    """A copy of this repository's lab 2 with the XOR test points staged, built from scratch."""
    return build_repo_lab(tmp_path_factory, LAB, ["xor"])


@pytest.fixture(scope="module")
def graded(lab2_course):
    """Every submission of this file, graded in one batch: {student: Result}."""
    return grade_class(lab2_course, LAB, STUDENTS)


# ------------------------------------------------------------------------------------------ build


def test_committed_release_and_solutions_match_the_source(lab2_course):
    assert_committed_lab_matches_the_source(lab2_course, LAB)


BY_HAND = {
    "affine_backward_by_hand": "affine_backward",
    "relu_backward_by_hand": "relu_backward",
    "sigmoid_backward_by_hand": "sigmoid_backward",
    "softmax_loss_by_hand": "softmax_loss",
    "two_layer_loss_by_hand": "two_layer_loss",
}


def test_every_exercise_has_public_and_hidden_checks(lab2_course):
    references = load_references(lab2_course.references_file(LAB))
    assert public_and_hidden(references) == {grade_id: {False, True} for grade_id in FULL_CELLS}
    # Every backward function is held to the by-hand rule, in public (students see it at once).
    by_hand = {n: r for n, r in references.items() if r.observation.kind == "by_hand"}
    assert {n: r.observation.params["function"] for n, r in by_hand.items()} == BY_HAND
    assert not any(r.hidden for r in by_hand.values())
    # Held-out accuracies are hidden and judged by the coordinator; two of them show a model failing.
    accuracy = {n: r for n, r in references.items() if r.observation.kind == "accuracy"}
    assert all(r.hidden and r.observation.params["dataset"] == "xor_test" for r in accuracy.values())
    assert {n for n, r in accuracy.items() if "max_accuracy" in r.observation.params} == {
        "xor_single_layer_accuracy",
        "xor_sigmoid_no_bias_accuracy",
    }
    # Each hidden gradient reference of a by-hand function was verified against autograd and finite differences.
    hidden_grads = [r for r in references.values() if r.hidden and r.observation.kind == "grad"]
    assert len(hidden_grads) == 16
    for ref in hidden_grads:
        if ref.name != "sigmoid_backward_at_zero":
            assert {"autograd", "finite differences"} <= set(ref.observation.params["expected"]), ref.name


# ------------------------------------------------------------------------------------------ grading


def test_the_solution_scores_full_marks(graded):
    messages = assert_full_marks(graded["ada"], FULL_CELLS)
    assert "on 400 held-out examples (at least 95% needed)" in messages["xor_relu_mlp_accuracy"]
    assert "on 400 held-out examples (at most 80% expected)" in messages["xor_single_layer_accuracy"]


def test_the_blank_release_runs_to_the_end_and_scores_zero(graded):
    failed = assert_graded_zero(graded["ben"], FULL_CELLS)
    assert "the test cell raised NotImplementedError" in failed["affine_backward_dW"]
    assert "the test cell raised NotImplementedError" in failed["mlp_relu_layers"]
    assert "the test cell raised NameError" in failed["by_hand_xor_accuracy"]


TRAINING = {"by_hand_final_loss", "by_hand_train_accuracy", "by_hand_xor_accuracy"}
GRADS = ("dW1", "db1", "dW2", "db2")
BATCHES = ("batch", "batch6")


def two_layer(fixtures, grads) -> set[str]:
    return {f"two_layer_{fixture}_{g}" for fixture in fixtures for g in grads}


EXPECTED = {
    "transposer": (
        {
            "affine_backward_tests": 1.8,
            "sigmoid_tests": 0.0,
            "two_layer_loss_tests": 2.4,
            "by_hand_training_tests": 0.0,
        },
        {
            "affine_backward_dW_shape",
            "affine_backward_dW",
            "affine_backward_one_point_dW",
            "affine_backward_batch_dW",
            "sigmoid_backward_by_hand",
            *two_layer(("one_point", *BATCHES), ("dW1", "dW2")),
            *TRAINING,
        },
    ),
    "no_mean": (
        {
            "softmax_loss_tests": 1.142857,
            "sigmoid_tests": 0.666667,
            "two_layer_loss_tests": 0.8,
            "by_hand_training_tests": 0.0,
        },
        {
            "softmax_loss_dscores",
            "softmax_loss_dscores_3_classes",
            "softmax_loss_dscores_rows_far_apart",
            "softmax_loss_leaves_scores",  # it records dscores with the scores after the call
            "sigmoid_backward_dx",
            "sigmoid_backward_batch",
            "sigmoid_backward_at_zero",
            *two_layer(BATCHES, GRADS),
            *TRAINING,
        },
    ),  # one point: N = 1, no difference
    "flipper": (
        {"softmax_loss_tests": 0.857143, "two_layer_loss_tests": 0.8, "by_hand_training_tests": 0.0},
        {
            "softmax_loss_dscores",
            "softmax_loss_dscores_3_classes",
            "softmax_loss_dscores_one_point",
            "softmax_loss_dscores_rows_far_apart",
            "softmax_loss_leaves_scores",
            *two_layer(("one_point", *BATCHES), GRADS),
            *TRAINING,
        },
    ),
    "masker": (
        {"relu_tests": 0.666667, "two_layer_loss_tests": 2.4, "by_hand_training_tests": 0.0},
        {
            "relu_backward_dx",
            "relu_backward_batch",
            "relu_backward_3d",
            *two_layer(("one_point", *BATCHES), ("dW1", "db1")),
            *TRAINING,
        },
    ),
    "aiaioo": ({"two_layer_loss_tests": 3.2}, two_layer(("one_point", *BATCHES), ("dW2",))),  # the network still trains
    "axis": (
        {"affine_backward_tests": 2.4, "two_layer_loss_tests": 2.4, "by_hand_training_tests": 0.0},
        {
            "affine_backward_db_shape",
            "affine_backward_db",
            "affine_backward_batch_db",
            *two_layer(("one_point", *BATCHES), ("db1", "db2")),
            *TRAINING,
        },
    ),
    "autograd": (
        {"affine_backward_tests": 0.0, "two_layer_loss_tests": 0.0},
        {"affine_backward_by_hand", "two_layer_loss_by_hand"},
    ),  # right values, no points
    "global_max": (
        {"softmax_loss_tests": 1.428571},
        {"softmax_loss_rows_far_apart", "softmax_loss_dscores_rows_far_apart"},
    ),  # every other fixture's rows lie close together
    "no_bias": (
        {"affine_forward_tests": 0.0, "two_layer_loss_tests": 0.0},
        {
            "affine_forward_values",
            "affine_forward_one_point",
            "affine_forward_batch",
            *{f"two_layer_{f}_loss" for f in ("one_point", *BATCHES)},
            *two_layer(("one_point", *BATCHES), GRADS),
        },
    ),
}


@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_each_bug_costs_exactly_its_checks(graded, student):
    result = graded[student]
    cells, failed = EXPECTED[student]
    assert (result.status, result.reason) == ("graded", None)
    assert_costs_exactly(result, FULL_CELLS, FULL, cells, failed)


MESSAGES = {
    "transposer": {
        "affine_backward_dW": "the result is transposed",
        "affine_backward_one_point_dW": "the result is transposed (square, so the shape did not give it away)",
        "sigmoid_backward_by_hand": "sigmoid_backward() must compute its result by hand, without autograd",
    },
    "no_mean": {
        "softmax_loss_dscores": "exactly 4x too large: a sum where a mean over 4 items is expected?",
        "softmax_loss_dscores_3_classes": "exactly 5x too large",
        "two_layer_batch6_dW1": "exactly 6x too large",
        "sigmoid_backward_at_zero": "the pre-activation instead of sigma(x)",
    },
    "flipper": {
        "softmax_loss_dscores": "the sign is flipped",
        "two_layer_one_point_dW2": "the sign is flipped",
        "by_hand_final_loss": "a sign flipped in a gradient or in sgd_step",
    },
    "masker": {
        "relu_backward_dx": "the mask comes from the forward pass's input x (cache it), not from dout",
        "relu_backward_batch": "passes no gradient, whatever the sign of dout",
    },
    "aiaioo": {
        "two_layer_one_point_dW2": "the second layer's input is a = relu(h), not the pre-activation h",
    },
    "axis": {
        "affine_backward_db": "one entry per output unit, not per example",
        "affine_backward_batch_db": "expected a gradient of shape (3,), got (5,)",
    },
    "autograd": {
        "affine_backward_by_hand": "affine_backward() must compute its result by hand, without autograd",
        "two_layer_loss_by_hand": "affine_backward (called from two_layer_loss), line 4: uses torch.autograd",
    },
    "global_max": {
        "softmax_loss_rows_far_apart": "each row's own maximum",
        "softmax_loss_dscores_rows_far_apart": "underflows to exp() = 0 even in float64",
    },
    "no_bias": {
        "affine_forward_values": "every row is off by the same vector: a bias left out",
        "affine_forward_batch": "a bias left out",
    },
}


@pytest.mark.parametrize("student", sorted(MESSAGES))
def test_the_failure_messages_name_the_cause(graded, student):
    assert_messages_name_the_cause(graded[student], MESSAGES[student])


def test_autograd_hidden_in_a_helper_is_found_in_the_file(graded):
    """The coordinator follows the calls of the graded function through the notebook's source."""
    message = failed_checks(graded["transposer"])["sigmoid_backward_by_hand"]
    for problem in ("turns on requires_grad", "calls .backward()", "reads or writes .grad"):
        assert "local_gradient (called from sigmoid_backward), line" in message and problem in message, message


def test_a_missing_data_set_names_the_command(tmp_path, monkeypatch):
    assert_data_cell_names_the_command(LAB, tmp_path, monkeypatch)

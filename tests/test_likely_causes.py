"""The likely causes a failure message names (checks/hints.py, through compare()), rule by rule: where
the evidence supports the cause the rule must fire, and where it does not the rule must stay silent.

Each case is the answer a student with that bug would give, computed as they would compute it, and
recorded by the Checker in record mode (the grader's) next to the solution's reference, then judged
with compare() as the coordinator does.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import autograder.checks.checker as checker
from autograder.checks import Checker, compare
from autograder.checks.observation import Observation, decode, encode, to_array

LIKELY = "likely cause:"


@pytest.fixture
def record(monkeypatch):
    """record(lambda check: check.close(...)) -> the Observation a grading kernel would send (through
    encode and decode, the schema the coordinator validates)."""
    monkeypatch.setenv("AUTOGRADER_MODE", "record")
    sent: list[Observation] = []
    monkeypatch.setattr(checker, "_emit", sent.append)  # the display output, minus IPython

    def recorded(call) -> Observation:
        call(Checker())
        return decode(encode(sent.pop()))

    return recorded


def judged(record, call_with, solution, student, reveal=True):
    """The message for `student`'s answer where the solution's is the reference (call_with(check, value)
    makes the check call, the same for both)."""
    reference = record(lambda check: call_with(check, solution))
    outcome = compare(reference, record(lambda check: call_with(check, student)), reveal=reveal)
    assert not outcome.passed, outcome.message
    return outcome.message


def close(name, **keywords):
    return lambda check, value: check.close(name, value, **keywords)


def grad(name, **keywords):
    return lambda check, value: check.grad(name, value, **keywords)


# --------------------------------------------------------------------------- NaN and inf


def test_a_log_of_an_underflowed_probability_is_called_log_of_zero_not_an_overflow(record):
    z = torch.tensor([[0.0, -200.0], [1.0, 2.0]])  # softmax subtracts the maximum: nothing overflows
    text = judged(record, close("log_probs"), F.log_softmax(z, dim=-1), torch.log(torch.softmax(z, dim=-1)))
    assert "1 of 4 values are NaN or infinite (1 -inf)" in text
    assert "-inf is log(0): a probability that underflowed to 0 (exp(x) is 0 in float32 below x = -104)" in text
    assert "log_softmax" in text and "overflow" not in text and "subtract the maximum" not in text


def test_a_float64_answer_is_told_about_float64(record):
    z = torch.tensor([[0.0, -800.0]], dtype=torch.float64)
    text = judged(record, close("log_probs"), F.log_softmax(z, dim=-1), torch.log(torch.softmax(z, dim=-1)))
    assert "exp(x) is 0 in float64 below x = -745.1" in text and "float32" not in text


def test_plus_inf_names_the_overflow_with_the_dtype_used_and_the_log_of_zero_beside_it(record):
    z = torch.tensor([[100.0, 0.0], [1.0, 3.0]])
    text = judged(record, close("logsumexp"), torch.logsumexp(z, dim=-1), torch.log(torch.exp(z).sum(dim=-1)))
    assert "(1 +inf)" in text
    assert "an exp() that overflowed (float32 holds exp(x) only up to x = 88.72: subtract the maximum" in text
    assert "or -log(0) of a probability that underflowed to 0" in text  # +inf alone does not say which
    z64 = torch.tensor([[1000.0, 0.0]], dtype=torch.float64)
    text = judged(record, close("logsumexp"), torch.logsumexp(z64, dim=-1), torch.log(torch.exp(z64).sum(dim=-1)))
    assert "float64 holds exp(x) only up to x = 709.8" in text and "float32" not in text


def test_nan_from_a_softmax_without_the_shift_names_the_overflow_among_what_nan_can_be(record):
    z = torch.tensor([[1000.0, 0.0], [1.0, 2.0]])
    unshifted = torch.exp(z) / torch.exp(z).sum(dim=-1, keepdim=True)  # inf / inf
    text = judged(record, close("softmax"), torch.softmax(z, dim=-1), unshifted)
    assert "1 of 4 values are NaN or infinite (1 NaN)" in text
    assert "inf/inf" in text and "an exp() that overflowed (float32 holds exp(x) only up to x = 88.72)" in text


def test_nan_from_zero_times_log_zero_does_not_tell_a_shifted_softmax_to_subtract_the_maximum(record):
    """The student did subtract the maximum (torch.softmax does); log(0) = -inf times the one-hot's 0 is NaN."""
    z, y = torch.tensor([[0.0, -200.0], [1.0, 2.0]]), torch.tensor([0, 1])
    one_hot = F.one_hot(y, 2).float()
    student = -(one_hot * torch.log(torch.softmax(z, dim=-1))).sum(dim=-1)
    text = judged(record, close("ce_per_sample"), F.cross_entropy(z, y, reduction="none"), student)
    assert "(1 NaN)" in text and "log(0) = -inf multiplied by 0" in text
    assert "the numbers alone do not say which" in text and "subtract the maximum" not in text


def test_a_nan_gradient_names_0_over_0_in_a_derivative_in_the_dtype_used(record):
    x = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
    text = judged(record, grad("abs_dx"), torch.sign(x), x / x.abs())  # d|x|/dx written as x / |x|
    assert "the gradient has NaN or infinite entries (1 NaN of 3)" in text
    assert "NaN in a derivative comes from 0/0 or 0 * inf (x / |x|" in text and "float64" in text
    assert "float32" not in text


def test_an_infinite_gradient_names_a_division_by_zero(record):
    x = torch.tensor([0.0, 1.0, 4.0], dtype=torch.float64)
    text = judged(record, grad("sqrt_dx"), 0.5 / torch.sqrt(x + 1), 0.5 / torch.sqrt(x))  # sqrt(x + 1) intended
    assert "(1 +inf of 3)" in text and "an infinite derivative: a division by 0" in text


# --------------------------------------------------------------------------- k x too large / too small


def test_a_sum_where_a_mean_is_expected_is_named_when_the_inputs_have_that_many_items(record):
    x = torch.tensor([1.0, 2.0, 3.0])
    text = judged(record, close("mean_square", inputs=x), (x**2).mean(), (x**2).sum())
    assert "likely cause: exactly 3x too large: a sum where a mean over 3 items is expected?" in text


def test_a_single_number_without_declared_inputs_gets_no_guess(record):
    x = torch.tensor([1.0, 2.0, 3.0])
    text = judged(record, close("mean_square"), (x**2).mean(), (x**2).sum())
    assert LIKELY not in text  # 3x, but nothing says 3 items exist


def test_a_factor_that_is_no_axis_size_is_not_called_a_sum(record):
    x = torch.linspace(-1, 1, 5, dtype=torch.float64)
    text = judged(record, grad("square_dx", inputs=x), x, 2 * x)  # d(x^2 / 2)/dx with the 1/2 dropped
    assert "too large" not in text and "items" not in text
    scores = torch.linspace(-1, 1, 12).reshape(3, 4)
    text = judged(record, close("scaled", inputs=scores), scores, 7 * scores)
    assert "too large" not in text


def test_an_n_by_c_gradient_n_times_too_large_needs_no_declared_inputs(record):
    scores, y = torch.linspace(-2, 2, 12, dtype=torch.float64).reshape(4, 3), torch.tensor([0, 2, 1, 1])
    dscores = (torch.softmax(scores, dim=-1) - F.one_hot(y, 3)) / 4
    text = judged(record, grad("dscores"), dscores, dscores * 4)  # forgot the 1/N of the mean
    assert "exactly 4x too large: a sum where a mean over 4 items is expected?" in text


def test_a_weight_gradient_too_large_by_the_batch_size_is_named_through_the_declared_inputs(record):
    x, dh = torch.linspace(-1, 1, 18, dtype=torch.float64).reshape(6, 3), torch.ones(6, 5, dtype=torch.float64)
    dW1 = x.T @ dh / 6  # (3, 5): the batch of 6 is no axis of dW1
    assert LIKELY not in judged(record, grad("dW1"), dW1, x.T @ dh)
    text = judged(record, grad("dW1", inputs=(x, dh)), dW1, x.T @ dh)
    assert "exactly 6x too large: a sum where a mean over 6 items is expected?" in text


def test_too_small_by_an_axis_size_fires_and_by_another_factor_stays_silent(record):
    scores = torch.linspace(-2, 2, 12, dtype=torch.float64).reshape(4, 3)
    dscores = torch.softmax(scores, dim=-1) / 4
    assert "exactly 4x too small: divided by the batch size twice" in judged(record, grad("d"), dscores, dscores / 4)
    x = torch.linspace(-1, 1, 5, dtype=torch.float64)
    assert "too small" not in judged(record, grad("x_dx", inputs=x), x, x / 2)


# --------------------------------------------------------------------------- rows that sum to 1


def test_probabilities_where_logits_are_expected_are_named_on_rows(record):
    logits = torch.tensor([[2.0, 1.0, 0.0], [-1.0, 0.5, 3.0]])
    text = judged(record, close("logits"), logits, torch.softmax(logits, dim=-1))
    assert "the rows sum to 1: probabilities (softmax) where raw scores (logits) are expected?" in text


def test_a_vector_normalised_over_the_batch_is_not_called_rows_of_probabilities(record):
    weights = torch.tensor([2.0, 1.0, 1.0])  # per-sample weights; the student normalised them over the batch
    text = judged(record, close("sample_weights"), weights, weights / weights.sum())
    assert "rows sum to 1" not in text and "probabilities" not in text


# --------------------------------------------------------------------------- a bias left out


W1 = torch.linspace(-0.5, 0.5, 40).reshape(8, 5)
B1 = torch.linspace(-0.1, 0.1, 5)
W2 = torch.linspace(0.4, -0.4, 15).reshape(5, 3)
B2 = torch.tensor([0.05, -0.02, 0.01])


def mlp(x, hidden_scale=1.0):
    return (torch.relu(x @ W1 + B1) * hidden_scale) @ W2 + B2


def test_a_missing_bias_on_rows_that_differ_is_named(record):
    x = torch.linspace(-1.5, 1.2, 12).reshape(4, 3)
    W, b = torch.tensor([[0.5, -1.0], [2.0, 0.25], [-0.75, 1.5]]), torch.tensor([0.1, -0.3])
    text = judged(record, close("affine"), x @ W + b, x @ W)
    assert "every row is off by the same vector: a bias left out" in text


def test_rows_that_are_near_copies_do_not_tell_a_bias_from_another_bug(record):
    """Four fixture inputs that barely differ (logits at most ~4e-5 apart): dropout's 1/(1 - p) scaling
    left on at evaluation moves every row by nearly the same vector, as any bug would."""
    base = torch.linspace(0, 1, 8)
    x = torch.stack([base + 3e-5 * k * torch.linspace(-1, 1, 8) for k in range(4)])
    expected, student = mlp(x), mlp(x, hidden_scale=1 / 0.8)
    offset = (expected - student).double().numpy()
    assert np.allclose(offset, offset[0], rtol=1e-4, atol=1e-5)  # a "same vector" to the check's tolerance
    text = judged(record, close("fixed_logits", rtol=1e-4, atol=1e-5), expected, student)
    assert "a bias" not in text
    output_bias_left_out = torch.relu(x @ W1 + B1) @ W2
    text = judged(record, close("fixed_logits", rtol=1e-4, atol=1e-5), expected, output_bias_left_out)
    assert "a bias" not in text  # even a bias truly left out: these rows cannot tell it from the bug above


def test_rows_that_differ_by_less_than_the_checks_tolerance_cannot_show_a_constant_offset(record):
    expected = torch.tensor([[1.0, 0.5], [1.2, 0.3], [0.9, 0.6]])  # rows apart by 0.3 at most
    text = judged(record, close("loose", rtol=0.0, atol=0.05), expected, expected + torch.tensor([0.5, -0.2]))
    assert "a bias" not in text  # 0.05 tolerance: a row-ignoring answer would have "agreed" too
    text = judged(record, close("tight"), expected, expected + torch.tensor([0.5, -0.2]))
    assert "a bias left out" in text


# --------------------------------------------------------------------------- accuracy at chance level


def accuracy_message(accuracy: float, minimum: float) -> str:
    reference = Observation(
        "acc", "accuracy", to_array(np.zeros(0, np.int64)), {"dataset": "d", "min_accuracy": minimum}
    )
    outcome = compare(reference, Observation("acc", "accuracy", {"accuracy": accuracy, "n": 1000}))
    assert not outcome.passed
    return outcome.message


def test_chance_level_accuracy_names_a_model_that_did_not_train():
    text = accuracy_message(0.1, 0.9)  # 10 classes, one in ten right: what an untrained model scores
    assert "near chance: predictions in a different order than the data set" in text
    assert "or the model did not train (optimizer.zero_grad()? the optimiser given the model's parameters?)" in text


def test_an_accuracy_short_of_the_bar_but_far_from_chance_gets_no_guess():
    assert LIKELY not in accuracy_message(0.6, 0.9)


# --------------------------------------------------------------------------- hidden checks


@pytest.mark.parametrize(
    "solution, student",
    [
        (torch.tensor([[0.3172, -1.2841], [2.0413, 0.5927]]), torch.tensor([[0.3172, float("nan")], [2.0413, 0.59]])),
        (torch.tensor([[0.3172, -1.2841], [2.0413, 0.5927]]) / 2, torch.tensor([[0.3172, -1.2841], [2.0413, 0.5927]])),
        (
            torch.tensor([[0.3172, -1.2841, 0.4419], [2.0413, 0.5927, -0.8213]]),
            torch.softmax(torch.tensor([[0.3172, -1.2841, 0.4419], [2.0413, 0.5927, -0.8213]]), dim=-1),
        ),
        (
            torch.tensor([[0.3172, -1.2841], [2.0413, 0.5927], [-0.7716, 1.3349]]),
            torch.tensor([[0.3172, -1.2841], [2.0413, 0.5927], [-0.7716, 1.3349]]) - torch.tensor([0.1093, 0.2287]),
        ),
    ],
    ids=["nan", "2x-on-a-2x2", "rows-sum-to-1", "bias"],
)
def test_a_hidden_check_names_the_cause_without_the_references_values(record, solution, student):
    text = judged(record, close("hidden_logits"), solution, student, reveal=False)
    assert LIKELY in text
    for value in solution.flatten().tolist():
        assert f"{value:.4g}"[:5] not in text, (value, text)

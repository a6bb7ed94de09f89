"""Lab 4 (recurrent networks, Irish tunes): built from scratch once, then graded end to end.

Four submissions in one batch: the solution, the blank release, and two students with three
bugs each, every bug in a different test cell:

    shifty   targets not shifted (get_batch), softmax before the loss (compute_loss),
             state not carried while generating (generate_text)
    offbyone last window never drawn (get_batch), batch and time mixed in the loss's reshape
             (compute_loss), temperature ignored (generate_text)

Two more: `viewer`, whose valid variations keep full marks (compute_loss flattens with .view,
which the strided windows of get_batch would refuse unless the given code passes contiguous
tensors, as it now does and the docstring says; train_step clears the gradients after the step
instead of before), and `forgetter`, whose train_step never calls zero_grad: a unit check of two
SGD steps catches it, not only the trained model's losses.

A wrong loss or wrong targets also spoil the training that follows, so the training cell fails
for both; a model trained on the wrong targets, or sampled without its state, writes tunes
music21 rejects. Those downstream losses are asserted too, each with its cause.
"""

from __future__ import annotations

import pytest

from autograder.course import Course
from autograder.demo import DemoStudent
from autograder.references import load_references
from conftest import (
    assert_committed_lab_matches_the_source,
    build_repo_lab,
    cells_by_id,
    checks_by_name,
    grade_class,
    public_and_hidden,
)

LAB = "lab4_rnn_music"

Y_NOT_SHIFTED = '''
def get_batch(vectorized, seq_length, batch_size, generator=None):
    """The targets are the inputs themselves: y not shifted by one."""
    starts = torch.randint(0, vectorized.shape[0] - seq_length, (batch_size,), generator=generator)
    x = torch.stack([vectorized[i:i + seq_length] for i in starts.tolist()])
    y = torch.stack([vectorized[i:i + seq_length] for i in starts.tolist()])
    return x, y
'''
OFF_BY_ONE_WINDOWS = '''
def get_batch(vectorized, seq_length, batch_size, generator=None):
    """Off by one: the last window that fits (start n - L - 1) is never drawn."""
    starts = torch.randint(0, vectorized.shape[0] - seq_length - 1, (batch_size,), generator=generator)
    x = torch.stack([vectorized[i:i + seq_length] for i in starts.tolist()])
    y = torch.stack([vectorized[i + 1:i + seq_length + 1] for i in starts.tolist()])
    return x, y
'''
SOFTMAX_TWICE = '''
def compute_loss(logits, y):
    """Probabilities fed into F.cross_entropy, which applies log-softmax again."""
    probs = F.softmax(logits, dim=-1)
    return F.cross_entropy(probs.reshape(-1, probs.shape[-1]), y.reshape(-1))
'''
MIXED_RESHAPE = '''
def compute_loss(logits, y):
    """Transposed before flattening: row t*B + b of the scores meets target b*L + t."""
    V = logits.shape[-1]
    return F.cross_entropy(logits.transpose(0, 1).reshape(-1, V), y.reshape(-1))
'''
_GENERATE = '''
def generate_text(model, start_string, length, temperature=1.0, generator=None):
    """{doc}"""
    model.eval()
    x = vectorize_string(start_string, char2idx)[None, :]
    sampled = []
    with torch.no_grad():
        logits, state = model(x)
        for _ in range(length):
            probs = F.softmax(logits[0, -1] {divide}, dim=-1)
            index = int(torch.multinomial(probs, 1, generator=generator))
            sampled.append(str(idx2char[index]))
            logits, {new_state} = model(torch.tensor([[index]]){pass_state})
    return start_string + "".join(sampled)
'''
STATE_NOT_CARRIED = _GENERATE.format(
    doc="Every step starts again from a zero state.", divide="/ temperature", new_state="_", pass_state=""
)
TEMPERATURE_IGNORED = _GENERATE.format(
    doc="Samples at temperature 1 whatever it is asked.", divide="", new_state="state", pass_state=", state"
)

VIEW_LOSS = '''
def compute_loss(logits, y):
    """Flattened with .view: valid on the contiguous tensors the docstring promises."""
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1))
'''
ZERO_GRAD_AFTER_THE_STEP = '''
def train_step(model, optimizer, x, y):
    """The gradients cleared after the step rather than before: the same steps."""
    model.train()
    logits, _ = model(x)
    loss = compute_loss(logits, y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()
'''
NO_ZERO_GRAD = '''
def train_step(model, optimizer, x, y):
    """optimizer.zero_grad() forgotten: every step also follows all the earlier batches' gradients."""
    model.train()
    logits, _ = model(x)
    loss = compute_loss(logits, y)
    loss.backward()
    optimizer.step()
    return loss.item()
'''

# grade_id -> checks that fail, for each buggy student (every other check passes).
EXPECTED_FAILURES = {
    "shifty": {
        "get_batch_tests": {"batch_shift", "batch_targets_are_next_characters"},
        "loss_tests": {"loss_fixture", "loss_fixture_hidden"},
        "training_tests": {
            "validation_loss_after_training",
            "training_loss_after_training",
            "train_step_clears_gradients",
            "train_step_returns_its_loss",
        },
        "generate_tests": {"generate_greedy_fixture"},
        "abc_tests": {"share_of_valid_abc_tunes"},
    },
    "offbyone": {
        "get_batch_tests": {"batch_window_starts"},
        "loss_tests": {"loss_fixture", "loss_fixture_hidden"},
        "training_tests": {
            "validation_loss_after_training",
            "training_loss_after_training",
            "train_step_clears_gradients",
            "train_step_returns_its_loss",
        },
        "generate_tests": {"generate_greedy_fixture", "generate_temperature_matters", "generate_hot_is_more_varied"},
        "abc_tests": {"share_of_valid_abc_tunes"},
    },
}
EXPECTED_FAILURES["forgetter"] = {  # its losses are still its batches' losses; the model does not train
    "training_tests": {"validation_loss_after_training", "training_loss_after_training", "train_step_clears_gradients"},
    "abc_tests": {"share_of_valid_abc_tunes"},
}
# What the failure message must name, per failing check.
EXPECTED_MESSAGES = {
    "batch_shift": "shifted by one",
    "batch_targets_are_next_characters": "NEXT character",
    "batch_window_starts": "got [0, 1], which is not the expected value",
    "loss_fixture": "without transposing; pass raw logits",
    "generate_greedy_fixture": "not passed from one step to the next",
    "generate_temperature_matters": "divide the logits by the temperature",
    "validation_loss_after_training": "expected at most 1.9",
    "train_step_clears_gradients": "call optimizer.zero_grad() before every loss.backward()",
    "share_of_valid_abc_tunes": "expected at least 0.4",
}


@pytest.fixture(scope="session")
def lab4_course(tmp_path_factory) -> Course:
    """This repository's lab 4, built from scratch (music21's corpus needs no staged data)."""
    return build_repo_lab(tmp_path_factory, LAB)


@pytest.fixture(scope="module")
def graded(lab4_course):
    students = [
        DemoStudent("solution", "the instructor's solution"),
        DemoStudent("blank", "the release as is", answers="blank"),
        DemoStudent(
            "shifty",
            "y not shifted, softmax before the loss, state dropped while generating",
            replace={"get_batch": Y_NOT_SHIFTED, "compute_loss": SOFTMAX_TWICE, "generate_text": STATE_NOT_CARRIED},
        ),
        DemoStudent(
            "offbyone",
            "last window never drawn, batch and time mixed in the loss, temperature ignored",
            replace={
                "get_batch": OFF_BY_ONE_WINDOWS,
                "compute_loss": MIXED_RESHAPE,
                "generate_text": TEMPERATURE_IGNORED,
            },
        ),
        DemoStudent(
            "viewer",
            "valid: the loss flattened with .view, the gradients cleared after the step",
            replace={"compute_loss": VIEW_LOSS, "train_step": ZERO_GRAD_AFTER_THE_STEP},
        ),
        DemoStudent("forgetter", "train_step without zero_grad", replace={"train_step": NO_ZERO_GRAD}),
    ]
    return grade_class(lab4_course, LAB, students)


def test_committed_release_and_solutions_match_the_source(lab4_course):
    assert_committed_lab_matches_the_source(lab4_course, LAB)


def test_every_exercise_has_public_and_hidden_checks(lab4_course):
    by_cell = public_and_hidden(load_references(lab4_course.references_file(LAB)))
    assert len(by_cell) == 13
    assert all(kinds == {False, True} for kinds in by_cell.values()), by_cell


def test_the_solution_scores_full_marks(graded):
    result = graded["solution"]
    assert result.status == "graded", result.reason
    assert result.score == result.max_score == 27.0, [
        k.message for k in checks_by_name(result).values() if not k.passed
    ]


def test_valid_variations_keep_full_marks(graded):
    result = graded["viewer"]
    assert result.status == "graded", result.reason
    assert result.score == result.max_score == 27.0, [
        k.message for k in checks_by_name(result).values() if not k.passed
    ]


def test_the_blank_release_runs_to_the_end_and_scores_zero(graded):
    result = graded["blank"]
    assert (result.status, result.score) == ("graded", 0.0), result.reason
    assert len(cells_by_id(result)) == 13
    assert not any(k.passed for k in checks_by_name(result).values())
    assert "NotImplementedError" in checks_by_name(result)["rnn_step_values"].message


@pytest.mark.parametrize("student", sorted(EXPECTED_FAILURES))
def test_each_bug_costs_exactly_its_checks(graded, student):
    result = graded[student]
    assert result.status == "graded", result.reason
    expected = EXPECTED_FAILURES[student]
    failed = {grade_id: {k.name for k in cell.checks if not k.passed} for grade_id, cell in cells_by_id(result).items()}
    assert {g: names for g, names in failed.items() if names} == expected, {
        n: k.message for n, k in checks_by_name(result).items() if not k.passed
    }
    for cell in cells_by_id(result).values():  # a cell's points shared by the weights of its hidden checks
        total = sum(k.weight for k in cell.checks if k.hidden)
        earned = sum(k.weight for k in cell.checks if k.hidden and k.passed)
        assert cell.score == pytest.approx(cell.max_score * earned / total)
        assert (cell.score == cell.max_score) == (earned == total)
    assert result.score < result.max_score  # every bug costs points: a hidden check catches each


@pytest.mark.parametrize("student", sorted(EXPECTED_FAILURES))
def test_the_failure_messages_name_the_cause(graded, student):
    found = checks_by_name(graded[student])
    for name in set().union(*EXPECTED_FAILURES[student].values()):
        if name in EXPECTED_MESSAGES:
            assert EXPECTED_MESSAGES[name] in found[name].message, found[name].message

"""The checks API: observations as data, comparisons, and the messages for common mistakes."""

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from autograder.checks import Checker
from autograder.checks.checker import CheckFailed, ReferencesUnavailable
from autograder.checks.compare import compare, verify_declared
from autograder.checks.notebook_metadata import digest
from autograder.checks.observation import (
    MIME_TYPE,
    MalformedObservation,
    Observation,
    decode,
    encode,
    observations_in_outputs,
    to_array,
)


def obs(name, value, kind="close", **params):
    return Observation(name, kind, to_array(value) if kind != "shape" else value, params)


def message(reference, got, reveal=True):
    outcome = compare(obs("x", reference), obs("x", got), reveal=reveal)
    assert not outcome.passed
    return outcome.message


# ----------------------------------------------------------------- observations


def test_round_trip_keeps_dtype_shape_and_values():
    for value in (
        torch.tensor(3.5),
        torch.arange(6, dtype=torch.int64).reshape(2, 3),
        torch.tensor([True, False]),
        torch.linspace(0, 1, 5, dtype=torch.float64),
    ):
        back = decode(encode(obs("v", value)))
        assert back.value.shape == tuple(value.shape)
        assert back.value.dtype == to_array(value).dtype
        assert np.array_equal(back.value, value.numpy())


def test_bfloat16_is_recorded_as_float32():
    assert to_array(torch.ones(2, dtype=torch.bfloat16)).dtype == np.float32


@pytest.mark.parametrize(
    "payload, reason",
    [
        ("not an object", "JSON object"),
        ({"version": 1, "name": "a", "kind": "close", "format": "pickle", "data": "x"}, "unknown format"),
        ({"version": 1, "name": "a", "kind": "exec", "format": "json", "data": 1}, "unknown kind"),
        ({"version": 1, "name": "a", "kind": "close", "format": "safetensors", "data": "!!!"}, "safetensors"),
        (
            {
                "version": 1,
                "name": "a",
                "kind": "close",
                "format": "safetensors",
                "data": base64.b64encode(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ").decode(),
            },
            "one tensor",
        ),
    ],
)
def test_malformed_observations_are_rejected_with_a_reason(payload, reason):
    with pytest.raises(MalformedObservation, match=reason):
        decode(payload)


def test_observations_in_outputs_keeps_good_ones_and_reports_bad_ones():
    good = encode(obs("g", torch.ones(2)))
    outputs = [
        {"output_type": "display_data", "data": {MIME_TYPE: good}},
        {"output_type": "display_data", "data": {MIME_TYPE: {"version": 99}}},
        {"output_type": "stream", "text": "hello"},
    ]
    found, rejected = observations_in_outputs(outputs)
    assert [o.name for o in found] == ["g"] and len(rejected) == 1 and "version" in rejected[0]


# ----------------------------------------------------------------- comparisons


def test_close_passes_within_tolerance_and_fails_beyond():
    ref = obs("x", torch.tensor([1.0, 2.0]), rtol=1e-3, atol=0.0)
    assert compare(ref, obs("x", torch.tensor([1.0005, 2.001]))).passed
    assert not compare(ref, obs("x", torch.tensor([1.01, 2.0]))).passed


def test_shape_then_dtype_then_values():
    assert "expected shape (2,), got (3,)" in message(torch.ones(2), torch.ones(3))
    assert "expected dtype float32, got float64" in message(torch.ones(2), torch.ones(2, dtype=torch.float64))
    assert "values differ" in message(torch.ones(2), torch.zeros(2))


@pytest.mark.parametrize(
    "reference, got, cause",
    [
        (torch.arange(6.0).reshape(2, 3), torch.arange(6.0).reshape(2, 3).T, "transposed"),
        (torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[1.0, 3.0], [2.0, 4.0]]), "transposed"),
        (
            torch.tensor([0.75, -0.5, 0.25, 2.0]),
            torch.tensor([3.0, -2.0, 1.0, 8.0]),
            "4x too large: a sum where a mean",
        ),
        (torch.tensor([0.5, -1.0]), torch.tensor([-0.5, 1.0]), "sign is flipped"),
        (torch.ones(4), torch.ones(4, 4), "broadcast to (N, N)"),
        (torch.tensor(1.0), torch.ones(5), "reduce over the batch"),
        (torch.tensor([1.0, 2.0]), torch.tensor([float("nan"), 2.0]), "overflow"),
        (torch.ones(3, dtype=torch.int64), torch.ones(3), "floats where integers"),
        (torch.tensor([[2.0, 1.0, 0.0]]), torch.softmax(torch.tensor([[2.0, 1.0, 0.0]]), -1), "probabilities"),
    ],
)
def test_common_mistakes_name_their_cause(reference, got, cause):
    assert cause in message(reference, got)


def test_no_cause_is_invented_for_an_arbitrary_error():
    assert "likely cause" not in message(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.5, 2.0]))


def test_hidden_checks_do_not_reveal_reference_values():
    text = message(torch.tensor([0.123456, 7.654321]), torch.tensor([0.0, 0.0]), reveal=False)
    assert "0.123" not in text and "7.65" not in text and "2 of 2 values differ" in text


def test_hint_is_appended():
    ref = Observation("ce", "close", to_array(torch.tensor(1.0)), {"hint": "average over the batch"})
    assert "hint: average over the batch" in compare(ref, obs("ce", torch.tensor(2.0))).message


def test_shape_check_accepts_wildcards():
    ref = Observation("s", "shape", {"shape": [4, 3], "dtype": "float32"}, {"shape": [None, 3]})
    assert compare(ref, Observation("s", "shape", {"shape": [7, 3], "dtype": "x"})).passed
    assert not compare(ref, Observation("s", "shape", {"shape": [7, 2], "dtype": "x"})).passed


def test_equal_on_plain_values_and_integer_tensors():
    ref = Observation("e", "equal", [2, 3])
    assert compare(ref, Observation("e", "equal", [2, 3])).passed
    assert "expected [2, 3], got [3, 2]" in compare(ref, Observation("e", "equal", [3, 2])).message
    ref = Observation("p", "equal", to_array(torch.tensor([0, 2, 1])))
    assert "1 of 3 entries differ" in compare(ref, Observation("p", "equal", to_array(torch.tensor([0, 2, 2])))).message


def test_unrecordable_value_fails_with_what_came():
    ref = obs("x", torch.ones(2))
    got = Observation("x", "close", None, problem="a builtins.str, not a tensor or number")
    assert "builtins.str" in compare(ref, got).message


def test_declared_expectations_are_verified():
    assert verify_declared(Observation("s", "shape", {"shape": [2, 3]}, {"shape": [2, 3]})).passed
    assert not verify_declared(Observation("s", "shape", {"shape": [3, 2]}, {"shape": [2, 3]})).passed
    assert verify_declared(obs("v", torch.tensor(6.0), expected=6.0)).passed
    assert not verify_declared(obs("v", torch.tensor(5.0), expected=6.0)).passed
    assert verify_declared(obs("v", torch.tensor(5.0))) is None


# ----------------------------------------------------------------- the two modes


def test_student_mode_compares_with_public_references(tmp_path, capsys):
    refs = {"version": 1, "checks": {"mean": encode(obs("mean", torch.tensor(2.0)))}}
    (tmp_path / "public_references.json").write_text(json.dumps(refs))
    check = Checker(tmp_path / "public_references.json")
    assert check.mode == "student"
    check.close("mean", torch.tensor(2.0))
    assert "passed" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="check 'mean' failed"):
        check.close("mean", torch.tensor(6.0))
    check.close("hidden_one", torch.tensor(1.0))  # no public reference: says so, does not fail
    assert "autograder checks it when you submit" in capsys.readouterr().out


def released_notebook(tmp_path, checks: dict, *, edit=None) -> Path:
    """A minimal release notebook whose metadata block carries `checks` (edit: changes it after the digest)."""
    block = {
        "format": 1,
        "lab": "tiny",
        "notebook": "tiny",
        "limits": {"cell_timeout": 30, "notebook_timeout": 60},
        "cells": {},
        "public_references": {"version": 1, "checks": checks},
    }
    block["sha256"] = digest(block)
    if edit:
        edit(block)
    notebook = {"cells": [], "metadata": {"autograder": block}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "tiny.ipynb"
    path.write_text(json.dumps(notebook))
    return path


def test_student_mode_reads_the_references_the_notebook_carries_from_any_folder(tmp_path, monkeypatch, capsys):
    path = released_notebook(tmp_path, {"mean": encode(obs("mean", torch.tensor(2.0)))})
    monkeypatch.chdir(tmp_path.parent)  # not the notebook's folder: JupyterLab says which notebook it is
    monkeypatch.setenv("JPY_SESSION_NAME", str(path))
    check = Checker()
    check.close("mean", torch.tensor(2.0))
    assert capsys.readouterr().out.startswith("\u2713 ")
    with pytest.raises(CheckFailed, match="check 'mean' failed") as failure:
        check.close("mean", torch.tensor(6.0))
    assert isinstance(failure.value, AssertionError)
    rendered = failure.value._render_traceback_()  # what Jupyter shows: the message, no frames of the package
    assert len(rendered) == 1 and "check 'mean' failed" in rendered[0] and "checker.py" not in rendered[0]


def test_edited_or_missing_references_say_so_instead_of_passing(tmp_path, monkeypatch):
    # a student "fixes" the reference to match a wrong answer: the digest no longer matches
    def forge(block):
        block["public_references"]["checks"]["mean"] = encode(obs("mean", torch.tensor(6.0)))

    path = released_notebook(tmp_path, {"mean": encode(obs("mean", torch.tensor(2.0)))}, edit=forge)
    monkeypatch.setenv("JPY_SESSION_NAME", str(path))
    with pytest.raises(ReferencesUnavailable, match="were edited"):
        Checker().close("mean", torch.tensor(6.0))

    notebook = json.loads(path.read_text())
    del notebook["metadata"]["autograder"]
    path.write_text(json.dumps(notebook))
    with pytest.raises(ReferencesUnavailable, match="carries no public references"):
        Checker().close("mean", torch.tensor(2.0))
    monkeypatch.delenv("JPY_SESSION_NAME")
    monkeypatch.chdir(tmp_path / "..")  # no front end says which notebook, and none in the folder
    with pytest.raises(ReferencesUnavailable, match="cannot tell which notebook"):
        Checker().close("mean", torch.tensor(2.0))


def test_record_mode_is_chosen_by_the_environment(monkeypatch):
    monkeypatch.setenv("AUTOGRADER_MODE", "record")
    assert Checker().mode == "record"


# ----------------------------------------------------------------- new kinds


def test_grad_uses_elementwise_relative_error_in_float64():
    ref = Observation("g", "grad", to_array(torch.tensor([1e-3, 2.0], dtype=torch.float64)), {"rtol": 1e-6})
    assert compare(ref, obs("g", torch.tensor([1e-3 * (1 + 1e-8), 2.0], dtype=torch.float64), kind="grad")).passed
    text = compare(ref, obs("g", torch.tensor([2e-3, 2.0], dtype=torch.float64), kind="grad")).message
    assert "largest relative error 3.33e-01" in text and "a wrong formula" in text


@pytest.mark.parametrize(
    "kind, value, passed",
    [("at_most", 1.5, True), ("at_most", 2.5, False), ("at_least", 0.9, True), ("at_least", 0.8, False)],
)
def test_thresholds(kind, value, passed):
    ref = Observation("t", kind, to_array(torch.tensor(0.0)), {"limit": 2.0 if kind == "at_most" else 0.85})
    outcome = compare(ref, obs("t", torch.tensor(value), kind=kind))
    assert outcome.passed is passed
    if not passed:
        assert ("at most 2" if kind == "at_most" else "at least 0.85") in outcome.message


BY_HAND_CELLS = [
    "import torch\n%matplotlib inline",
    "def helper(x):\n    x.backward()\n    return x.grad",
    "def honest(dout, x):\n    return dout * (x > 0)",
    "def sneaky(dout, x):\n    return helper(x)",
    "def direct(x):\n    from torch.autograd import grad\n    return grad(x.sum(), x)",
    "def dynamic(x):\n    return getattr(x, 'back' + 'ward')()",
    "from torch.autograd import grad as g\nimport torch.func as tf",
    "def aliased(x):\n    return g(x.sum(), x)",
    "def aliased_module(f, x):\n    return tf.vjp(f, x)",
    "def named_grad(dout, x):\n    grad = dout * (x > 0)   # dx's natural name is no autograd\n    return grad",
]


#: What the cheating cells of BY_HAND_CELLS cost every function of that notebook: code in a cell the
#: student edits can rebind or patch what any graded function calls, so it is judged notebook-wide.
BY_HAND_NOTEBOOK_WIDE = [
    "cell 5, line 2: imports torch.autograd",
    "cell 6, line 2: looks up attributes dynamically (getattr)",
    "cell 7, line 1: imports torch.autograd.grad",
    "cell 7, line 2: imports torch.func",
    "cell 9, line 2: keeps the function tf.vjp(...) returns as a value",
]


@pytest.mark.parametrize(
    "function, found, problem",
    [
        ("honest", True, None),
        ("sneaky", True, "helper (called from sneaky), line 2: calls .backward()"),
        ("direct", True, "imports torch.autograd"),
        ("dynamic", True, "getattr"),
        ("absent", False, None),
        ("aliased", True, "uses torch.autograd.grad (imported as g)"),
        ("aliased_module", True, "uses torch.func"),
        ("named_grad", True, None),
    ],
)
def test_by_hand_rule_reads_the_source(function, found, problem):
    from autograder.checks.by_hand import function_violations

    was_found, violations = function_violations(BY_HAND_CELLS, function)
    assert was_found is found
    if not found:
        assert violations == []
        return
    notebook_wide = [v for v in violations if v.startswith("cell ")]
    assert len(notebook_wide) == len(BY_HAND_NOTEBOOK_WIDE), violations
    assert all(v.startswith(w) for v, w in zip(notebook_wide, BY_HAND_NOTEBOOK_WIDE, strict=True)), notebook_wide
    own = [v for v in violations if not v.startswith("cell ")]
    if problem:
        assert any(problem in v for v in own), violations
    else:
        assert own == []
        # Without the cheating cells, nothing at all: honest code and a dx called grad are fine.
        assert function_violations([BY_HAND_CELLS[0], BY_HAND_CELLS[2], BY_HAND_CELLS[9]], function) == (True, [])


# ----------------------------------------------------------------- gradients: the float64 policy


def test_numeric_gradient_is_centred_differences_in_float64():
    from autograder.checks import numeric_gradient, relative_error

    x = torch.tensor([[0.5, -1.0, 0.0], [2.0, 0.25, -3.0]])  # float32 in; 0.0 needs a fixed step
    weights = torch.linspace(-1.0, 1.0, 6, dtype=torch.float64).reshape(2, 3)
    f = lambda t: (torch.tanh(t) * weights).sum() + (t**3).sum()  # noqa: E731
    numeric = numeric_gradient(f, x)
    leaf = x.double().requires_grad_()
    f(leaf).backward()
    assert isinstance(numeric, torch.Tensor) and numeric.dtype == torch.float64 and numeric.shape == x.shape
    assert relative_error(numeric, leaf.grad).max() < 1e-7  # CS231n: "<= 1e-7 happy"
    assert x.dtype == torch.float32 and x[0, 0] == 0.5  # the input is never modified
    on_numpy = numeric_gradient(lambda a: float((a**2).sum()), np.array([1.0, -2.0]))
    assert isinstance(on_numpy, np.ndarray) and np.allclose(on_numpy, [2.0, -4.0], rtol=1e-8)
    assert abs(numeric_gradient(lambda a: a**3, 2.0) - 12.0) < 1e-6  # a plain number, shape ()
    with pytest.raises(ValueError, match="f must return a single number"):
        numeric_gradient(lambda t: t * 2, torch.ones(2))
    with pytest.raises(ValueError, match="positive"):
        numeric_gradient(f, x, h=0.0)


def test_relative_error_has_a_floor_for_exact_zeros():
    from autograder.checks import relative_error

    error = relative_error(np.array([0.0, 1.0, 1e-12]), np.array([0.0, 1.0 + 2e-6, 0.0]), floor=1e-8)
    assert error.tolist() == pytest.approx([0.0, 1e-6, 1e-4], rel=1e-3)


def grad_obs(value, expected, **params):
    return Observation("dW", "grad", to_array(value), {"rtol": 1e-6, "floor": 1e-8, **params, "expected": expected})


def test_labelled_references_are_each_verified_and_a_wrong_one_is_named():
    good = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    assert verify_declared(grad_obs(good, {"autograd": good.tolist(), "finite differences": good.tolist()})).passed
    off = (good * (1 + 1e-4)).tolist()  # within 1e-3, not within 1e-6
    outcome = verify_declared(grad_obs(good, {"autograd": good.tolist(), "finite differences": off}))
    assert not outcome.passed
    assert outcome.message.startswith("the declared reference 'finite differences' disagrees with the solution's value")
    assert "largest relative error" in outcome.message and "'autograd'" not in outcome.message
    assert verify_declared(grad_obs(good, {"finite differences": off}, rtol=1e-3)).passed  # the check's own rtol
    flipped = verify_declared(grad_obs(good, {"autograd": (-good).tolist()}))
    assert "'autograd'" in flipped.message and "sign is flipped" in flipped.message
    close = Observation(
        "v",
        "close",
        to_array(torch.tensor([1.0, 2.0])),
        {"rtol": 1e-5, "atol": 1e-8, "expected": {"by hand": [1.0, 2.0], "torch": [1.0, 2.5]}},
    )
    assert "the declared reference 'torch' disagrees" in verify_declared(close).message


def test_the_checker_records_labelled_references_as_plain_json(monkeypatch):
    import autograder.checks.checker as checker

    recorded = []
    monkeypatch.setenv("AUTOGRADER_MODE", "record")
    monkeypatch.setattr(checker, "_emit", recorded.append)
    check = Checker()
    check.grad(
        "dW",
        torch.ones(2, dtype=torch.float64),
        expected={"autograd": torch.ones(2, dtype=torch.float64), "finite differences": np.ones(2)},
    )
    check.equal("pair", {"a": 1}, expected={"a": 1})  # for equal, a dict is just a value
    assert recorded[0].params["expected"] == {"autograd": [1.0, 1.0], "finite differences": [1.0, 1.0]}
    assert recorded[1].params["expected"] == {"a": 1}
    json.dumps([o.params for o in recorded])
    with pytest.raises(TypeError, match="labelled by a non-empty string"):
        check.close("v", torch.ones(1), expected={})


def test_a_wrong_labelled_reference_fails_the_build_naming_it(tmp_path):
    from nbformat.v4 import new_notebook

    from autograder.authoring.pipeline import build_lab
    from autograder.authoring.source_rules import SourceError
    from conftest import new_course
    from notebooks import SETUP, grade_cell, locked_cell, solution_cell, write_lab

    course = new_course(tmp_path)
    write_lab(
        course.root,
        "tiny",
        new_notebook(
            cells=[
                locked_cell("setup", SETUP + "\nfrom autograder.checks import numeric_gradient"),
                solution_cell(
                    "square_backward_solution",
                    'def square_backward(x):\n    """x: (N,) -> d(sum x^2)/dx: (N,)"""\n'
                    "    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
                ),
                grade_cell(
                    "square_backward_tests",
                    "x = torch.linspace(-1, 1, 5, dtype=torch.float64)\n"
                    "check.grad('square_dx', square_backward(x), expected={\n"
                    "    'autograd': torch.func.grad(lambda t: (t ** 2).sum())(x),\n"
                    "    'finite differences': numeric_gradient(lambda t: (t ** 2).sum() / 2, x)})",
                ),
            ]
        ),
    )
    with pytest.raises(SourceError, match="tiny.ipynb, cell") as err:
        build_lab(course, "tiny")
    assert "the solution fails its own check" in str(err.value)
    assert "the declared reference 'finite differences' disagrees" in str(err.value)
    assert "too large" not in str(err.value)  # a 1/2 dropped: 2 is the size of no axis, so no "sum over 2 items"


# ----------------------------------------------------------------- accuracy ranges and the bias hint


@pytest.mark.parametrize(
    "params, accuracy, passed, phrase",
    [
        ({"min_accuracy": 0.9}, 0.95, True, "(at least 90% needed)"),
        ({"min_accuracy": 0.9}, 0.85, False, "at least 90% needed"),
        ({"min_accuracy": 0.0, "max_accuracy": 0.8}, 0.5, True, "(at most 80% expected)"),
        (
            {"min_accuracy": 0.0, "max_accuracy": 0.8},
            0.99,
            False,
            "accuracy 99.00% on 400 held-out examples, at most 80% expected",
        ),
        ({"min_accuracy": 0.1, "max_accuracy": 0.8}, 0.05, False, "between 10% and 80% expected"),
    ],
)
def test_accuracy_may_have_an_upper_bound_to_show_a_model_fails(params, accuracy, passed, phrase):
    ref = Observation("acc", "accuracy", to_array(np.zeros(0, np.int64)), {"dataset": "d", **params})
    outcome = compare(ref, Observation("acc", "accuracy", {"accuracy": accuracy, "n": 400}))
    assert outcome.passed is passed and phrase in outcome.message, outcome.message
    assert ("near chance" in outcome.message) is (accuracy < 0.1)


def test_a_missing_bias_is_named():
    expected = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert "a bias left out" in message(expected, expected - torch.tensor([0.5, -1.0, 2.0]))
    assert "a bias" not in message(expected, expected + torch.tensor([[1.0], [2.0]]))  # not the same vector


def test_a_near_miss_gradient_names_float32_only_when_it_was_float32():
    ref = Observation("g", "grad", to_array(torch.tensor([1.0, 2.0], dtype=torch.float64)), {"rtol": 1e-6})
    near = torch.tensor([1.0, 2.0001])
    assert "computed in float32? gradient checks need float64" in compare(ref, obs("g", near, kind="grad")).message
    text = compare(ref, obs("g", near.double(), kind="grad")).message
    assert "close, but beyond the tolerance" in text and "float32" not in text


def test_by_hand_names_a_module_call_once():
    """torch.autograd.grad is one violation (uses torch.autograd), not also "reads or writes .grad"."""
    from autograder.checks.by_hand import function_violations

    cells = ["import torch", "def f(x):\n    return torch.autograd.grad(x.sum(), x)", "def g(x):\n    return x.grad"]
    assert function_violations(cells, "f") == (True, ["f, line 2: uses torch.autograd"])
    assert function_violations(cells, "g") == (True, ["g, line 2: reads or writes .grad"])

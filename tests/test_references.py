"""autograder/references.py: the build → grade contract, written and read back.

The private file keeps every check with its test cell; the public file, shipped beside the
release notebook, keeps the public checks only, without notebook, grade id, cell or hidden flag.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from autograder.checks.observation import Observation, decode
from autograder.references import REFERENCES_VERSION, Reference, load_references, save_references

PRIVATE_FIELDS = {"notebook", "grade_id", "cell_index", "hidden"}


def references() -> dict[str, Reference]:
    observations = [
        (
            Observation(
                "logits",
                "close",
                np.arange(6, dtype=np.float32).reshape(2, 3),
                {"rtol": 1e-5, "atol": 1e-8, "check_dtype": True, "weight": 2.0, "hint": "mind the max"},
                line=3,
            ),
            "lab",
            "logits_tests",
            4,
            False,
        ),
        (
            Observation(
                "dW",
                "grad",
                np.linspace(-1, 1, 4),
                {"rtol": 1e-6, "floor": 1e-8, "weight": 1.0, "expected": {"autograd": [-1.0, -0.3, 0.3, 1.0]}},
                line=9,
            ),
            "lab",
            "grad_tests",
            7,
            True,
        ),
        (Observation("classes", "equal", [0, 1, 2], {"weight": 1.0}), "lab", "grad_tests", 7, True),
        (Observation("label", "equal", "cat", {}), "other", "label_tests", 2, False),
        (
            Observation("out_shape", "shape", {"shape": [2, 3], "dtype": "torch.float32"}, {"shape": [None, 3]}),
            "lab",
            "logits_tests",
            4,
            False,
        ),
        (
            Observation(
                "f_by_hand",
                "by_hand",
                {"function": "f", "found": True, "violations": []},
                {"function": "f", "weight": 0.0},
            ),
            "lab",
            "logits_tests",
            4,
            False,
        ),
        (
            Observation("count", "equal", np.array([1, 2], dtype=np.int64), {"weight": 3.0}),
            "lab",
            "grad_tests",
            7,
            True,
        ),
    ]
    return {
        obs.name: Reference(obs, notebook, grade_id, index, hidden)
        for obs, notebook, grade_id, index, hidden in observations
    }


def same_observation(a: Observation, b: Observation) -> bool:
    if isinstance(a.value, np.ndarray):
        values = isinstance(b.value, np.ndarray) and a.value.dtype == b.value.dtype and np.array_equal(a.value, b.value)
    else:
        values = not isinstance(b.value, np.ndarray) and a.value == b.value
    return values and (a.name, a.kind, a.params, a.line, a.problem) == (b.name, b.kind, b.params, b.line, b.problem)


def test_save_then_load_gives_back_every_reference(tmp_path):
    original = references()
    file = tmp_path / "private" / "lab" / "references.json"  # folders made as needed
    save_references(original, file)
    loaded = load_references(file)
    assert list(loaded) == sorted(original)
    for name, ref in original.items():
        back = loaded[name]
        assert (back.notebook, back.grade_id, back.cell_index, back.hidden) == (
            ref.notebook,
            ref.grade_id,
            ref.cell_index,
            ref.hidden,
        ), name
        assert same_observation(ref.observation, back.observation), name
    assert (loaded["logits"].name, loaded["logits"].weight, loaded["label"].weight) == ("logits", 2.0, 1.0)


def test_the_file_is_stable_json(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    save_references(references(), a)
    save_references(dict(reversed(references().items())), b)
    assert a.read_bytes() == b.read_bytes()  # sorted: a rebuild writes the same bytes
    document = json.loads(a.read_text())
    assert document["version"] == REFERENCES_VERSION and a.read_text().endswith("}\n")
    assert document["checks"]["dW"]["format"] == "safetensors" and document["checks"]["classes"]["format"] == "json"


def test_public_only_drops_hidden_checks_and_where_they_belong(tmp_path):
    file = tmp_path / "release" / "public_references.json"
    save_references(references(), file, public_only=True)
    checks = json.loads(file.read_text())["checks"]
    assert sorted(checks) == ["f_by_hand", "label", "logits", "out_shape"]
    assert all(not PRIVATE_FIELDS & set(entry) for entry in checks.values())
    assert "logits_tests" not in file.read_text() and "grad_tests" not in file.read_text()
    for name, entry in checks.items():  # what a student's Checker reads: the observation alone
        assert same_observation(decode(entry), references()[name].observation), name


@pytest.mark.parametrize("public_only", [False, True], ids=["private", "public"])
def test_no_references_is_an_empty_file(tmp_path, public_only):
    file = tmp_path / "refs.json"
    save_references({}, file, public_only=public_only)
    assert json.loads(file.read_text()) == {"version": REFERENCES_VERSION, "checks": {}}
    assert load_references(file) == {}


def test_a_public_file_is_not_a_private_one(tmp_path):
    """The grader never judges with the public file: it has no test cells to attribute checks to."""
    file = tmp_path / "public_references.json"
    save_references(references(), file, public_only=True)
    with pytest.raises(KeyError, match="notebook"):
        load_references(file)

"""When a rebuild's references say the same as the previous build's: each check's own tolerance.

The rule that keeps rebuilds reproducible (pipeline.write_references, and the public references
inside release notebooks, release_metadata.py): old bytes stay where the new values agree.
"""

from __future__ import annotations

import json

import numpy as np

from ..checks.compare import LABELLED_EXPECTED_KINDS, compare
from ..checks.observation import MalformedObservation, Observation, decode


def references_agree(old: bytes, new: bytes) -> bool:
    """Whether two references files say the same, up to each check's own tolerance.

    Every field but the recorded values must be equal (names, kinds, tolerances, limits, hints,
    weights, cells, lines). Values: close and grad within the check's tolerance, as the judge
    compares (checks/compare.py), and so their `expected=` references; at_most / at_least are
    judged by their limit alone (their value is the solution's own training outcome); everything
    else (equal, shape, by_hand, accuracy) exactly.
    """
    try:
        a, b = json.loads(old), json.loads(new)
        if (
            set(a) != set(b)
            or {k: v for k, v in a.items() if k != "checks"} != {k: v for k, v in b.items() if k != "checks"}
            or set(a["checks"]) != set(b["checks"])
        ):
            return False
        return all(_entries_agree(a["checks"][name], b["checks"][name]) for name in a["checks"])
    except (ValueError, KeyError, TypeError, AttributeError, MalformedObservation):
        return False  # an unreadable or foreign old file: write the new one


def _entries_agree(old: dict, new: dict) -> bool:
    def rest(entry):
        params = {k: v for k, v in entry.get("params", {}).items() if k != "expected"}
        return {**{k: v for k, v in entry.items() if k not in ("data", "params")}, "params": params}

    if rest(old) != rest(new):
        return False
    a, b = decode(old), decode(new)
    if a.problem or b.problem:
        return False
    if a.kind in ("close", "grad"):
        if not _values_agree(a, a.value, b.value):
            return False
        expected_a, expected_b = a.params.get("expected"), b.params.get("expected")
        if (expected_a is None) != (expected_b is None):
            return False
        if expected_a is None:
            return True
        if a.kind in LABELLED_EXPECTED_KINDS and isinstance(expected_a, dict):
            return (
                isinstance(expected_b, dict)
                and set(expected_a) == set(expected_b)
                and all(_values_agree(a, expected_a[k], expected_b[k]) for k in expected_a)
            )
        return _values_agree(a, expected_a, expected_b)
    if a.kind in ("at_most", "at_least"):
        return True  # judged by params["limit"], equal above
    if old.get("params", {}).get("expected") != new.get("params", {}).get("expected"):
        return False
    if isinstance(a.value, np.ndarray) or isinstance(b.value, np.ndarray):
        return (
            isinstance(a.value, np.ndarray)
            and isinstance(b.value, np.ndarray)
            and a.value.dtype == b.value.dtype
            and a.value.shape == b.value.shape
            and np.array_equal(a.value, b.value)
        )
    return old.get("data") == new.get("data")


def _values_agree(reference: Observation, old, new) -> bool:
    """Both ways, with the check's own comparison (shape, dtype, tolerance) and the old params."""
    try:
        old_value, new_value = np.asarray(old), np.asarray(new)
    except (TypeError, ValueError):
        return False
    if old_value.dtype.kind not in "biuf" or new_value.dtype.kind not in "biuf":
        return False
    a = Observation(reference.name, reference.kind, old_value, reference.params)
    b = Observation(reference.name, reference.kind, new_value, reference.params)
    return compare(a, b).passed and compare(b, a).passed

"""The float64 gradient policy in one place: centred differences with a fixed step, and the
element-wise relative error that `check.grad` judges by.

Policy (CS231n's, see the README): a numerical gradient is taken by centred differences
(f(x + h e_i) - f(x - h e_i)) / 2h with a fixed step h = 1e-6 in float64 (an adaptive step such
as sqrt(eps) * x divides by zero at x = 0); two gradients are compared by the element-wise
relative error |a - b| / max(floor, |a| + |b|), whose floor keeps exact zeros from dividing by
zero. Test cells call `numeric_gradient` to compute an independent reference for
`check.grad(..., expected={"finite differences": ...})`, which the build verifies.

numpy only at module level (this package is mounted alone in the grading sandbox); a torch
tensor is handled without importing torch until one is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

#: The fixed step of the centred differences.
DEFAULT_STEP = 1e-6
#: check.grad's default tolerance on the largest element-wise relative error.
DEFAULT_GRAD_RTOL = 1e-6
#: check.grad's default floor of the relative error's denominator.
DEFAULT_FLOOR = 1e-8


def relative_error(a: Any, b: Any, floor: float = DEFAULT_FLOOR) -> np.ndarray:
    """Element-wise |a - b| / max(floor, |a| + |b|), in float64 (a, b: arrays of one shape)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.abs(a - b) / np.maximum(floor, np.abs(a) + np.abs(b))


def numeric_gradient(f: Callable[[Any], Any], x: Any, h: float = DEFAULT_STEP):
    """The gradient of the scalar function f at x, by centred differences in float64.

    f: called with a float64 copy of x (a torch tensor when x is one, else a numpy array) in
       which one entry at a time is moved by +h and by -h; it must return a single number
       (a Python float, a 0-d or 1-element tensor or array).
    x: a torch tensor, numpy array or nested list of numbers, any shape; never modified.
    h: the fixed step (default 1e-6).
    returns: float64 of x's shape: a CPU torch tensor when x is a tensor, else a numpy array.

    Costs 2 * x.size calls of f: meant for the small fixtures of test cells.
    """
    h = float(h)
    if not (np.isfinite(h) and h > 0):
        raise ValueError(f"numeric_gradient: the step h must be a positive number, got {h!r}")
    is_tensor = hasattr(x, "detach") and hasattr(x, "cpu")
    if is_tensor:
        import torch

        point = x.detach().to(dtype=torch.float64, copy=True)
    else:
        point = np.array(x, dtype=np.float64, copy=True)
    gradient = np.zeros(tuple(point.shape), dtype=np.float64)
    for index in np.ndindex(*gradient.shape):
        old = float(point[index])
        point[index] = old + h
        above = _single_number(f(point))
        point[index] = old - h
        below = _single_number(f(point))
        point[index] = old
        gradient[index] = (above - below) / (2.0 * h)
    if is_tensor:
        return torch.from_numpy(gradient)
    return gradient


def _single_number(value: Any) -> float:
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float64)
    if array.size != 1:
        raise ValueError(f"numeric_gradient: f must return a single number, got shape {tuple(array.shape)}")
    return float(array.reshape(()))

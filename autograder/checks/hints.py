"""Likely causes of a wrong answer, guessed from the numbers alone.

Each rule looks for the signature of one common mistake (a transpose, a sum where a mean
belongs, a flipped sign, an (N, 1) + (N,) broadcast) and names it. A rule only fires when
the signature fits exactly, so a hint is never a random guess.
"""

from __future__ import annotations

import numpy as np


def likely_cause_for_shape(expected: tuple, got: tuple) -> str | None:
    expected, got = tuple(expected), tuple(got)
    if len(expected) == 2 and got == expected[::-1] and expected[0] != expected[1]:
        return "the result is transposed: check the order of the matrix product (x @ W, not W @ x) or add .T"
    if len(expected) == 1 and got == (expected[0], expected[0]):
        return (
            "an (N, 1) tensor was combined with an (N,) tensor and broadcast to (N, N): "
            "flatten or squeeze the (N, 1) one first"
        )
    if got == () and len(expected) == 1:
        return (
            f"a single number where {expected[0]} per-sample values are expected: "
            "do not reduce (mean/sum) over the batch here"
        )
    if expected == () and len(got) == 1:
        return (
            f"{got[0]} per-sample values where a single number is expected: reduce over the batch (the mean, usually)"
        )
    if len(got) == len(expected) + 1 and (got[1:] == expected or got[:-1] == expected):
        return "one dimension too many: a missing reduction (sum/mean) over a dimension, or keepdim=True?"
    if len(got) + 1 == len(expected) and (expected[1:] == got or expected[:-1] == got):
        return "one dimension too few: reduced over a dimension that should stay, or keepdim=False?"
    if tuple(s for s in got if s != 1) == tuple(s for s in expected if s != 1):
        return "same values, but a dimension of size 1 is missing or extra: squeeze/unsqueeze or keepdim"
    if int(np.prod(got, dtype=np.int64)) == int(np.prod(expected, dtype=np.int64)):
        return "the right number of elements in the wrong shape: check reshape/view and the order of dimensions"
    return None


def likely_cause_for_values(expected: np.ndarray, got: np.ndarray, *, rtol: float, atol: float) -> str | None:
    """expected, got: float64 arrays of the same shape."""

    def close(a, b):
        return np.allclose(a, b, rtol=max(rtol, 1e-6), atol=max(atol, 1e-9))

    if expected.ndim == 2 and expected.shape[0] == expected.shape[1] and close(got, expected.T):
        return "the result is transposed (square, so the shape did not give it away)"
    if close(got, -expected):
        return "the sign is flipped: a gradient descends along minus the gradient, a loss is minus the log-likelihood"
    scale = _constant_ratio(expected, got)
    if scale is not None:
        k = round(scale)
        if k >= 2 and abs(scale - k) < 1e-6 * k:
            return f"exactly {k}x too large: a sum where a mean over {k} items is expected?"
        inv = 1.0 / scale
        if round(inv) >= 2 and abs(inv - round(inv)) < 1e-6 * inv:
            return (
                f"exactly {round(inv)}x too small: divided by the batch size twice, or a mean where a sum is expected?"
            )
    if got.ndim >= 1 and got.shape[-1] > 1 and close(got.sum(axis=-1), 1.0) and not close(expected.sum(axis=-1), 1.0):
        return "the rows sum to 1: probabilities (softmax) where raw scores (logits) are expected?"
    if np.all(expected < 50) and close(got, np.exp(expected)):
        return "exp() of the expected values: probabilities where log-probabilities are expected?"
    if _same_offset_in_every_row(expected, got, close):
        return (
            "every row is off by the same vector: a bias left out (out = x @ W + b adds b to each row) or added twice?"
        )
    return None


def _same_offset_in_every_row(expected: np.ndarray, got: np.ndarray, close) -> bool:
    """(N, M) results, N >= 2, whose difference is one non-zero row repeated: what a missing bias leaves."""
    if expected.ndim != 2 or expected.shape[0] < 2:
        return False
    offset = expected - got
    return bool(not close(offset[0], 0.0) and close(offset, np.broadcast_to(offset[0], offset.shape)))


def _constant_ratio(expected: np.ndarray, got: np.ndarray) -> float | None:
    mask = np.abs(expected) > 1e-12
    if not mask.any() or not np.all(np.abs(got[~mask]) < 1e-9):
        return None
    ratios = got[mask] / expected[mask]
    if np.allclose(ratios, ratios.flat[0], rtol=1e-6, atol=0) and ratios.flat[0] > 0:
        return float(ratios.flat[0])
    return None

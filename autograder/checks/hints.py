"""Likely causes of a wrong answer, guessed from the numbers alone.

Each rule looks for the signature of one common mistake (a transpose, a sum where a mean
belongs, a flipped sign, an (N, 1) + (N,) broadcast) and names it. A rule only fires when the
signature fits exactly and the evidence can tell it from other mistakes (a ratio of 4 is "a sum
over 4 items" only where 4 items exist; a constant offset is "a bias" only where the rows differ
enough for a constant offset to stand out), so a hint is never a random guess. Where the numbers
fit several causes (a NaN), the message names them all and says that the numbers do not decide.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

#: A constant offset names a missing bias only when the expected rows differ, column by column, by at
#: least this fraction of the expected values' size: rows that are near copies of each other (lab 3's
#: four fixture images once gave logits at most 0.002 apart) are moved alike by almost any mistake.
ROW_SPREAD_FRACTION = 0.05
#: ... and by at least this multiple of the tolerance within which the offset rows were called equal:
#: otherwise a mistake that ignores each row's input would have passed that test too.
ROW_SPREAD_POWER = 10.0


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


def likely_cause_for_values(
    expected: np.ndarray, got: np.ndarray, *, rtol: float, atol: float, item_counts: Iterable[int] = ()
) -> str | None:
    """expected, got: float64 arrays of the same shape.

    item_counts: the sizes a mean could have been taken over (the axes of the check's declared
    inputs and of the expected value): a constant ratio k names "a sum where a mean is expected"
    only when k is one of them."""
    rtol, atol = max(rtol, 1e-6), max(atol, 1e-9)

    def close(a, b):
        return np.allclose(a, b, rtol=rtol, atol=atol)

    if expected.ndim == 2 and expected.shape[0] == expected.shape[1] and close(got, expected.T):
        return "the result is transposed (square, so the shape did not give it away)"
    if close(got, -expected):
        return "the sign is flipped: a gradient descends along minus the gradient, a loss is minus the log-likelihood"
    scale = _constant_ratio(expected, got)
    if scale is not None:
        counts = {int(k) for k in item_counts if int(k) >= 2}
        k = round(scale)
        if k in counts and abs(scale - k) < 1e-6 * k:
            return f"exactly {k}x too large: a sum where a mean over {k} items is expected?"
        inv = 1.0 / scale
        if round(inv) in counts and abs(inv - round(inv)) < 1e-6 * inv:
            return (
                f"exactly {round(inv)}x too small: divided by the batch size twice, or a mean where a sum is expected?"
            )
    if got.ndim >= 2 and got.shape[-1] > 1 and close(got.sum(axis=-1), 1.0) and not close(expected.sum(axis=-1), 1.0):
        # (a 1-D vector summing to 1 is often a normalisation over the batch, not rows of probabilities)
        return "the rows sum to 1: probabilities (softmax) where raw scores (logits) are expected?"
    if np.all(expected < 50) and close(got, np.exp(expected)):
        return "exp() of the expected values: probabilities where log-probabilities are expected?"
    if _same_offset_in_every_row(expected, got, rtol=rtol, atol=atol):
        return (
            "every row is off by the same vector: a bias left out (out = x @ W + b adds b to each row) or added twice?"
        )
    return None


def _same_offset_in_every_row(expected: np.ndarray, got: np.ndarray, *, rtol: float, atol: float) -> bool:
    """(N, M) results, N >= 2, whose difference is one non-zero row repeated: what a missing bias leaves,
    where the expected rows differ enough for that to tell a bias from other mistakes.

    Why the rows must differ: a mistake anywhere upstream changes each row by some function of that
    row's input, and rows that (nearly) agree are changed (nearly) alike, so their offsets agree
    within the tolerance whatever the mistake was. A repeated offset is evidence of a bias only when
    the expected rows differ by a clear fraction of their size (ROW_SPREAD_FRACTION) and by much
    more than the tolerance the offsets were compared with (ROW_SPREAD_POWER)."""
    if expected.ndim != 2 or expected.shape[0] < 2:
        return False
    offset = expected - got
    first = offset[0]
    tolerance = atol + rtol * np.abs(first)
    if np.all(np.abs(first) <= atol) or np.any(np.abs(offset - first) > tolerance):
        return False
    spread = float(np.max(np.ptp(expected, axis=0)))
    size = float(np.max(np.abs(expected)))
    return spread >= ROW_SPREAD_FRACTION * size and spread >= ROW_SPREAD_POWER * float(np.max(tolerance))


def _constant_ratio(expected: np.ndarray, got: np.ndarray) -> float | None:
    mask = np.abs(expected) > 1e-12
    if not mask.any() or not np.all(np.abs(got[~mask]) < 1e-9):
        return None
    ratios = got[mask] / expected[mask]
    if np.allclose(ratios, ratios.flat[0], rtol=1e-6, atol=0) and ratios.flat[0] > 0:
        return float(ratios.flat[0])
    return None


# --------------------------------------------------------------------------- NaN and inf


def non_finite_counts(got: np.ndarray) -> str:
    """What the non-finite entries are, e.g. "2 NaN, 1 -inf" (got: a float array)."""
    counts = ((np.isnan(got), "NaN"), (np.isposinf(got), "+inf"), (np.isneginf(got), "-inf"))
    return ", ".join(f"{int(mask.sum())} {label}" for mask, label in counts if mask.any())


def likely_cause_for_non_finite(got: np.ndarray, *, gradient: bool = False) -> str:
    """Why a result that should be finite has NaN or inf entries, from which of them it has.

    got: the value in the dtype it was computed in (float32 and float64 overflow at different
    numbers, and the message names the one that was used).

    -inf is what log(0) gives; +inf is either an exp() that overflowed or -log(0); NaN is inf/inf,
    inf - inf, 0 * inf or 0/0, which an overflow and an underflow (log(0) = -inf times 0) both
    produce: there the message names both and says that the numbers do not decide."""
    dtype = got.dtype if got.dtype.kind == "f" else np.dtype(np.float64)
    info = np.finfo(dtype)
    overflow = f"{dtype.name} holds exp(x) only up to x = {float(np.log(info.max)):.4g}"
    # exp(x) rounds to 0 below half the smallest subnormal number
    underflow = f"exp(x) is 0 in {dtype.name} below x = {float(np.log(info.smallest_subnormal) - np.log(2)):.4g}"
    has_inf, has_neg_inf = bool(np.isinf(got).any()), bool(np.isneginf(got).any())
    if gradient:
        if has_inf:
            return (
                "an infinite derivative: a division by 0 (of 1/x, or the derivative of log(x) or sqrt(x), "
                f"at x = 0), or an exp() that overflowed ({overflow})?"
            )
        return (
            "NaN in a derivative comes from 0/0 or 0 * inf (x / |x| or a norm at 0, log(0) times 0) or from "
            f"inf - inf after an exp() that overflowed ({overflow}): the numbers alone do not say which"
        )
    if has_neg_inf:
        return (
            f"-inf is log(0): a probability that underflowed to 0 ({underflow})? compute log-probabilities "
            "directly (log_softmax, or x - max - log(sum(exp(x - max)))), not log(softmax(x))"
        )
    if has_inf:
        return (
            f"+inf: an exp() that overflowed ({overflow}: subtract the maximum before exp()), or -log(0) of a "
            "probability that underflowed to 0 (compute log-probabilities directly, not log(softmax(x)))?"
        )
    return (
        "NaN is what inf/inf, inf - inf, 0 * inf and 0/0 give: an exp() that overflowed "
        f"({overflow}), or log(0) = -inf multiplied by 0, or 0/0; the numbers alone do not say which: "
        "print the intermediate values of one small example"
    )

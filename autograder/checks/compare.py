"""Compare an observation with its reference: the one place a check's outcome is decided.

The same functions serve a student's own Jupyter (public checks, at once) and the
coordinator (every check, after grading). Messages say what was expected, what came and,
where the numbers suggest one, the likely cause. With `reveal=False` (hidden checks) the
message never shows the reference's values, only shapes, dtypes and the likely cause.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .gradients import DEFAULT_FLOOR, DEFAULT_GRAD_RTOL, relative_error
from .hints import likely_cause_for_non_finite, likely_cause_for_shape, likely_cause_for_values, non_finite_counts
from .observation import CASE_KIND, RAISED_PREFIX, Observation

DEFAULT_RTOL = 1e-5
DEFAULT_ATOL = 1e-8


@dataclass
class Outcome:
    passed: bool
    message: str


def compare(reference: Observation, got: Observation, *, reveal: bool = True) -> Outcome:
    """Judge `got` against `reference`; tolerances and hints come from the reference's params."""
    if got.problem:
        if got.kind == CASE_KIND and got.problem.startswith(RAISED_PREFIX):
            # check.case: the test cell raised inside this check's block. One line, as raised_text wrote it
            # (feedback shows only the exception's type of that line: its text is the student code's).
            return _fail(reference, got.problem.splitlines()[0])
        return _fail(reference, f"could not be recorded: the value was {got.problem}")
    if reference.kind != got.kind:
        return _fail(reference, f"was recorded as a {got.kind!r} check, expected {reference.kind!r}")
    judge = {
        "close": _close,
        "shape": _shape,
        "equal": _equal,
        "grad": _grad,
        "at_most": _threshold,
        "at_least": _threshold,
        "by_hand": _by_hand,
        "accuracy": _accuracy,
    }[reference.kind]
    return judge(reference, got, reveal)


def scored_accuracy(predictions: Observation, labels: np.ndarray) -> Observation:
    """Turn recorded predictions into {"accuracy", "n"} using labels only the judge holds."""
    value = predictions.value
    n = int(labels.shape[0])
    if predictions.problem or not isinstance(value, np.ndarray):
        problem = predictions.problem or f"{_describe(value)}, not class indices"
        return Observation(predictions.name, "accuracy", None, problem=problem)
    if value.ndim != 1 or value.shape[0] != n:
        return Observation(
            predictions.name,
            "accuracy",
            None,
            problem=f"predictions of shape {_shape_text(value.shape)} for {n} held-out examples; "
            f"expected ({n},): one class index per example, in the data set's order",
        )
    if value.dtype.kind not in "iub":
        return Observation(
            predictions.name,
            "accuracy",
            None,
            problem=f"{value.dtype} predictions; expected integer class indices (use argmax)",
        )
    return Observation(predictions.name, "accuracy", {"accuracy": float(np.mean(value == labels)), "n": n})


def verify_declared(obs: Observation) -> Outcome | None:
    """Check a solution's observation against what its call declared (build time).

    A shape check declares its shape; any check may declare `expected=`. A close or grad check
    may declare several independent references, `expected={label: value}` (autograd's gradient
    and finite differences, say): each must agree with the solution within the check's own
    tolerance, and a disagreement names its label. Returns None when nothing was declared.
    """
    if obs.kind == "shape":
        return _shape(obs, obs, reveal=True)
    if obs.kind in ("at_most", "at_least", "by_hand"):
        return compare(obs, obs)
    if "expected" not in obs.params:
        return None
    expected = obs.params["expected"]
    if obs.kind in LABELLED_EXPECTED_KINDS and isinstance(expected, dict):
        for label, value in expected.items():
            outcome = _against_declared(obs, value)
            if not outcome.passed:
                return Outcome(
                    False, f"the declared reference {label!r} disagrees with the solution's value: {outcome.message}"
                )
        return Outcome(True, f"check {obs.name!r}: the solution agrees with {', '.join(map(repr, expected))}")
    return _against_declared(obs, expected)


#: Check kinds whose `expected=` may be a dict of labelled, independent references.
LABELLED_EXPECTED_KINDS = ("close", "grad")


def _against_declared(obs: Observation, expected) -> Outcome:
    # A declared value is typed by hand (Python floats): compare values, not dtypes.
    value = np.asarray(expected) if isinstance(obs.value, np.ndarray) else expected
    declared = Observation(obs.name, obs.kind, value, {**obs.params, "check_dtype": False})
    return compare(declared, obs)


# --------------------------------------------------------------------------- kinds


def _close(ref: Observation, got: Observation, reveal: bool) -> Outcome:
    expected, value = np.asarray(ref.value), got.value
    if not isinstance(value, np.ndarray):
        return _fail(ref, f"expected a tensor of shape {_shape_text(expected.shape)}, got {_describe(value)}")
    if value.shape != expected.shape:
        cause = likely_cause_for_shape(expected.shape, value.shape)
        return _fail(ref, f"expected shape {_shape_text(expected.shape)}, got {_shape_text(value.shape)}", cause)
    if ref.params.get("check_dtype", True) and value.dtype != expected.dtype:
        cause = _dtype_cause(expected.dtype, value.dtype)
        return _fail(ref, f"expected dtype {expected.dtype}, got {value.dtype}", cause)
    rtol = float(ref.params.get("rtol", DEFAULT_RTOL))
    atol = float(ref.params.get("atol", DEFAULT_ATOL))
    exp64, val64 = expected.astype(np.float64), value.astype(np.float64)
    if not np.all(np.isfinite(val64)) and np.all(np.isfinite(exp64)):
        bad = int(np.sum(~np.isfinite(val64)))
        return _fail(
            ref,
            f"{bad} of {val64.size} values are NaN or infinite ({non_finite_counts(val64)})",
            likely_cause_for_non_finite(value),
        )
    ok = np.isclose(val64, exp64, rtol=rtol, atol=atol, equal_nan=True)
    if ok.all():
        return _pass(ref)
    cause = likely_cause_for_values(exp64, val64, rtol=rtol, atol=atol, item_counts=_item_counts(ref, expected))
    wrong = int(np.sum(~ok))
    if not reveal:
        return _fail(
            ref, f"{wrong} of {ok.size} values differ from the reference (rtol={rtol:g}, atol={atol:g})", cause
        )
    where = np.unravel_index(int(np.argmax(np.where(ok, 0.0, np.abs(val64 - exp64)))), ok.shape)
    at = f" at index {tuple(int(i) for i in where)}" if ok.ndim else ""
    detail = (
        f"{wrong} of {ok.size} values differ (rtol={rtol:g}, atol={atol:g}); "
        f"worst{at}: expected {exp64[where]:.6g}, got {val64[where]:.6g}"
    )
    if ok.size <= 12:
        detail += f"\n  expected: {_array_text(expected)}\n  got:      {_array_text(value)}"
    return _fail(ref, detail, cause)


def _grad(ref: Observation, got: Observation, reveal: bool) -> Outcome:
    """Gradients, in float64: element-wise relative error |x - y| / max(floor, |x| + |y|) <= rtol."""
    expected, value = np.asarray(ref.value, dtype=np.float64), got.value
    if not isinstance(value, np.ndarray):
        return _fail(ref, f"expected a gradient of shape {_shape_text(expected.shape)}, got {_describe(value)}")
    if value.shape != expected.shape:
        cause = likely_cause_for_shape(expected.shape, value.shape)
        return _fail(
            ref, f"expected a gradient of shape {_shape_text(expected.shape)}, got {_shape_text(value.shape)}", cause
        )
    computed_in = value.dtype
    if not np.all(np.isfinite(value)):
        return _fail(
            ref,
            f"the gradient has NaN or infinite entries ({non_finite_counts(value)} of {value.size})",
            likely_cause_for_non_finite(value, gradient=True),
        )
    value = value.astype(np.float64)
    rtol = float(ref.params.get("rtol", DEFAULT_GRAD_RTOL))
    floor = float(ref.params.get("floor", DEFAULT_FLOOR))
    error = relative_error(value, expected, floor)
    worst = float(error.max()) if error.size else 0.0
    if worst <= rtol:
        return _pass(ref)
    cause = likely_cause_for_values(expected, value, rtol=rtol, atol=floor, item_counts=_item_counts(ref, expected))
    if worst > 1e-2:
        verdict = "a wrong formula"
    elif computed_in.kind == "f" and computed_in.itemsize < 8:
        verdict = f"close, but beyond the tolerance: computed in {computed_in}? gradient checks need float64"
    else:
        verdict = "close, but beyond the tolerance"
    detail = f"largest relative error {worst:.2e} (allowed {rtol:.0e}): {verdict}"
    if reveal and error.ndim:
        where = np.unravel_index(int(np.argmax(error)), error.shape)
        detail += (
            f"; worst at index {tuple(int(i) for i in where)}: expected {expected[where]:.6g}, got {value[where]:.6g}"
        )
    return _fail(ref, detail, cause)


def _threshold(ref: Observation, got: Observation, reveal: bool) -> Outcome:
    """A scalar at most / at least the limit the build recorded (a limit is not a secret)."""
    limit, value = float(ref.params["limit"]), got.value
    if not isinstance(value, np.ndarray) or value.size != 1:
        return _fail(ref, f"expected a single number, got {_describe(value)}")
    number = float(value.reshape(()))
    if not np.isfinite(number):
        return _fail(ref, f"got {number}", "training diverged? try a smaller learning rate")
    ok = number <= limit if ref.kind == "at_most" else number >= limit
    if ok:
        return _pass(ref)
    bound = "at most" if ref.kind == "at_most" else "at least"
    return _fail(ref, f"got {number:.4g}, expected {bound} {limit:.4g}")


def _by_hand(ref: Observation, got: Observation, reveal: bool) -> Outcome:
    """The function must exist and use no autograd (value: from checks.by_hand, read from source)."""
    value = got.value if isinstance(got.value, dict) else {}
    function = ref.params.get("function", "?")
    if not value.get("found"):
        return _fail(ref, f"no definition of {function}() was found in the notebook")
    if value.get("violations"):
        listing = "\n    ".join(value["violations"])
        return _fail(ref, f"{function}() must compute its result by hand, without autograd:\n    {listing}")
    return _pass(ref)


def _accuracy(ref: Observation, got: Observation, reveal: bool) -> Outcome:
    """got.value: {"accuracy", "n"} from scored_accuracy (the judge's labels).

    ref.params: min_accuracy, and max_accuracy when the check shows that a model fails (a
    single layer on XOR, say)."""
    minimum = float(ref.params.get("min_accuracy", 0.0))
    maximum = ref.params.get("max_accuracy")
    accuracy, n = float(got.value["accuracy"]), got.value["n"]
    if maximum is None:
        bound = f"at least {minimum:.0%} needed"
    elif minimum > 0:
        bound = f"between {minimum:.0%} and {float(maximum):.0%} expected"
    else:
        bound = f"at most {float(maximum):.0%} expected"
    if accuracy >= minimum and (maximum is None or accuracy <= float(maximum)):
        return Outcome(True, f"check {ref.name!r} passed: accuracy {accuracy:.2%} on {n} held-out examples ({bound})")
    cause = None
    if accuracy < min(minimum, 0.2):
        cause = (
            "near chance: predictions in a different order than the data set, evaluated on the wrong data, "
            "or the model did not train (optimizer.zero_grad()? the optimiser given the model's parameters?)"
        )
    return _fail(ref, f"accuracy {accuracy:.2%} on {n} held-out examples, {bound}", cause)


def _shape(ref: Observation, got: Observation, reveal: bool) -> Outcome:
    declared = ref.params["shape"]  # check.shape records the declared shape
    value = got.value
    if not isinstance(value, dict) or not _is_shape(value.get("shape")):
        return _fail(ref, f"expected something of shape {_shape_text(declared)}, got {_describe(value)}")
    shape = tuple(value["shape"])
    if len(shape) == len(declared) and all(d is None or d == s for d, s in zip(declared, shape, strict=True)):
        return _pass(ref)
    if len(shape) == len(declared):
        cause = likely_cause_for_shape(
            tuple(d if d is not None else s for d, s in zip(declared, shape, strict=True)), shape
        )
    else:
        cause = likely_cause_for_shape(tuple(declared), shape)
    return _fail(ref, f"expected shape {_shape_text(declared)}, got {_shape_text(shape)}", cause)


def _equal(ref: Observation, got: Observation, reveal: bool) -> Outcome:
    expected, value = ref.value, got.value
    if isinstance(expected, np.ndarray) or isinstance(value, np.ndarray):
        if not (isinstance(expected, np.ndarray) and isinstance(value, np.ndarray)):
            shown = _describe(expected) if reveal else f"a {type(expected).__name__}"
            return _fail(ref, f"expected {shown}, got {_describe(value)}")
        if value.shape != expected.shape:
            return _fail(
                ref,
                f"expected shape {_shape_text(expected.shape)}, got {_shape_text(value.shape)}",
                likely_cause_for_shape(expected.shape, value.shape),
            )
        if np.array_equal(expected, value):
            return _pass(ref)
        wrong = int(np.sum(expected != value))
        detail = f"{wrong} of {expected.size} entries differ"
        if reveal and expected.size <= 12:
            detail += f"\n  expected: {_array_text(expected)}\n  got:      {_array_text(value)}"
        return _fail(ref, detail)
    if expected == value and type(expected) is type(value):
        return _pass(ref)
    if reveal:
        return _fail(ref, f"expected {expected!r}, got {quoted(value)}")
    return _fail(ref, f"got {quoted(value)}, which is not the expected value")


# --------------------------------------------------------------------------- text


def _pass(ref: Observation) -> Outcome:
    return Outcome(True, f"check {ref.name!r} passed")


def _fail(ref: Observation, detail: str, cause: str | None = None) -> Outcome:
    lines = [f"check {ref.name!r} failed: {detail}"]
    if cause:
        lines.append(f"  likely cause: {cause}")
    hint = ref.params.get("hint")
    if hint:
        lines.append(f"  hint: {hint}")
    return Outcome(False, "\n".join(lines))


def _item_counts(ref: Observation, expected: np.ndarray) -> set[int]:
    """The sizes a mean could be over: every axis of the check's declared inputs (params["inputs"],
    their shapes as Checker records them) and of the expected value itself."""
    counts = {int(s) for s in expected.shape}
    declared = ref.params.get("inputs")
    if isinstance(declared, list):
        for shape in declared:
            if isinstance(shape, list):
                counts.update(s for s in shape if type(s) is int)
    return counts


def _dtype_cause(expected: np.dtype, got: np.dtype) -> str:
    if expected.kind == "f" and got.kind in "iub":
        return "integer arithmetic where floats are expected: start from float tensors (e.g. .float())"
    if expected.kind in "iu" and got.kind == "f":
        return "floats where integers (class indices) are expected: argmax gives integer indices"
    if expected == np.float32 and got == np.float64:
        return "float64 crept in (numpy and Python floats default to float64): keep tensors float32"
    if expected == np.float64 and got == np.float32:
        return "float32 where float64 is expected: use dtype=torch.float64 for this computation"
    return "convert the result to the expected dtype"


def _shape_text(shape) -> str:
    if shape is None:
        return "?"
    parts = ["N" if s is None else str(s) for s in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")" if parts else "() (a scalar)"


def _array_text(a: np.ndarray) -> str:
    return np.array2string(np.asarray(a), precision=5, separator=", ", threshold=12).replace("\n", " ")


def _describe(value) -> str:
    """What a message says of a value the kernel recorded (see quoted)."""
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {_shape_text(value.shape)}"
    if value is None:
        return "nothing (None)"
    if isinstance(value, dict) and _is_shape(value.get("shape")):
        return f"something of shape {_shape_text(value['shape'])}"
    return quoted(value)


# A message quotes what student code recorded only in a closed, small form: the value is the
# student's to choose, so anything longer is a channel out of the kernel (a hidden test's source read
# from In[-1], written into a value that fails its check). Text is quoted in pieces of at most
# QUOTED_TEXT_PIECE characters from a plain alphabet, QUOTED_TEXT_TOTAL in all; numbers in a
# bounded format; containers up to QUOTED_ITEMS leaves; anything else by its type and size alone.
QUOTED_TEXT_PIECE = 16
QUOTED_TEXT_TOTAL = 40
QUOTED_ITEMS = 16
_PLAIN_TEXT = re.compile(r"[A-Za-z0-9_ .,:;+\-*/=<>()\[\]|!?#'\"]*")


def quoted(value) -> str:
    """A recorded plain value as a message may show it: itself when small (a number, a short word, a
    short list of them), else its type and size, e.g. "a str of 312 characters", "a list of 40 items"."""
    budget = {"items": QUOTED_ITEMS, "text": QUOTED_TEXT_TOTAL}
    shown = _quoted_leaf_or_list(value, budget, depth=0)
    return shown if shown is not None else _size_text(value)


def _quoted_leaf_or_list(value, budget: dict[str, int], depth: int) -> str | None:
    budget["items"] -= 1
    if budget["items"] < 0:
        return None
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if abs(value) < 10**12 else None
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        budget["text"] -= len(value)
        plain = len(value) <= QUOTED_TEXT_PIECE and _PLAIN_TEXT.fullmatch(value) is not None
        return repr(value) if plain and budget["text"] >= 0 else None
    if isinstance(value, (list, tuple)) and depth < 3:
        quoted_items = [_quoted_leaf_or_list(item, budget, depth + 1) for item in value]
        items = [item for item in quoted_items if item is not None]
        if len(items) < len(quoted_items):
            return None
        inner = ", ".join(items) + ("," if isinstance(value, tuple) and len(items) == 1 else "")
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    return None


def _size_text(value) -> str:
    def counted(n: int, unit: str) -> str:
        return f"{n} {unit}" + ("" if n == 1 else "s")

    if isinstance(value, str):
        return f"a str of {counted(len(value), 'character')}"
    if isinstance(value, (list, tuple, dict)):
        return f"a {type(value).__name__} of {counted(len(value), 'key' if isinstance(value, dict) else 'item')}"
    if isinstance(value, int):
        return f"an int of {len(str(abs(value)))} digits"
    return "a value of another type"


def _is_shape(shape) -> bool:
    return isinstance(shape, list) and len(shape) <= 8 and all(s is None or type(s) is int for s in shape)

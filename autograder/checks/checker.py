"""`check`: the object test cells call.

Two modes, chosen by the environment the kernel was started with, never by the notebook:

- **student** (the default): a check compares at once with the public reference that the
  release notebook carries in its own metadata (notebook_metadata.py) and raises CheckFailed
  (an AssertionError that Jupyter shows as its message alone, without frames of this package)
  with a message that explains the mistake. A check without a public reference (a hidden one)
  just says so; a notebook whose references are missing or were edited says that, plainly, at
  its first check.
- **record** (`AUTOGRADER_MODE=record`, set by the build and by the grader): a check only
  records an observation as a display output. Nothing is compared in this process.

`check.case(name)` keeps the checks of one test cell independent: an exception inside its block
fails the check `name` (with that check's hint) and, under grading, the cell carries on.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from .compare import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    LABELLED_EXPECTED_KINDS,
    compare,
    scored_accuracy,
)
from .gradients import DEFAULT_FLOOR, DEFAULT_GRAD_RTOL
from .notebook_metadata import METADATA_KEY, MetadataProblem, course_metadata, find_notebook, read_notebook_json
from .observation import (
    CASE_KIND,
    MIME_TYPE,
    Observation,
    Unrecordable,
    decode,
    encode,
    raised_text,
    to_array,
    to_json_value,
)

MODE_VARIABLE = "AUTOGRADER_MODE"
_PACKAGE_DIR = str(Path(__file__).resolve().parent)


class _MessageOnly:
    """IPython shows what `_render_traceback_` returns instead of a traceback: the student sees
    the explanation, not the frames of this package that raised it."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self}"]


class CheckFailed(_MessageOnly, AssertionError):
    """A public check disagrees with its reference; the message says how and why."""


class ReferencesUnavailable(_MessageOnly, RuntimeError):
    """The notebook's public references are missing or were edited: no verdict can be given here."""


class Checker:
    """Test-cell API. `references`: a notebook (.ipynb) or public-references document (.json) to
    read the public references from; default: the notebook this kernel runs (find_notebook)."""

    def __init__(self, references: str | os.PathLike | None = None):
        self.mode = "record" if os.environ.get(MODE_VARIABLE) == "record" else "student"
        self._references: dict[str, Observation] | None = None
        self._references_path = Path(references) if references else None

    # ------------------------------------------------------------------ the API

    def close(
        self,
        name: str,
        value: Any,
        rtol: float = DEFAULT_RTOL,
        atol: float = DEFAULT_ATOL,
        *,
        check_dtype: bool = True,
        hint: str | None = None,
        weight: float = 1,
        expected: Any = None,
        inputs: Any = None,
    ) -> None:
        """`value` matches the reference in shape, then dtype, then values within rtol/atol.

        expected: an independent value the build verifies the solution against, or a dict
        {label: value} of several (each verified, a disagreement names its label).
        inputs: what `value` was computed from: a tensor or array, or a tuple (or list) of them. Only
        their shapes are recorded, never their values, so that a failure message may name "a sum where
        a mean over k items is expected" where k is the size of one of their axes (or of the
        expected value's): without them a single number never gets that guess."""
        params: dict[str, Any] = {"rtol": float(rtol), "atol": float(atol), "check_dtype": bool(check_dtype)}
        if inputs is not None:
            params["inputs"] = _input_shapes(inputs)
        self._run(name, "close", value, _array_or_problem, params, hint, weight, expected)

    def shape(self, name: str, value: Any, shape: tuple, *, hint: str | None = None, weight: float = 1) -> None:
        """`value.shape` equals `shape` (use None for a dimension that may be anything)."""
        declared = [None if s is None else int(s) for s in shape]
        self._run(name, "shape", value, _shape_or_problem, {"shape": declared}, hint, weight, None)

    def equal(self, name: str, value: Any, *, hint: str | None = None, weight: float = 1, expected: Any = None) -> None:
        """`value` equals the reference exactly (ints, bools, strings, tuples, integer tensors)."""
        self._run(name, "equal", value, _json_or_problem, {}, hint, weight, expected)

    def grad(
        self,
        name: str,
        value: Any,
        rtol: float = DEFAULT_GRAD_RTOL,
        *,
        floor: float = DEFAULT_FLOOR,
        hint: str | None = None,
        weight: float = 1,
        expected: Any = None,
        inputs: Any = None,
    ) -> None:
        """A gradient, compared in float64 by element-wise relative error |x-y| / max(floor, |x|+|y|).

        expected: independent references the build verifies the solution's gradient against with
        this check's rtol and floor, typically {"autograd": ..., "finite differences":
        numeric_gradient(f, x)}; a single value is accepted too.
        inputs: as for close(): the tensors the gradient was computed from (shapes recorded only), so
        that "exactly 6x too large" can name the batch of 6 even for a (D, H) weight gradient."""
        params: dict[str, Any] = {"rtol": float(rtol), "floor": float(floor)}
        if inputs is not None:
            params["inputs"] = _input_shapes(inputs)
        self._run(name, "grad", value, _array_or_problem, params, hint, weight, expected)

    def at_most(self, name: str, value: Any, limit: float, *, hint: str | None = None, weight: float = 1) -> None:
        """A single number (a loss after training, say) no larger than `limit`."""
        self._run(name, "at_most", value, _array_or_problem, {"limit": float(limit)}, hint, weight, None)

    def at_least(self, name: str, value: Any, limit: float, *, hint: str | None = None, weight: float = 1) -> None:
        """A single number (an accuracy, say) no smaller than `limit`."""
        self._run(name, "at_least", value, _array_or_problem, {"limit": float(limit)}, hint, weight, None)

    def by_hand(self, name: str, function: Any, *, hint: str | None = None) -> None:
        """`function` uses no autograd. Under grading this is decided from the notebook's source, outside
        the kernel; when violated, every check of this test cell scores 0."""
        function_name = getattr(function, "__name__", str(function))
        self._run(name, "by_hand", function, _by_hand_in_kernel, {"function": function_name}, hint, 0, None)

    def accuracy(
        self,
        name: str,
        predictions: Any,
        *,
        dataset: str,
        min_accuracy: float = 0.0,
        max_accuracy: float | None = None,
        hint: str | None = None,
        weight: float = 1,
    ) -> None:
        """Predicted class indices (N,) for the held-out split `dataset`, in the data set's order.

        Passes when min_accuracy <= accuracy (<= max_accuracy, when given: to show that a model
        fails, such as a single layer on XOR). The labels never enter the grading sandbox: the
        coordinator computes the accuracy. In a student's Jupyter it is computed at once where
        the labels are on disk.
        """
        params = {"dataset": str(dataset), "min_accuracy": float(min_accuracy)}
        if max_accuracy is not None:
            params["max_accuracy"] = float(max_accuracy)
        self._run(name, "accuracy", predictions, _array_or_problem, params, hint, weight, None)

    def case(self, name: str) -> CheckCase:
        """A block whose exception fails the check `name` instead of the whole test cell:

            with check.case("softmax_rows"):
                check.close("softmax_rows", softmax(z))
            check.close("softmax_sums", softmax(z).sum(-1))   # still runs, and scores, under grading

        Under grading (record mode), an Exception raised inside the block is recorded as the failure of
        check `name`: its message says "the test cell raised ValueError: <the exception's last line>",
        followed by that check's hint; the exception is swallowed and the cell goes on after the block.
        The failure is recorded even where `name` was recorded earlier in the block: the block as a
        whole is that check's case. A block that raises nothing records nothing. A case can only fail
        a check, never pass one: a check passes only by a value recorded by the check itself.

        In a student's own Jupyter (student mode) the exception is not swallowed: the cell stops there,
        as it would without the block, showing the student's own traceback (where their code failed)
        with a note naming the check and its hint. Carrying on there would end the cell without an
        error, and a notebook run (Jupyter's, or `autograder validate`) would read a failed check as a
        cell that passed. A CheckFailed (a public check's own failure) or ReferencesUnavailable passes
        through as it is, without a note.

        KeyboardInterrupt, SystemExit and other BaseExceptions that are not Exceptions are never caught.
        """
        if not isinstance(name, str) or not name:
            raise TypeError("check.case needs the name of the check it stands for (a non-empty string)")
        return CheckCase(self, name)

    # ------------------------------------------------------------------ plumbing

    def _run(self, name, kind, value, convert, params, hint, weight, expected) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError("a check needs a non-empty name (a string)")
        if hint:
            params["hint"] = str(hint)
        params["weight"] = float(weight)
        if expected is not None:
            params["expected"] = _declared(kind, expected)
        recorded, problem = convert(value)
        obs = Observation(name=name, kind=kind, value=recorded, params=params, line=_caller_line(), problem=problem)
        if self.mode == "record":
            _emit(obs)
        else:
            self._judge_now(obs)

    def _judge_now(self, obs: Observation) -> None:
        if obs.kind == "accuracy":
            return self._judge_accuracy_now(obs)
        reference = self._public_references().get(obs.name)
        if reference is None:
            print(f"check {obs.name!r}: no public reference here; the autograder checks it when you submit.")
            return
        outcome = compare(reference, obs, reveal=True)
        if not outcome.passed:
            raise CheckFailed(outcome.message)
        print(f"\u2713 {outcome.message}")

    def _judge_accuracy_now(self, obs: Observation) -> None:
        try:
            from .accuracy import local_labels

            labels = local_labels(obs.params["dataset"])
        except (ImportError, OSError, KeyError) as err:
            print(f"check {obs.name!r}: cannot compute the accuracy here ({err}); the autograder does.")
            return
        outcome = compare(obs, scored_accuracy(obs, labels))
        if not outcome.passed:
            raise CheckFailed(outcome.message)
        print(f"\u2713 {outcome.message}")

    def _public_references(self) -> dict[str, Observation]:
        """Read once; a missing or edited block raises at every check (each cell says why)."""
        if self._references is None:
            try:
                document = self._public_document()
            except MetadataProblem as problem:
                raise ReferencesUnavailable(str(problem)) from None
            self._references = {name: decode(p) for name, p in document.get("checks", {}).items()}
        return self._references

    def _public_document(self) -> dict:
        path = self._references_path or find_notebook()
        if path is None:
            raise MetadataProblem(
                "cannot tell which notebook this kernel runs (open it in JupyterLab, Notebook 7 or VS Code, "
                "or keep it alone in its folder), so its public references cannot be read"
            )
        try:
            document = read_notebook_json(path)
        except (OSError, ValueError) as err:
            raise MetadataProblem(f"cannot read {path}: {err}") from None
        if path.suffix == ".json":  # a bare public-references document (tests)
            return document
        if METADATA_KEY not in document.get("metadata", {}) and _is_source(document):
            return {}  # an instructor drafting a source notebook: nothing is built yet
        return course_metadata(document)["public_references"]


class CheckCase:
    """What `Checker.case(name)` returns: a context manager (its docstring says what it does).

    A class rather than contextlib.contextmanager: returning False from __exit__ re-raises the
    exception with its traceback as it was, without frames of this package."""

    def __init__(self, checker: Checker, name: str):
        self._checker, self._name = checker, name
        self._line: int | None = None

    def __enter__(self) -> None:
        self._line = _caller_line()

    def __exit__(self, kind, error, traceback) -> bool:
        if not isinstance(error, Exception):
            return False  # nothing raised, or KeyboardInterrupt / SystemExit: never swallowed
        if self._checker.mode == "record":
            problem = raised_text(type(error).__name__, _text_of(error))
            _emit(Observation(name=self._name, kind=CASE_KIND, value=None, line=self._line, problem=problem))
            return True  # the cell goes on: the checks after this block still run
        if not isinstance(error, (CheckFailed, ReferencesUnavailable)):
            error.add_note(self._note())
        return False

    def _note(self) -> str:
        """What the student reads under their traceback: which check this costs, and its hint."""
        note = f"check {self._name!r} failed: this exception was raised inside check.case({self._name!r})"
        try:
            reference = self._checker._public_references().get(self._name)
        except Exception:  # unreadable references: the student's exception is the news here, and the
            reference = None  # next check says what is wrong with them
        hint = reference.params.get("hint") if reference is not None else None
        return f"{note}\n  hint: {hint}" if hint else note


def _text_of(error: Exception) -> str:
    try:
        return str(error)
    except Exception:  # a student's exception class whose __str__ raises
        return "(its text could not be read)"


def _input_shapes(inputs: Any) -> list[list[int]]:
    """inputs= as the shapes of its tensors: one tensor or array, or a tuple or list of them (a plain
    number counts as shape ())."""
    items = inputs if isinstance(inputs, (tuple, list)) and type(inputs).__name__ != "Size" else (inputs,)
    shapes = []
    for item in items:
        shape = getattr(item, "shape", None)
        if shape is None and isinstance(item, (bool, int, float)):
            shape = ()
        if shape is None:
            raise TypeError(f"inputs= takes tensors or arrays (or a tuple of them), got a {type(item).__qualname__}")
        shapes.append([int(s) for s in shape])
    return shapes


def _is_source(notebook: dict) -> bool:
    """A source notebook still holds its solution markers (a release never does: the build checks)."""
    return any("BEGIN SOLUTION" in "".join(cell.get("source", "")) for cell in notebook.get("cells", []))


def _array_or_problem(value):
    try:
        return to_array(value), None
    except Unrecordable as err:
        return None, str(err)


def _json_or_problem(value):
    try:
        return to_json_value(value), None
    except Unrecordable as err:
        return None, str(err)


def _shape_or_problem(value):
    shape = getattr(value, "shape", None)
    if shape is None:
        return None, f"a {type(value).__qualname__}, which has no .shape"
    return {"shape": [int(s) for s in shape], "dtype": str(getattr(value, "dtype", ""))}, None


def _by_hand_in_kernel(function):
    """For immediate feedback only: the coordinator re-reads the submitted file itself."""
    from .by_hand import function_violations

    name = getattr(function, "__name__", None)
    if not isinstance(name, str):
        return None, f"a {type(function).__qualname__}, not a function"
    try:
        # IPython's builtin (its cell history), defined only in a kernel
        sources = list(get_ipython().user_ns.get("In", []))  # type: ignore[name-defined]  # noqa: F821
    except NameError:
        import inspect

        sources = [inspect.getsource(function)]
    found, violations = function_violations(sources, name)
    return {"function": name, "found": found, "violations": violations}, None


def _declared(kind: str, expected):
    """`expected=` as plain JSON: one value, or {label: value} for close and grad checks (for an
    equal check a dict is a value like any other)."""
    if not isinstance(expected, dict) or kind not in LABELLED_EXPECTED_KINDS:
        return _json_expected(expected)
    if not expected or not all(isinstance(label, str) and label for label in expected):
        raise TypeError("expected={label: value} needs at least one reference, each labelled by a non-empty string")
    return {label: _json_expected(value) for label, value in expected.items()}


def _json_expected(expected):
    value = to_json_value(expected)
    return value.tolist() if hasattr(value, "tolist") else value


def _caller_line() -> int | None:
    """Line of the call in the test cell: the first frame outside this package."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    return frame.f_lineno if frame is not None else None


def _emit(obs: Observation) -> None:
    from IPython.display import display  # only record mode runs in a kernel for sure

    display({MIME_TYPE: encode(obs), "text/plain": f"<observation {obs.name}>"}, raw=True)

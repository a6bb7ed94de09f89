"""Observations: what one `check.*` call saw, as plain data.

An observation travels from a kernel to the coordinator as a display output with our own
MIME type, so it needs no shared writable folder: the coordinator reads it out of the
executed notebook. Its value is either a numeric array (encoded with safetensors, base64)
or a small JSON value. Decoding never unpickles or evaluates anything; whatever does not
match the schema raises `MalformedObservation` with the reason.

This module is imported inside the sandbox too: it depends on numpy and safetensors only.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

MIME_TYPE = "application/vnd.autograder.observation+json"
FORMAT_VERSION = 1

#: Largest encoded value accepted from a kernel (bytes of base64 text or JSON).
MAX_VALUE_BYTES = 16 * 1024 * 1024
#: Largest JSON value (characters) and nesting accepted for non-numeric values.
MAX_JSON_CHARS = 64 * 1024
KINDS = ("close", "shape", "equal", "grad", "at_most", "at_least", "by_hand", "accuracy", "case")
#: The kind of what `check.case(name)` records when its block raised: no value, only the exception
#: (in `problem`, starting with RAISED_PREFIX). It can only fail the check `name`: never a reference.
CASE_KIND = "case"
RAISED_PREFIX = "the test cell raised "
#: Longest exception text kept in a message (its last line): what a student's code raises can be long.
MAX_RAISED_CHARS = 300
#: Kinds whose value is a numeric array (safetensors).
ARRAY_KINDS = ("close", "grad", "at_most", "at_least", "accuracy")
#: Longest reason text ("the value was ...") accepted from a kernel.
MAX_PROBLEM_CHARS = 2000
NUMERIC_DTYPES = {
    "bool",
    "uint8",
    "int8",
    "int16",
    "int32",
    "int64",
    "float16",
    "float32",
    "float64",
}


class MalformedObservation(ValueError):
    """An observation that does not follow the schema (the message says how)."""


class Unrecordable(TypeError):
    """A value that cannot become an observation (the message says what came)."""


@dataclass
class Observation:
    """One check call.

    name:   the check's name, unique in a lab.
    kind:   one of KINDS ("case": what check.case recorded when its block raised).
    value:  np.ndarray for numeric values; a JSON value otherwise; None when the value
            could not be recorded (then `problem` says why).
    params: the call's keyword arguments (tolerances, declared shape, hint, weight).
            Under grading the coordinator ignores these and uses the build's.
    line:   line number of the call inside its cell (the build uses it to tell public from
            hidden checks); None when unknown.
    """

    name: str
    kind: str
    value: Any
    params: dict = field(default_factory=dict)
    line: int | None = None
    problem: str | None = None

    @property
    def is_array(self) -> bool:
        return isinstance(self.value, np.ndarray)


def raised_text(ename: str, evalue: str) -> str:
    """How a message names an exception: 'the test cell raised ValueError: <its text's last line>' (what a
    traceback ends with), bounded, whether Jupyter reported it or check.case caught it. Feedback pages
    show only the type's name of it: the text is written by the student's code."""
    lines = [line.strip() for line in str(evalue).splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if len(last) > MAX_RAISED_CHARS:
        last = last[: MAX_RAISED_CHARS - 3] + "..."
    name = str(ename).strip()[:100] or "an exception"
    return f"{RAISED_PREFIX}{name}: {last}" if last else f"{RAISED_PREFIX}{name}"


# --------------------------------------------------------------------------- values


def to_array(value: Any) -> np.ndarray:
    """Turn a torch tensor, numpy array or Python number/bool/list into a numpy array.

    Raises Unrecordable with a message naming what came when that is not possible.
    """
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        tensor = value.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":
            tensor = tensor.float()
        if tensor.is_complex():
            raise Unrecordable("a complex tensor (only real values are checked)")
        value = tensor.numpy()
    if isinstance(value, np.generic):
        value = np.asarray(value)
    if isinstance(value, (bool, int, float)) and not isinstance(value, np.ndarray):
        value = np.asarray(value)
    if isinstance(value, (list, tuple)):
        try:
            value = np.asarray(value)
        except ValueError as err:  # ragged lists
            raise Unrecordable(f"a ragged {type(value).__name__} ({err})") from None
    if not isinstance(value, np.ndarray):
        raise Unrecordable(f"a {type(value).__module__}.{type(value).__qualname__}, not a tensor or number")
    if value.dtype.name not in NUMERIC_DTYPES:
        raise Unrecordable(f"an array of dtype {value.dtype}, not a numeric dtype")
    # (np.ascontiguousarray would turn a 0-d array into shape (1,))
    return value if value.flags.c_contiguous else value.copy(order="C")


def to_json_value(value: Any) -> Any:
    """Plain JSON for `equal` checks on non-numeric values (str, tuples of ints, None...)."""
    if hasattr(value, "detach") or isinstance(value, (np.ndarray, np.generic)):
        return to_array(value)
    if type(value).__name__ == "Size":  # torch.Size is a tuple subclass
        value = tuple(value)
    if isinstance(value, float) and not math.isfinite(value):
        return to_array(value)
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise Unrecordable(f"a {type(value).__qualname__} that is neither a tensor nor plain data") from None
    if len(text) > MAX_JSON_CHARS:
        raise Unrecordable(f"plain data of {len(text)} characters (limit {MAX_JSON_CHARS})")
    return json.loads(text)


# --------------------------------------------------------------------------- encoding


def encode(obs: Observation) -> dict:
    """The JSON payload for one observation (what goes under MIME_TYPE)."""
    payload = {
        "version": FORMAT_VERSION,
        "name": obs.name,
        "kind": obs.kind,
        "params": obs.params,
        "line": obs.line,
        "problem": obs.problem,
    }
    if obs.is_array:
        raw = st_save({"value": obs.value})
        payload["format"] = "safetensors"
        payload["data"] = base64.b64encode(raw).decode("ascii")
    else:
        payload["format"] = "json"
        payload["data"] = obs.value
    return payload


def decode(payload: Any) -> Observation:
    """Validate and decode one payload. Raises MalformedObservation with the reason."""
    if not isinstance(payload, dict):
        raise MalformedObservation(f"an observation must be a JSON object, got {type(payload).__name__}")
    if payload.get("version") != FORMAT_VERSION:
        raise MalformedObservation(f"unknown observation version {payload.get('version')!r}")
    name, kind = payload.get("name"), payload.get("kind")
    if not isinstance(name, str) or not name or len(name) > 200:
        raise MalformedObservation("an observation without a valid name")
    if kind not in KINDS:
        raise MalformedObservation(f"observation {name!r} has unknown kind {kind!r}")
    params = payload.get("params") or {}
    if not isinstance(params, dict):
        raise MalformedObservation(f"observation {name!r}: params must be an object")
    line = payload.get("line")
    if line is not None and not isinstance(line, int):
        raise MalformedObservation(f"observation {name!r}: line must be an integer")
    problem = payload.get("problem")
    if problem is not None and (not isinstance(problem, str) or len(problem) > MAX_PROBLEM_CHARS):
        raise MalformedObservation(
            f"observation {name!r}: problem must be text of at most {MAX_PROBLEM_CHARS} characters"
        )
    fmt, data = payload.get("format"), payload.get("data")
    value: Any
    if fmt == "safetensors":
        value = _decode_array(name, data)
    elif fmt == "json":
        try:
            size = len(json.dumps(data))
        except (TypeError, ValueError, RecursionError):
            raise MalformedObservation(f"observation {name!r}: a JSON value nested too deep or not JSON") from None
        if size > MAX_JSON_CHARS:
            raise MalformedObservation(f"observation {name!r}: JSON value over {MAX_JSON_CHARS} characters")
        value = data
    else:
        raise MalformedObservation(f"observation {name!r}: unknown format {fmt!r}")
    _check_value(name, kind, value, problem)
    return Observation(name=name, kind=kind, value=value, params=params, line=line, problem=problem)


def _check_value(name: str, kind: str, value: Any, problem: str | None) -> None:
    """Each kind's value has one form (what Checker records); anything else is malformed, so
    that the judge never meets a value it does not expect."""
    if kind == CASE_KIND and (value is not None or problem is None):
        raise MalformedObservation(f"observation {name!r}: a case records only the exception it caught")
    if value is None:
        if problem is None and (kind in ARRAY_KINDS or kind == "shape"):
            raise MalformedObservation(f"observation {name!r}: no value and no reason why")
        return
    if problem is not None:
        raise MalformedObservation(f"observation {name!r}: a value and a problem at once")
    if kind in ARRAY_KINDS and not isinstance(value, np.ndarray):
        raise MalformedObservation(
            f"observation {name!r}: a {kind} check records a numeric array, not {type(value).__name__}"
        )
    if kind == "shape":
        shape = value.get("shape") if isinstance(value, dict) else None
        if not (
            isinstance(value, dict)
            and set(value) <= {"shape", "dtype"}
            and isinstance(shape, list)
            and len(shape) <= 64
            and all(type(s) is int and s >= 0 for s in shape)
            and isinstance(value.get("dtype", ""), str)
            and len(value.get("dtype", "")) <= 64
        ):
            raise MalformedObservation(
                f"observation {name!r}: a shape check records {{'shape': [sizes], 'dtype': text}}"
            )
    if kind == "by_hand" and not isinstance(value, dict):
        raise MalformedObservation(f"observation {name!r}: a by_hand check records an object")


def _decode_array(name: str, data: Any) -> np.ndarray:
    if not isinstance(data, str):
        raise MalformedObservation(f"observation {name!r}: array data must be base64 text")
    if len(data) > MAX_VALUE_BYTES:
        raise MalformedObservation(f"observation {name!r}: {len(data)} bytes of data (limit {MAX_VALUE_BYTES})")
    try:
        tensors = st_load(base64.b64decode(data, validate=True))
    except Exception as err:  # safetensors raises its own error types; none of them execute data
        raise MalformedObservation(f"observation {name!r}: not a valid safetensors blob ({err})") from None
    if set(tensors) != {"value"}:
        raise MalformedObservation(f"observation {name!r}: expected one tensor named 'value'")
    value = tensors["value"]
    if value.dtype.name not in NUMERIC_DTYPES:
        raise MalformedObservation(f"observation {name!r}: dtype {value.dtype} is not numeric")
    return value


def observations_in_outputs(outputs: list) -> tuple[list[Observation], list[str]]:
    """All observations among one cell's outputs, in order, plus the reasons for any rejected.

    outputs: the cell's nbformat output list (display_data / execute_result entries).
    """
    found, rejected = [], []
    for output in outputs:
        data = output.get("data") if isinstance(output, dict) else None
        if not isinstance(data, dict) or MIME_TYPE not in data:
            continue
        try:
            found.append(decode(data[MIME_TYPE]))
        except MalformedObservation as err:
            rejected.append(str(err))
    return found, rejected


def strip_observations(nb) -> None:
    """Remove observation outputs from a notebook in place (for published notebooks)."""
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if MIME_TYPE not in o.get("data", {})]

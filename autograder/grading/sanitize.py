"""Sanitize a submission with nbgrader's own preprocessors before it runs anywhere.

OverwriteCells replaces every locked and test cell with the gradebook's copy (restoring the
hidden tests and undoing tampering) and, with add_missing_cells (nbgrader_config.py),
re-inserts deleted test cells. ClearOutput drops anything the student's file claimed
as output (forged observations included). Test cells keep no `expected=` argument: the build
already stored them without (reference code runs in the build only), and this is said again
here for a gradebook made by other means.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import nbformat.validator
from nbconvert.exporters.exporter import ResourcesDict
from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearOutput,
    DeduplicateIds,
    OverwriteCells,
    OverwriteKernelspec,
)

from ..authoring.reference_code import strip_expected_arguments
from ..cells import is_test_cell
from ..course import Course
from ..outcomes import FailureKind
from .results import printable
from .submission_files import MAX_SUBMISSION_BYTES, UnsafeSubmission, read_regular_file

SANITIZE_PREPROCESSORS = (ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata)


class SubmissionError(Exception):
    """A submission that cannot be graded; the message is the reason recorded for it, `failure`
    its kind."""

    def __init__(self, message: str, failure: FailureKind):
        super().__init__(message)
        self.failure = failure


#: Deepest nesting of lists and objects accepted in a submitted notebook (nbformat's own schema
#: needs about 6; cell and widget metadata a few more).
MAX_DEPTH = 100


def read_submission(path: Path, limit: int = MAX_SUBMISSION_BYTES):
    """Parse a submitted notebook (a regular file, checked by submission_files, at most `limit`
    bytes); SubmissionError says what is wrong with the file, in words a TA can act on."""
    try:
        text = read_regular_file(path, limit).decode("utf-8")
    except UnsafeSubmission as err:
        raise SubmissionError(str(err), err.failure) from None
    except UnicodeDecodeError as err:
        raise SubmissionError(
            f"{path.name} is not a text file (not UTF-8: byte {err.start})", FailureKind.NOT_TEXT
        ) from None
    try:
        raw = json.loads(text, parse_constant=_not_json)
    except json.JSONDecodeError as err:
        raise SubmissionError(
            f"{path.name} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})", FailureKind.NOT_JSON
        ) from None
    except ValueError as err:  # NaN/Infinity (not JSON), or an integer of thousands of digits
        raise SubmissionError(f"{path.name} is not valid JSON: {str(err)[:200]}", FailureKind.NOT_JSON) from None
    except RecursionError:
        raise SubmissionError(
            f"{path.name} is not a valid notebook: nested deeper than {MAX_DEPTH} levels", FailureKind.NOT_A_NOTEBOOK
        ) from None
    problem = structure_problem(raw)
    if problem:
        raise SubmissionError(f"{path.name} is not a valid notebook: {problem}", FailureKind.NOT_A_NOTEBOOK)
    if "nbformat" not in raw:  # nbformat would read it as version 1 and fail on its own internals
        raise SubmissionError(
            f'{path.name} is not a valid notebook: it has no "nbformat" version', FailureKind.NOT_A_NOTEBOOK
        )
    try:
        major, minor = nbformat.reader.get_version(raw)  # what nbformat.reads does, on the parsed JSON
    except Exception:  # nbformat's own message names internals ("'int' object has no attribute get")
        major = minor = None
    if type(major) is not int or major not in nbformat.versions:
        raise SubmissionError(
            f"{path.name} is not a valid notebook: nbformat {str(major)[:20]!r} is not a format Jupyter reads (4 is)",
            FailureKind.NOT_A_NOTEBOOK,
        )
    if major == 4:  # the schema's own words and where, before conversion code meets the wrong types
        _check_schema(path, raw)
    try:
        nb = nbformat.convert(nbformat.versions[major].to_notebook_json(raw, minor=minor), 4)
        nbformat.validate(nb)
    except Exception as err:  # nbformat raises several types for old notebooks of the wrong shape
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SubmissionError(
            f"{path.name} is JSON but not a valid notebook (nbformat {major}: {type(err).__name__}: {first[:200]})",
            FailureKind.NOT_A_NOTEBOOK,
        ) from None
    return nb


def _check_schema(path: Path, raw: dict) -> None:
    """nbformat 4's JSON schema on the file as it is (nbformat's validate() first walks the cells
    itself and raises TypeError on the wrong types); the first violation, where and what."""
    minor = raw.get("nbformat_minor")
    try:
        validator = nbformat.validator.get_validator(version=4, version_minor=minor if type(minor) is int else None)
        error = next(iter(validator.iter_errors(raw)), None)
    except Exception as err:  # a validator meeting values it never expected
        raise SubmissionError(
            f"{path.name} is JSON but not a valid notebook ({type(err).__name__})", FailureKind.NOT_A_NOTEBOOK
        ) from None
    if error is not None:
        message = str(getattr(error, "message", error)).splitlines()[0]
        where = "/".join(str(part) for part in getattr(error, "absolute_path", ()) or ())
        message = re.sub(r"^data\.?", "", message).strip() or message  # fastjsonschema's "data.cells[0] must be"
        if message.startswith("must"):
            message = "the notebook " + message
        cell = re.match(r"cells\[(\d+)\] must be valid exactly by one definition", message)
        if cell and isinstance(raw.get("cells"), list):
            message = f"cell {cell[1]}: {_cell_problem(raw['cells'][int(cell[1])])}"
        raise SubmissionError(
            f"{path.name} is JSON but not a valid notebook: "
            f"{'at ' + where[:80] + ': ' if where else ''}{message[:200]}",
            FailureKind.NOT_A_NOTEBOOK,
        )


CELL_KEYS = {
    "code": ("cell_type", "metadata", "source", "outputs", "execution_count"),
    "markdown": ("cell_type", "metadata", "source"),
    "raw": ("cell_type", "metadata", "source"),
}


def _cell_problem(cell) -> str:
    """What is wrong with one cell, in the schema's terms (its oneOf says only "no type matches")."""
    if not isinstance(cell, dict):
        return f"a cell is an object, not {type(cell).__name__}"
    kind = cell.get("cell_type")
    if not isinstance(kind, str) or kind not in CELL_KEYS:
        return f"cell_type {str(kind)[:30]!r} is not code, markdown or raw"
    missing = [key for key in CELL_KEYS[kind] if key not in cell]
    if missing:
        return f"a {kind} cell needs {', '.join(missing)}"
    source = cell["source"]
    if not (isinstance(source, str) or isinstance(source, list) and all(isinstance(s, str) for s in source)):
        return f"source is {type(source).__name__}, not text (a string or a list of strings)"
    if not isinstance(cell["metadata"], dict):
        return f"metadata is {type(cell['metadata']).__name__}, not an object"
    if kind == "code" and not isinstance(cell["outputs"], list):
        return f"outputs is {type(cell['outputs']).__name__}, not a list"
    if kind == "code" and not (cell["execution_count"] is None or type(cell["execution_count"]) is int):
        return f"execution_count is {type(cell['execution_count']).__name__}, not a number or null"
    return f"a {kind} cell with keys or values nbformat 4 does not allow"


def _not_json(constant: str):
    raise ValueError(f"{constant} is not a JSON value")


def structure_problem(raw) -> str | None:
    """What makes parsed JSON unusable as a notebook before nbformat looks at it: a top level that
    is not an object, nesting deeper than MAX_DEPTH, or a string that is not Unicode text (a lone
    surrogate such as "\\ud800": valid JSON, but no kernel, database or page can encode it).
    Walked with a stack, not recursion (the input decides the depth)."""
    if not isinstance(raw, dict):
        return f"the top level is {type(raw).__name__}, not an object"
    stack: list[tuple[dict | list, int, str]] = [(raw, 1, "")]
    while stack:
        value, depth, where = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels (at {where.lstrip('.')[:80]}...)"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            place = f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]"
            for text in (key, item):
                if isinstance(text, str) and not _is_unicode(text):
                    shown = printable(place.lstrip(".")[:120])
                    return f"{shown} holds a lone surrogate (not Unicode text)"
            if isinstance(item, (dict, list)):
                stack.append((item, depth + 1, place))
    return None


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def sanitize(course: Course, lab: str, path: Path, limit: int = MAX_SUBMISSION_BYTES):
    """The submission as it will run: cells restored from the gradebook, outputs cleared."""
    nb = read_submission(path, limit)
    resources = ResourcesDict()
    resources["nbgrader"] = {"db_url": course.db_url, "assignment": lab, "notebook": path.stem}
    for preprocessor_class in SANITIZE_PREPROCESSORS:
        preprocessor = preprocessor_class(config=course.config)
        try:
            nb, resources = preprocessor.preprocess(nb, resources)
        except Exception as err:  # nbgrader raises plain exceptions for tampered metadata
            raise SubmissionError(
                f"{path.name} could not be sanitized ({preprocessor_class.__name__}): "
                f"{str(err).splitlines()[0] if str(err) else type(err).__name__}",
                FailureKind.NOT_SANITIZABLE,
            ) from None
    for cell in nb.cells:
        if is_test_cell(cell):  # the build stored them without; a gradebook made otherwise still computes none
            cell.source = strip_expected_arguments(cell.source)
    return nb

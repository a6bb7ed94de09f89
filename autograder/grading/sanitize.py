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
from pathlib import Path

import nbformat
from nbconvert.exporters.exporter import ResourcesDict
from nbgrader.preprocessors import (CheckCellMetadata, ClearOutput, DeduplicateIds, OverwriteCells,
                                    OverwriteKernelspec)

from ..build.reference_code import strip_expected_arguments
from ..build.source_rules import is_test_cell
from ..course import Course
from .submission_files import UnsafeSubmission, read_regular_file

SANITIZE_PREPROCESSORS = (ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata)


class SubmissionError(Exception):
    """A submission that cannot be graded; the message is the reason recorded for it."""


def read_submission(path: Path):
    """Parse a submitted notebook (a regular file, checked by submission_files); SubmissionError
    says what is wrong with the file."""
    try:
        text = read_regular_file(path).decode("utf-8")
    except UnsafeSubmission as err:
        raise SubmissionError(str(err)) from None
    except UnicodeDecodeError:
        raise SubmissionError(f"{path.name} is not a text file (not UTF-8)") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise SubmissionError(f"{path.name} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") \
            from None
    try:
        nb = nbformat.reads(json.dumps(raw), as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # nbformat raises several types for notebooks of the wrong shape
        raise SubmissionError(f"{path.name} is JSON but not a valid notebook: {str(err).splitlines()[0]}") from None
    return nb


def sanitize(course: Course, lab: str, path: Path):
    """The submission as it will run: cells restored from the gradebook, outputs cleared."""
    nb = read_submission(path)
    resources = ResourcesDict()
    resources["nbgrader"] = {"db_url": course.db_url, "assignment": lab, "notebook": path.stem}
    for preprocessor_class in SANITIZE_PREPROCESSORS:
        preprocessor = preprocessor_class(config=course.config)
        try:
            nb, resources = preprocessor.preprocess(nb, resources)
        except Exception as err:  # nbgrader raises plain exceptions for tampered metadata
            raise SubmissionError(f"{path.name} could not be sanitized ({preprocessor_class.__name__}): "
                                  f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    for cell in nb.cells:
        if is_test_cell(cell):   # the build stored them without; a gradebook made otherwise still computes none
            cell.source = strip_expected_arguments(cell.source)
    return nb

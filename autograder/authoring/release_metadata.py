"""The release notebook's own block (`metadata["autograder"]`): public references, limits, cells.

Written into every release notebook after nbgrader generated it, so that the notebook carries
what its public checks compare with and what `autograder validate` compares against, wherever
it is opened (the format: checks/notebook_metadata.py). Reproducible like the references
files: when the previous release's public references agree with the new ones within each
check's tolerance, the previous ones stay, so an unchanged course rebuilds byte for byte.
"""

from __future__ import annotations

import json

import nbformat

from ..atomic_file import write_atomically
from ..checks.notebook_metadata import FORMAT, METADATA_KEY, digest, source_sha256
from ..mutation.mutants import strip_declarations
from ..references import Reference, public_document
from .agreement import references_agree
from .record import read_notebook
from .rubrics import strip_rubrics
from .source_rules import SourceError

#: The cell metadata key of the due-date line the build puts first in a release notebook.
DUE_DATE_CELL = "autograder-due-date"


def old_public_references(release_notebook) -> dict | None:
    """The public references a previous build put in this notebook (None: none readable)."""
    if not release_notebook.is_file():
        return None
    try:
        block = read_notebook(release_notebook).metadata.get(METADATA_KEY)
    except (SourceError, AttributeError):  # unreadable: a first build writes a new one
        return None
    references = block.get("public_references") if isinstance(block, dict) else None
    return references if isinstance(references, dict) else None


def write_release_metadata(
    release_notebook,
    lab: str,
    references: dict[str, Reference],
    limits: dict[str, int],
    old_references: dict | None,
    due: str | None = None,
) -> bool:
    """Put the block into the release notebook nbgrader just wrote, and `due` (the lab's due date, as
    people read it) as its first cell; returns whether the old public references were kept (they agree
    with this build's)."""
    nb = read_notebook(release_notebook)
    if due:  # a plain markdown cell: no grade_id, so nothing grades, restores or checks it
        nb.cells.insert(
            0,
            nbformat.v4.new_markdown_cell(
                f"**Due: {due}.**",
                id=DUE_DATE_CELL,
                metadata={DUE_DATE_CELL: True, "editable": False, "deletable": False},
            ),
        )
    strip_declarations(nb)  # the instructor's mutants and equivalents quote the solution
    strip_rubrics(nb)  # what earns a written answer's points is the TAs' (private/<lab>/rubrics.json)
    stem = release_notebook.stem
    new_references = public_document({n: r for n, r in references.items() if r.notebook == stem})
    kept = old_references is not None and references_agree(_bytes(old_references), _bytes(new_references))
    block = {
        "format": FORMAT,
        "lab": lab,
        "notebook": stem,
        "limits": dict(limits),
        "cells": released_cells(nb),
        "public_references": old_references if kept else new_references,
    }
    block["sha256"] = digest(block)
    nb.metadata[METADATA_KEY] = block
    text = nbformat.writes(nb)
    write_atomically(release_notebook, text if text.endswith("\n") else text + "\n")
    return kept


def released_cells(nb) -> dict[str, dict]:
    """Every nbgrader cell of the release by grade_id: its role, points and source digest."""
    cells = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        grade_id = meta.get("grade_id")
        if not grade_id:
            continue
        role = "answer" if meta.get("solution") else "tests" if meta.get("grade") else "locked"
        points = float(meta.get("points", 0)) if meta.get("grade") else 0.0
        cells[grade_id] = {"role": role, "points": points, "sha256": source_sha256(cell.source)}
    return cells


def _bytes(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True).encode()

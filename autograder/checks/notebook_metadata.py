"""What a release notebook carries about itself: `metadata["autograder"]`, written by the build.

The public references, the grader's time limits and the released cells travel inside the
notebook, so a notebook downloaded from an LMS, opened from another folder or uploaded to a
JupyterHub still runs its public checks (and `autograder validate` can tell what was changed).

    {"format": 1, "lab": ..., "notebook": ...,
     "limits": {"cell_timeout": s, "notebook_timeout": s},
     "cells": {grade_id: {"role": "locked" | "tests" | "answer", "points": p, "sha256": hex}},
     "public_references": {"version": 1, "checks": {name: encoded observation}},
     "sha256": digest of all the above}

The digest tells an edited or truncated block from the build's own. It is not a signature: a
student who rewrites the references and the digest fools only their own public checks, since
grading never reads this block (the coordinator judges with the private references).

Standard library only: this module is part of the student package and of the sandbox.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

METADATA_KEY = "autograder"
FORMAT = 1
NOT_FOUND = (
    "this notebook carries no public references (its metadata has no 'autograder' block): "
    "use the release notebook as you received it, or copy your answers into a fresh copy of it"
)
EDITED = (
    "this notebook's public references were edited (its metadata 'autograder' block no longer matches "
    "its digest), so its public checks cannot be trusted: copy your answers into a fresh copy of the "
    "release notebook"
)


class MetadataProblem(Exception):
    """The notebook's own block is missing, edited or unreadable; str() is a sentence for a student."""


def digest(meta: dict) -> str:
    """sha256 of the block's canonical JSON, without its own "sha256" field.

    Canonical also in its numbers: a browser's JupyterLab parses the file into JavaScript numbers
    and writes them back on save (1.0 as 1, -0.0 as 0, an integer past 2**53 rounded), so the
    digest is taken over the numbers as JavaScript would write them; a saved notebook keeps its
    public checks."""
    body = {k: _as_javascript_writes_it(v) for k, v in meta.items() if k != "sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _as_javascript_writes_it(value: Any) -> Any:
    """`value` after a JSON round trip through JavaScript: every number is a double there, and
    JSON.stringify writes an integral double without a fraction."""
    if isinstance(value, dict):
        return {k: _as_javascript_writes_it(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_javascript_writes_it(v) for v in value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any double: JavaScript would not keep it either
        return value
    return int(number) if math.isfinite(number) and number == int(number) else number


def source_sha256(source: str | list) -> str:
    """A cell's source as nbformat stores it (a string, or a list of lines on disk)."""
    text = "".join(source) if isinstance(source, list) else source
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def course_metadata(notebook: dict) -> dict:
    """The verified block of a notebook (as a dict from JSON); MetadataProblem when missing or edited."""
    meta = notebook.get("metadata", {}).get(METADATA_KEY) if isinstance(notebook, dict) else None
    if not isinstance(meta, dict):
        raise MetadataProblem(NOT_FOUND)
    if meta.get("format") != FORMAT:
        raise MetadataProblem(
            f"this notebook's 'autograder' block has format {meta.get('format')!r}, this package reads "
            f"format {FORMAT}: install the student package that came with the course"
        )
    if meta.get("sha256") != digest(meta):
        raise MetadataProblem(EDITED)
    if not isinstance(meta.get("public_references", {}).get("checks"), dict):
        raise MetadataProblem(EDITED)
    return meta


def read_notebook_json(path: str | os.PathLike) -> dict:
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def find_notebook(lab: str | None = None) -> Path | None:
    """The notebook the running kernel belongs to, where the front end says so.

    In order: JupyterLab / Notebook 7 (jupyter_server gives the kernel JPY_SESSION_NAME, which
    ipykernel also puts in `__session__`), VS Code (`__vsc_ipynb_file__`); else the one notebook
    in the working folder whose block names `lab` (a front end that says nothing, such as an
    older server or a plain `jupyter console`).
    """
    for candidate in _front_end_paths():
        path = Path(candidate)
        if path.suffix == ".ipynb" and path.is_file():
            return path
    matches = []
    for path in sorted(Path.cwd().glob("*.ipynb")):
        try:
            meta = read_notebook_json(path).get("metadata", {}).get(METADATA_KEY)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(meta, dict) and (lab is None or meta.get("lab") == lab):
            matches.append(path)
    return matches[0] if len(matches) == 1 else None


def _front_end_paths() -> list[str]:
    paths = []
    try:
        namespace = get_ipython().user_ns  # type: ignore[name-defined]  # noqa: F821  (IPython's builtin)
    except NameError:
        namespace = {}
    for key in ("__session__", "__vsc_ipynb_file__"):
        if isinstance(namespace.get(key), str):
            paths.append(namespace[key])
    if os.environ.get("JPY_SESSION_NAME"):
        paths.append(os.environ["JPY_SESSION_NAME"])
    return paths

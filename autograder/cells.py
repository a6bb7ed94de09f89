"""The authoring format both sides read: nbgrader's cell metadata and the region markers.

A contract of the build and of grading alike (the build writes it, sanitize and feedback read
it back), so it lives above both. The cell tests are nbgrader's own (`nbgrader.utils`), with
two guards of ours: a cell is a test cell only when it is code, graded and not a solution, and
metadata that is not an object (a student's tampering) reads as "no nbgrader metadata".
"""

from __future__ import annotations

from nbformat import NotebookNode, from_dict
from nbgrader import utils

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"


def nbgrader_meta(cell) -> dict:
    """The cell's `metadata.nbgrader` object ({} when absent or not an object)."""
    metadata = cell.get("metadata")
    meta = metadata.get("nbgrader") if isinstance(metadata, dict) else None
    return meta if isinstance(meta, dict) else {}


def _node(cell) -> NotebookNode | None:
    """The cell as nbgrader.utils reads it (attribute access), or None without nbgrader metadata."""
    if not nbgrader_meta(cell):
        return None
    return cell if isinstance(cell, NotebookNode) else from_dict(cell)


def is_solution_cell(cell) -> bool:
    node = _node(cell)
    return node is not None and bool(utils.is_solution(node))


def is_test_cell(cell) -> bool:
    """An autograded test cell: code, graded, not itself a solution."""
    node = _node(cell)
    return (
        cell.get("cell_type") == "code"
        and node is not None
        and bool(utils.is_grade(node))
        and not utils.is_solution(node)
    )


def is_locked_cell(cell) -> bool:
    """A cell grading restores from the gradebook (locked, or graded and not a solution)."""
    node = _node(cell)
    return node is not None and bool(utils.is_locked(node))


def without_solution_markers(source: str) -> str:
    """An answer cell as a student who wrote the solution hands it in: the markers' lines gone."""
    return "\n".join(line for line in source.splitlines() if BEGIN_SOLUTION not in line and END_SOLUTION not in line)


def marker_lines(source: str, begin: str, end: str) -> list[tuple[int, int]]:
    """1-based (begin, end) line pairs of each region; ValueError when unbalanced."""
    regions, start = [], None
    for number, line in enumerate(source.splitlines(), start=1):
        if begin in line:
            if start is not None:
                raise ValueError(f"{begin!r} on line {number} inside a region opened on line {start}")
            start = number
        elif end in line:
            if start is None:
                raise ValueError(f"{end!r} on line {number} without a {begin!r} before it")
            regions.append((start, number))
            start = None
    if start is not None:
        raise ValueError(f"{begin!r} on line {start} is never closed by {end!r}")
    return regions


def hidden_lines(source: str) -> set[int]:
    """Line numbers (1-based) inside hidden-test regions, markers included."""
    return {n for a, b in marker_lines(source, BEGIN_HIDDEN, END_HIDDEN) for n in range(a, b + 1)}

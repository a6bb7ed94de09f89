"""autograder/cells.py: the authoring format both pipelines read.

The cell tests are nbgrader's own, with two guards: a test cell is code, graded and not a
solution, and nbgrader metadata that is not an object reads as none. They take plain dicts
(JSON as read from a file) and NotebookNodes alike.
"""

from __future__ import annotations

import pytest
from nbformat import from_dict

from autograder.cells import (
    BEGIN_HIDDEN,
    BEGIN_SOLUTION,
    END_HIDDEN,
    END_SOLUTION,
    hidden_lines,
    is_locked_cell,
    is_solution_cell,
    is_test_cell,
    marker_lines,
    nbgrader_meta,
)

META = [
    pytest.param({"metadata": {"nbgrader": {"grade_id": "a"}}}, {"grade_id": "a"}, id="an-object"),
    pytest.param({"metadata": {"nbgrader": "tests"}}, {}, id="a-string"),
    pytest.param({"metadata": {"nbgrader": ["grade", True]}}, {}, id="a-list"),
    pytest.param({"metadata": {"nbgrader": None}}, {}, id="null"),
    pytest.param({"metadata": {}}, {}, id="absent"),
    pytest.param({"metadata": None}, {}, id="metadata-null"),
    pytest.param({"metadata": []}, {}, id="metadata-an-empty-list"),
    pytest.param({}, {}, id="no-metadata"),
    pytest.param({"metadata": ["nbgrader"]}, {}, id="metadata-a-list"),
    pytest.param({"metadata": "nbgrader"}, {}, id="metadata-a-string"),
]


@pytest.mark.parametrize(("cell", "meta"), META)
def test_nbgrader_meta(cell, meta):
    assert nbgrader_meta(cell) == meta


def nbgrader(**flags) -> dict:
    return {"grade_id": "c", "schema_version": 3, **flags}


# (cell_type, nbgrader metadata or a non-object, test cell?, solution cell?, locked cell?)
KINDS = [
    ("code", nbgrader(grade=True, solution=False, locked=True, points=2), True, False, True, "test-cell"),
    (
        "code",
        nbgrader(grade=True, solution=False, locked=False, points=1),
        True,
        False,
        True,
        "graded-unlocked-is-locked",
    ),
    ("code", nbgrader(grade=False, solution=True, locked=False), False, True, False, "solution-cell"),
    (
        "code",
        nbgrader(grade=True, solution=True, locked=False, points=1),
        False,
        True,
        False,
        "autograded-answer-is-no-test-cell",
    ),
    ("code", nbgrader(grade=False, solution=False, locked=True), False, False, True, "locked-setup-cell"),
    (
        "markdown",
        nbgrader(grade=True, solution=False, locked=True, points=1),
        False,
        False,
        True,
        "graded-markdown-is-no-test-cell",
    ),
    ("markdown", nbgrader(grade=False, solution=True, locked=False), False, True, False, "markdown-answer"),
    ("code", nbgrader(), False, False, False, "no-flags"),
    ("code", {}, False, False, False, "empty-nbgrader"),
    ("code", "grade", False, False, False, "nbgrader-a-string"),
    ("code", None, False, False, False, "no-nbgrader"),
]


@pytest.mark.parametrize("as_node", [False, True], ids=["dict", "NotebookNode"])
@pytest.mark.parametrize(
    ("cell_type", "meta", "test", "solution", "locked"), [k[:5] for k in KINDS], ids=[k[5] for k in KINDS]
)
def test_cell_kinds(cell_type, meta, test, solution, locked, as_node):
    cell = {"cell_type": cell_type, "source": "x = 1", "metadata": {} if meta is None else {"nbgrader": meta}}
    if cell_type == "code":
        cell.update(outputs=[], execution_count=None)
    cell = from_dict(cell) if as_node else cell
    assert (is_test_cell(cell), is_solution_cell(cell), is_locked_cell(cell)) == (test, solution, locked)


def lines(*rows: str) -> str:
    return "\n".join(rows)


MARKERS = [
    (lines("a = 1"), [], set(), "none"),
    (lines("a", BEGIN_HIDDEN, "b", END_HIDDEN), [(2, 4)], {2, 3, 4}, "one"),
    (
        lines(BEGIN_HIDDEN, END_HIDDEN, "x", "    " + BEGIN_HIDDEN, "y", "    " + END_HIDDEN),
        [(1, 2), (4, 6)],
        {1, 2, 4, 5, 6},
        "two-and-indented",
    ),
    (lines(BEGIN_SOLUTION, "a", END_SOLUTION), [], set(), "other-markers-ignored"),
]


@pytest.mark.parametrize(("source", "regions", "hidden"), [m[:3] for m in MARKERS], ids=[m[3] for m in MARKERS])
def test_marker_lines_and_hidden_lines(source, regions, hidden):
    assert marker_lines(source, BEGIN_HIDDEN, END_HIDDEN) == regions
    assert hidden_lines(source) == hidden


def test_solution_regions_are_read_with_their_own_markers():
    assert marker_lines(
        lines("def f():", "    " + BEGIN_SOLUTION, "    pass", "    " + END_SOLUTION), BEGIN_SOLUTION, END_SOLUTION
    ) == [(2, 4)]


UNBALANCED = [
    (
        lines(BEGIN_HIDDEN, "a", BEGIN_HIDDEN, END_HIDDEN),
        f"{BEGIN_HIDDEN!r} on line 3 inside a region opened on line 1",
        "nested",
    ),
    (lines("a", END_HIDDEN), f"{END_HIDDEN!r} on line 2 without a {BEGIN_HIDDEN!r} before it", "end-first"),
    (lines("a", BEGIN_HIDDEN, "b"), f"{BEGIN_HIDDEN!r} on line 2 is never closed by {END_HIDDEN!r}", "never-closed"),
    (lines(BEGIN_HIDDEN, END_HIDDEN, END_HIDDEN), f"{END_HIDDEN!r} on line 3 without", "one-end-too-many"),
]


@pytest.mark.parametrize(("source", "message"), [u[:2] for u in UNBALANCED], ids=[u[2] for u in UNBALANCED])
def test_unbalanced_markers_are_an_error_naming_the_line(source, message):
    with pytest.raises(ValueError) as raised:
        marker_lines(source, BEGIN_HIDDEN, END_HIDDEN)
    assert str(raised.value).startswith(message)
    with pytest.raises(ValueError):
        hidden_lines(source)

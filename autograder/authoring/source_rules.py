"""Rules a source notebook must follow before it is built, each failing with a clear message.

nbgrader would accept most of these mistakes silently (a solution region in an ordinary
cell ships to students; hidden tests in an ordinary cell are shown to them), so we refuse
them here, naming the notebook and the cell.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

from ..cells import (
    BEGIN_HIDDEN,
    BEGIN_SOLUTION,
    END_HIDDEN,
    END_SOLUTION,
    is_solution_cell,
    is_test_cell,
    marker_lines,
    nbgrader_meta,
)
from .rubrics import rubric_problem


class SourceError(Exception):
    """A mistake in an instructor's source notebook; str() names notebook and cell."""

    def __init__(self, notebook: Path | str, cell_index: int | None, message: str, grade_id: str | None = None):
        self.notebook, self.cell_index, self.grade_id = str(notebook), cell_index, grade_id
        where = self.notebook
        if cell_index is not None:
            where += f", cell {cell_index}"
            if grade_id:
                where += f" (grade_id {grade_id!r})"
        super().__init__(f"{where}: {message}")


def check_source(nb, path: Path | str) -> None:
    """Raise SourceError for the first broken rule in notebook `nb` (read from `path`)."""
    seen_ids: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        grade_id = meta.get("grade_id")

        def fail(message: str) -> NoReturn:
            raise SourceError(path, index, message, grade_id)  # noqa: B023  (called in this iteration only)

        source = cell.get("source", "")
        try:
            solutions = marker_lines(source, BEGIN_SOLUTION, END_SOLUTION)
            hidden = marker_lines(source, BEGIN_HIDDEN, END_HIDDEN)
        except ValueError as err:
            fail(f"unbalanced markers: {err}")
        if solutions and not is_solution_cell(cell):
            fail(
                "a solution region (### BEGIN SOLUTION) sits outside a solution cell; it would ship to "
                "students as is. Mark the cell as a solution cell (metadata nbgrader.solution = true)."
            )
        if hidden and not is_test_cell(cell):
            fail(
                "hidden tests (### BEGIN HIDDEN TESTS) sit outside an autograded test cell; students would "
                "see them. Put them in a code cell with nbgrader.grade = true and solution = false."
            )
        if meta.get("grade") or meta.get("solution") or meta.get("locked") or meta.get("task"):
            if not grade_id:
                fail("an nbgrader cell without a grade_id")
            if grade_id in seen_ids:
                fail(f"grade_id {grade_id!r} repeats: cell {seen_ids[grade_id]} has it too")
            seen_ids[grade_id] = index
        if meta.get("grade") and not isinstance(meta.get("points"), (int, float)):
            fail("a graded cell without points (metadata nbgrader.points)")
        problem = rubric_problem(cell)  # a written answer needs its rubric; a rubric, a written answer
        if problem:
            fail(problem)

"""The grade columns the spreadsheet formats share: one per lab (its score after any late penalty), or
with --per-cell one more per test cell (the cell's gradebook score, before the lab's penalty)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .scores import LabScore, Scores


@dataclass(frozen=True)
class GradeColumn:
    title: str
    lab: str
    points: float
    value: Callable[[LabScore], float | None]  # None: an empty cell (not scored), never a 0


def grade_columns(scores: Scores, per_cell: bool = False) -> list[GradeColumn]:
    columns = []
    for lab in scores.labs:
        columns.append(GradeColumn(lab, lab, scores.max_scores[lab], lambda row: row.score_after_penalty))
        if not per_cell:
            continue
        several = len({notebook for notebook, _, _ in scores.cells[lab]}) > 1
        for notebook, grade_id, points in scores.cells[lab]:
            title = f"{lab}/{notebook}: {grade_id}" if several else f"{lab}: {grade_id}"
            columns.append(GradeColumn(title, lab, points, _cell_value(notebook, grade_id)))
    return columns


def _cell_value(notebook: str, grade_id: str) -> Callable[[LabScore], float | None]:
    def value(row: LabScore) -> float | None:
        if row.score is None:  # a failed or missing run: no cell of it is scored
            return None
        cell = row.cell(notebook, grade_id)
        return None if cell is None else cell.score

    return value


def number(value: float | None) -> str:
    """A score as the csv writes it ('17.6', '20'); empty when there is none."""
    return "" if value is None else f"{value:g}"


def note(row: LabScore) -> str:
    """What a person importing the grade should know: why it is empty, a TA's score, a late penalty."""
    if row.score is None:
        return row.status_text
    parts = []
    if row.status_text != "graded":
        parts.append(row.status_text)
    if row.by_ta:
        parts.append("includes a TA's score")
    if row.penalty > 0:
        parts.append(f"late penalty −{row.penalty:g} of {row.score:g}")
    if row.awaiting_ta:
        points = sum(c.max_score for c in row.awaiting_ta)
        parts.append(f"{points:g} points await a TA" if points != 1 else "1 point awaits a TA")
    return "; ".join(parts)

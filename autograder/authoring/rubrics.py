"""Rubrics of written answers: nbgrader's manually graded answer cells, each with its rubric.

A manually graded answer cell is nbgrader's own kind (metadata `nbgrader.solution` and
`nbgrader.grade` both true, with `points`): the student writes the answer, a TA scores it in
`autograder review` or formgrader. Its rubric lives in the source beside it, in the cell's
metadata:

    metadata["rubric"] = {"criteria": [
        {"points": 2, "text": "names the bias the model had", "comment": "Which group was misclassified?"},
        {"points": 1, "text": "quotes the own numbers before and after"},
    ]}

The criteria's points sum to the cell's points. The build refuses such a cell without a rubric
(source_rules), strips the rubric from the release and the published solutions (a rubric tells
a student what earns the points of a question still open), and keeps every rubric, with the
model answer, in private/<lab>/rubrics.json for the TAs (`autograder review`).
"""

from __future__ import annotations

import math

from ..cells import nbgrader_meta, without_solution_markers
from ..rubrics import RUBRIC_KEY, Criterion, Rubric, is_manual_answer_cell

EXAMPLE = '{"criteria": [{"points": 1, "text": "what earns the point", "comment": "a comment a TA may give"}]}'


def rubric_problem(cell) -> str | None:
    """Why the cell's rubric (or its lack) is refused, or None when it is fine."""
    metadata = cell.get("metadata")
    rubric = metadata.get(RUBRIC_KEY) if isinstance(metadata, dict) else None
    manual = is_manual_answer_cell(cell)
    if rubric is None:
        if not manual:
            return None
        return (
            "a manually graded answer cell (nbgrader solution and grade) without a rubric: add "
            f'metadata["{RUBRIC_KEY}"] = {EXAMPLE}, its points summing to the cell\'s '
            f"{nbgrader_meta(cell).get('points', 0)!r}"
        )
    if not manual:
        return (
            f'metadata["{RUBRIC_KEY}"] on a cell that is not a manually graded answer cell: only such a cell '
            "(nbgrader solution = true and grade = true) is graded by a TA with a rubric"
        )
    if not isinstance(rubric, dict) or set(rubric) != {"criteria"}:
        return f'metadata["{RUBRIC_KEY}"] must be an object with the one key "criteria", e.g. {EXAMPLE}'
    criteria = rubric["criteria"]
    if not isinstance(criteria, list) or not criteria:
        return f'metadata["{RUBRIC_KEY}"]["criteria"] must be a non-empty list, e.g. {EXAMPLE}'
    for number, criterion in enumerate(criteria, start=1):
        where = f"rubric criterion {number}"
        if not isinstance(criterion, dict) or not {"points", "text"} <= set(criterion) <= {"points", "text", "comment"}:
            return f'{where} must be an object with "points", "text" and optionally "comment", e.g. {EXAMPLE}'
        points = criterion["points"]
        if isinstance(points, bool) or not isinstance(points, (int, float)) or not math.isfinite(points) or points <= 0:
            return f"{where}: points must be a positive number, not {points!r}"
        if not isinstance(criterion["text"], str) or not criterion["text"].strip():
            return f"{where}: text must say what earns its points"
        if not isinstance(criterion.get("comment", ""), str):
            return f"{where}: comment must be text"
    total = sum(float(c["points"]) for c in criteria)
    points = nbgrader_meta(cell).get("points")
    if not isinstance(points, (int, float)) or not math.isclose(total, float(points), abs_tol=1e-9):
        return f"the rubric's criteria sum to {total:g} points, the cell has {points!r} (metadata nbgrader.points)"
    return None


def rubric_of(cell, notebook: str) -> Rubric:
    """The rubric of a manually graded answer cell that rubric_problem accepted."""
    meta = nbgrader_meta(cell)
    criteria = tuple(
        Criterion(float(c["points"]), c["text"].strip(), c.get("comment", "").strip())
        for c in cell.metadata[RUBRIC_KEY]["criteria"]
    )
    return Rubric(
        notebook,
        str(meta["grade_id"]),
        float(meta["points"]),
        criteria,
        without_solution_markers(cell.get("source", "")),
        str(cell.get("cell_type", "markdown")),
    )


def rubrics_in(nb, notebook: str) -> list[Rubric]:
    return [rubric_of(cell, notebook) for cell in nb.cells if is_manual_answer_cell(cell)]


def strip_rubrics(nb) -> None:
    """The build's part: a rubric never reaches a student (release, published solutions)."""
    for cell in nb.cells:
        if isinstance(cell.get("metadata"), dict):
            cell.metadata.pop(RUBRIC_KEY, None)

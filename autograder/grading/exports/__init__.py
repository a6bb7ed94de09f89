"""`autograder export --format csv|canvas|moodle|gradescope`: grades in the layout an LMS imports.

csv is the project's own (export.py: one row per student and lab, with status and late columns);
canvas.py and moodle.py write those LMSs' gradebook import CSVs, gradescope.py a Gradescope
results.json per graded submission. All of them read scores through scores.py: the gradebook's
(a TA's manual score over the autograder's, the late penalty nbgrader recorded), with result.json only
for whether the run failed and why. A failed run or a missing submission is never a 0: its grade is
empty, with the reason where the format has a place for it. Every text cell is spreadsheet_safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...course import Course

FORMATS = ("csv", "canvas", "moodle", "gradescope")
DEFAULT_OUTPUT = {
    "csv": Path("grades.csv"),
    "canvas": Path("grades-canvas.csv"),
    "moodle": Path("grades-moodle.csv"),
    "gradescope": Path("gradescope"),
}


@dataclass
class ExportReport:
    output: Path
    rows: int  # csv: student × lab rows; canvas, moodle: students; gradescope: results.json written
    not_scored: list[tuple[str, str, str]] = field(default_factory=list)  # (student, lab, status) of empty grades


def export_grades(
    course: Course,
    fmt: str,
    output: Path | None = None,
    labs: list[str] | None = None,
    *,
    per_cell: bool = False,
    moodle_id: str = "email",
    hidden_visibility: str = "after_published",
) -> ExportReport:
    """Write one export; CourseError for a bad choice or input (nothing is written then)."""
    from ...course import CourseError
    from .scores import read_scores

    if fmt not in FORMATS:
        raise CourseError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    for lab in labs or []:
        course.check_lab(lab)
    target = Path(output) if output is not None else DEFAULT_OUTPUT[fmt]
    scores = read_scores(course, labs)
    not_scored = [(key[1], key[0], row.status_text) for key, row in scores.rows.items() if row.score is None]
    if fmt == "csv":
        from ..export import export_csv

        rows = export_csv(course, target, labs)
    elif fmt == "canvas":
        from .canvas import write_canvas

        rows = write_canvas(scores, target, per_cell)
    elif fmt == "moodle":
        from .moodle import write_moodle

        rows = write_moodle(scores, target, moodle_id, per_cell)
    else:
        from .gradescope import write_gradescope

        rows = write_gradescope(course, scores, target, hidden_visibility)
    return ExportReport(target, rows, not_scored)

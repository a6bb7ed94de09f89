"""The table that ends `autograder grade` and `autograder demo`: one row per submission."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from .deadlines import Lateness
from .exports.scores import LabScore
from .results import Result


def results_table(
    results: list[Result],
    lateness: dict[str, Lateness] | None = None,
    *,
    to_grade: dict[str, float] | None = None,
    recorded: dict[str, LabScore] | None = None,
) -> Table:
    """Student, score, status (with a failed run's reason) and seconds; a caption counts statuses.
    Student ids and reasons are shown as plain text: a reason can quote a student's file name,
    which must not be read as rich markup. to_grade (review.points_to_grade): a student's written
    answers' points still awaiting a TA, as "17.6 / 22 + 3 to grade".
    lateness (deadlines.lateness_of_lab): a "late" column when the lab has a due date, with the
    penalty and the score it leaves. recorded (exports.scores.read_lab_scores): the score is the
    gradebook's, where a TA's manual score stands over the autograder's (marked "TA"), not result.json's."""
    counts: dict[str, int] = {}
    for r in results:
        key = "graded" if r.status == "graded" else f"failed ({r.failure_kind})"
        counts[key] = counts.get(key, 0) + 1
    table = Table(title="Grades", caption=", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    lateness = lateness or {}
    late_column = any(late.due is not None for late in lateness.values())
    columns = ("student", "score", "status", "seconds", *(("late",) if late_column else ()))
    for column in columns:
        table.add_column(
            column, justify="right" if column in ("score", "seconds") else "left", no_wrap=column == "score"
        )
    for r in results:
        style = "green" if r.status == "graded" and r.sandboxed else "red"
        score = f"{r.score:g} / {r.max_score:g}" if r.status == "graded" else f"- / {r.max_score:g}"
        gradebook = (recorded or {}).get(r.student)
        if gradebook is not None:
            shown = "-" if gradebook.score is None else f"{gradebook.score:g}"
            score = f"{shown} / {gradebook.max_score:g}" + (" (TA)" if gradebook.by_ta else "")
        if to_grade and to_grade.get(r.student) and r.status == "graded":  # written answers awaiting a TA
            # (a failed run's answers are not read until it is graded again)
            score += f" + {to_grade[r.student]:g} to grade"
        row: list[Text | str] = [Text(r.student), score, Text(r.status_text, style=style), f"{r.seconds:.1f}"]
        if late_column:
            row.append(_late_cell(lateness.get(r.student), r))
        table.add_row(*row)
    return table


def _late_cell(late: Lateness | None, result: Result) -> Text:
    """'3 h 10 min late: −10 % → 13.5', 'on time'; a failed run's lateness without a score."""
    if late is None:
        return Text("-")
    note = late.note().removeprefix("submitted ")
    if result.status == "graded" and late.penalty > 0:
        return Text(f"{note} → {late.score_after_penalty:g}", style="yellow")
    return Text(note, style="yellow" if late.seconds_late > 0 else "")

"""The table that ends `autograder grade` and `autograder demo`: one row per submission."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from .results import Result


def results_table(results: list[Result]) -> Table:
    """Student, score, status (with a failed run's reason) and seconds; a caption counts statuses.
    Student ids and reasons are shown as plain text: a reason can quote a student's file name,
    which must not be read as rich markup."""
    counts: dict[str, int] = {}
    for r in results:
        key = "graded" if r.status == "graded" else f"failed ({r.failure_kind})"
        counts[key] = counts.get(key, 0) + 1
    table = Table(title="Grades", caption=", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    for column in ("student", "score", "status", "seconds"):
        table.add_column(column, justify="right" if column in ("score", "seconds") else "left")
    for r in results:
        style = "green" if r.status == "graded" and r.sandboxed else "red"
        score = f"{r.score:g} / {r.max_score:g}" if r.status == "graded" else f"- / {r.max_score:g}"
        table.add_row(Text(r.student), score, Text(r.status_text, style=style), f"{r.seconds:.1f}")
    return table

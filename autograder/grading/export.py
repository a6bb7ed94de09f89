"""`autograder export`: one CSV row per student and lab, with a status nbgrader's export lacks.

status is "graded", "failed: <reason>" or "missing" (a known student with no submission),
so a failed run is never mistaken for an honest 0; failure is its kind (outcomes.FailureKind:
"timeout", "not valid JSON", ...), for sorting and counting. Every text cell that a spreadsheet would
run as a formula (it starts with =, +, -, @, a tab or a carriage return: OWASP's CSV-injection
rule) is written with a leading ' ; numbers stay numbers.

The score is the gradebook's (exports/scores.py): a TA's manual score stands over the autograder's, and
result.json says only whether the run was graded or failed; the other formats (exports/) read the same.

The late columns are nbgrader's, read from the gradebook (deadlines.lateness_of_lab): seconds_late
past the student's due date (extension included), penalty (points, SubmittedNotebook.
late_submission_penalty summed) and score_after_penalty (score − penalty, at least 0, as nbgrader's
export computes it); seconds_late is empty without a due date or a submission time, the other two
for a run without a score (failed, missing).
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

from nbgrader.api import Gradebook

from ..atomic_file import write_atomically
from ..course import Course
from .deadlines import Lateness, lateness_of_lab
from .exports.scores import read_scores
from .results import load_result, result_path

COLUMNS = [
    "student",
    "lab",
    "status",
    "failure",
    "score",
    "max_score",
    "sandboxed",
    "graded_seconds",
    "seconds_late",
    "penalty",
    "score_after_penalty",
]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def spreadsheet_safe(value) -> str:
    """The cell as text no spreadsheet executes: numbers as they are, formula-like text quoted."""
    text = str(value)
    if text.startswith(FORMULA_STARTS) and not NUMBER.fullmatch(text):  # -1.5 is a number, not a formula
        return "'" + text
    return text


def export_csv(course: Course, target: Path, labs: list[str] | None = None) -> int:
    labs = labs or course.labs()
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        students = sorted(s.id for s in gb.students)
    students = sorted(set(students) | {p.name for p in course.autograded.glob("*") if p.is_dir()})
    rows = 0
    # The rows in memory, then one atomic write: a killed export leaves the old file.
    with io.StringIO(newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        row = lambda values: writer.writerow([spreadsheet_safe(v) for v in values])  # noqa: E731
        scores = read_scores(course, labs)
        for lab in labs:
            lateness = lateness_of_lab(course, lab)
            for student in students:
                result = load_result(course.autograded, student, lab)
                if result is None and os.path.lexists(result_path(course.autograded, student, lab)):
                    row([student, lab, "failed: result.json is damaged (grade again with --force)", *[""] * 8])
                elif result is None:
                    row([student, lab, "missing", *[""] * 8])
                else:
                    # The gradebook's score (a TA's manual score over the autograder's), result.json's status.
                    # A failed run has no score: an empty cell, never a 0 that looks earned.
                    recorded = scores.of(lab, student)
                    score = "" if recorded.score is None else f"{recorded.score:g}"
                    row(
                        [
                            student,
                            lab,
                            recorded.status_text,
                            result.failure_kind or "",
                            score,
                            f"{result.max_score:g}",
                            result.sandboxed,
                            result.seconds,
                            *_late_columns(lateness.get(student), recorded.score is not None),
                        ]
                    )
                rows += 1
        write_atomically(target, handle.getvalue())
    return rows


def _late_columns(late: Lateness | None, scored: bool) -> list[str]:
    """seconds_late (empty without a due date or a submission time), penalty and score_after_penalty
    (empty for a run without a score)."""
    if late is None:
        return ["", "", ""]
    seconds = f"{late.seconds_late:g}" if late.due is not None and late.submitted is not None else ""
    if not scored:
        return [seconds, "", ""]
    return [seconds, f"{late.penalty:g}", f"{late.score_after_penalty:g}"]

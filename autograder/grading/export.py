"""`autograder export`: one CSV row per student and lab, with a status nbgrader's export lacks.

status is "graded", "failed: <reason>" or "missing" (a known student with no submission),
so a failed run is never mistaken for an honest 0.
"""

from __future__ import annotations

import csv
from pathlib import Path

from nbgrader.api import Gradebook

from ..course import Course
from .results import load_result

COLUMNS = ["student", "lab", "status", "score", "max_score", "sandboxed", "graded_seconds"]


def export_csv(course: Course, target: Path, labs: list[str] | None = None) -> int:
    labs = labs or course.labs()
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        students = sorted(s.id for s in gb.students)
    students = sorted(set(students) | {p.name for p in course.autograded.glob("*") if p.is_dir()})
    rows = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for lab in labs:
            for student in students:
                result = load_result(course.autograded, student, lab)
                if result is None:
                    writer.writerow([student, lab, "missing", "", "", "", ""])
                else:
                    # A failed run has no score: an empty cell, never a 0 that looks earned.
                    score = f"{result.score:g}" if result.status == "graded" else ""
                    writer.writerow([student, lab, result.status_text, score, f"{result.max_score:g}",
                                     result.sandboxed, result.seconds])
                rows += 1
    return rows

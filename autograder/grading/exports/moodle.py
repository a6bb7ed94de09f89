"""`autograder export --format moodle`: a CSV for Moodle's grade import (Grades > Import > CSV file).

Moodle maps one identifier column to its users ("Map from" / "Map to": the email address, the username
or the ID number) and each other column to a grade item or to a grade item's feedback; the rest are
ignored. So: the identifier column first (--moodle-id: email, username = our student id, idnumber = the
roster's lms_user_id), the names, then per lab its score after any late penalty and a feedback column
saying why a grade is empty (the run failed, no submission) or what it holds (a TA's score, a late
penalty). With --per-cell, one more column per test cell. A student without the chosen identifier
could not be matched by Moodle: the export refuses, naming them, and writes nothing.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ...atomic_file import write_atomically
from ...course import CourseError
from ..export import spreadsheet_safe
from .columns import grade_columns, note, number
from .scores import Scores, Student

IDENTIFIERS = {  # --moodle-id → (column title as Moodle's own export names it, the student's value)
    "email": ("Email address", lambda s: s.email),
    "username": ("Username", lambda s: s.id),
    "idnumber": ("ID number", lambda s: s.lms_user_id),
}
ROSTER_FIELD = {"email": "email", "username": "id", "idnumber": "lms_user_id"}


def feedback_title(lab: str) -> str:
    return f"{lab} (feedback)"


def write_moodle(scores: Scores, target: Path, identifier: str = "email", per_cell: bool = False) -> int:
    """Write the file (atomically); returns how many student rows. CourseError: an unknown identifier,
    or students without one (or sharing one)."""
    if identifier not in IDENTIFIERS:
        raise CourseError(f"--moodle-id {identifier}: expected one of {', '.join(IDENTIFIERS)}")
    title, value_of = IDENTIFIERS[identifier]
    _check_identifiers(scores.students, identifier, value_of)
    columns = grade_columns(scores, per_cell)
    header = [title, "First name", "Last name"]
    for column in columns:
        header.append(column.title)
        if column.title == column.lab:
            header.append(feedback_title(column.lab))
    with io.StringIO(newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([spreadsheet_safe(v) for v in header])
        for student in scores.students:
            row = [value_of(student), student.first_name, student.last_name]
            for column in columns:
                outcome = scores.of(column.lab, student.id)
                row.append(number(column.value(outcome)))
                if column.title == column.lab:
                    row.append(note(outcome))
            writer.writerow([spreadsheet_safe(v) for v in row])
        write_atomically(target, handle.getvalue())
    return len(scores.students)


def _check_identifiers(students: list[Student], identifier: str, value_of) -> None:
    lacking = [s.id for s in students if not value_of(s)]
    if lacking:
        shown = ", ".join(repr(s) for s in lacking[:10]) + (
            f" and {len(lacking) - 10} more" if len(lacking) > 10 else ""
        )
        raise CourseError(
            f"--moodle-id {identifier}: {len(lacking)} student(s) have no {ROSTER_FIELD[identifier]} on the roster "
            f"({shown}), so Moodle could not match their rows: add it with `autograder roster import FILE.csv` "
            f"or choose another --moodle-id ({', '.join(IDENTIFIERS)}); nothing was written"
        )
    seen: dict[str, str] = {}
    for student in students:
        other = seen.setdefault(value_of(student), student.id)
        if other != student.id:
            raise CourseError(
                f"--moodle-id {identifier}: {other!r} and {student.id!r} share the {ROSTER_FIELD[identifier]} "
                f"{value_of(student)!r}, so Moodle would give both grades to one user: fix the roster; "
                "nothing was written"
            )

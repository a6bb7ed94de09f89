"""`autograder roster import FILE.csv`: students' names, emails and LMS ids into nbgrader's gradebook.

The file is what `nbgrader db student import` reads: a header with `id` (required) and any of
first_name, last_name, email, lms_user_id (nbgrader's Student columns), one student a row. It is
written through nbgrader's Gradebook API (update_or_create_student) as that command does, so formgrader
and every export show the names. Stricter than nbgrader's, so that nothing is lost in silence: a
column nbgrader does not know is refused (nbgrader skips it), an empty cell leaves what the gradebook
has (nbgrader blanks it), and the whole file is checked before anything is written: an id that could
not be a submitted/ folder name, the same id twice, a value over nbgrader's 128 characters or holding
a control character is an error naming its line. Names are stored as written (a name that starts with
= is a name); every export quotes them for spreadsheets.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from ..course import Course, CourseError
from .submission_files import student_id_problem

COLUMNS = ("id", "first_name", "last_name", "email", "lms_user_id")
MAX_CHARS = 128  # nbgrader's String(128) columns
MAX_BYTES = 4 * 2**20
CONTROL = {chr(c) for c in range(32)} | {"\x7f"}


@dataclass(frozen=True)
class RosterReport:
    added: list[str]
    updated: list[str]


def read_roster(path: Path) -> list[dict[str, str]]:
    """The file's students: id → the fields it gives (empty cells left out). CourseError names the line."""
    path = Path(path)
    if not path.is_file():
        raise CourseError(f"{path}: no such file (a CSV with a header: {', '.join(COLUMNS)})")
    data = path.read_bytes()
    if len(data) > MAX_BYTES:
        raise CourseError(f"{path}: {len(data):,} bytes, over {MAX_BYTES // 2**20} MiB: not a roster")
    try:
        text = data.decode("utf-8-sig")  # Excel's byte-order mark is fine
    except UnicodeDecodeError as err:
        raise CourseError(f"{path}: not UTF-8 (byte {err.start}): save it as CSV UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [name.strip() for name in next(reader, [])]
    if "id" not in header:
        raise CourseError(f"{path}: the header needs an 'id' column (has: {', '.join(header) or 'nothing'})")
    unknown = [name for name in header if name not in COLUMNS]
    if unknown:
        raise CourseError(
            f"{path}: unknown column(s) {', '.join(repr(n) for n in unknown)}: nbgrader's student columns are "
            f"{', '.join(COLUMNS)}"
        )
    doubled = sorted({name for name in header if header.count(name) > 1})
    if doubled:
        raise CourseError(f"{path}: column(s) {', '.join(doubled)} given twice")
    students: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    for line, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue  # a blank line
        if len(values) != len(header):
            raise CourseError(f"{path}, line {line}: {len(values)} values for {len(header)} columns")
        row = {name: value.strip() for name, value in zip(header, values, strict=True)}
        for name, value in row.items():
            if len(value) > MAX_CHARS:
                raise CourseError(f"{path}, line {line}: {name} has {len(value)} characters, over {MAX_CHARS}")
            if CONTROL & set(value):
                raise CourseError(f"{path}, line {line}: {name} holds a control character (a tab, a line break...)")
        student = row["id"]
        problem = student_id_problem(student) if student else "no id"
        if problem:
            shown = problem.replace("the folder name", "the id").replace(": rename it under submitted/", "")
            raise CourseError(f"{path}, line {line}: {shown}")
        if student in seen:
            raise CourseError(f"{path}, line {line}: {student!r} is already on line {seen[student]}")
        seen[student] = line
        students.append({name: value for name, value in row.items() if value})
    return students


def import_roster(course: Course, path: Path) -> RosterReport:
    """Add or update every student of the file in the gradebook (all checked first: a bad file writes nothing)."""
    students = read_roster(path)
    added, updated = [], []
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        for fields in students:
            student = fields.pop("id")
            try:
                gb.find_student(student)
                updated.append(student)
            except MissingEntry:
                added.append(student)
            gb.update_or_create_student(student, **fields)
    return RosterReport(added, updated)


def unknown_students(course: Course, lab: str, students: list[str]) -> list[str]:
    """The students asked for that have no submission of `lab` and are not on the roster: a typo, most
    likely; grading them would add them to the gradebook."""
    # An id that could not be a folder name is grade_lab's to refuse (with its reason), never looked up here.
    absent = [s for s in students if not student_id_problem(s) and not os.path.lexists(course.submitted / s / lab)]
    if not absent:
        return []
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        roster = {s.id for s in gb.students}
    return [s for s in absent if s not in roster]


def refuse_unknown_students(course: Course, lab: str, students: list[str]) -> None:
    """CourseError when a student asked for has no submission of `lab` and is not on the roster."""
    unknown = unknown_students(course, lab, students)
    if unknown:
        shown = ", ".join(repr(s) for s in unknown[:10]) + (
            f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        )
        raise CourseError(
            f"{shown}: no submission in {course.submitted}/<student>/{lab} and not on the roster; check the "
            "id (`autograder roster import FILE.csv` adds students): nothing was graded and no student was added"
        )

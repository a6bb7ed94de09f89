"""Deadlines into nbgrader's gradebook, and what each submission's lateness cost.

Where each thing lives is nbgrader's choice, so that formgrader, `nbgrader export` and our own
table, feedback and exports agree:

- a lab's due date: Assignment.duedate (naive UTC), from `c.Deadlines.due` (settings.py) when the
  course sets one there, else what the gradebook already has (`nbgrader db assignment add --duedate`);
- a student's own due date: SubmittedAssignment.extension (a timedelta past the lab's), from
  `c.Deadlines.student_due` or the TAs' extensions file (CSV: student,lab,due,reason);
- when it came: SubmittedAssignment.timestamp, nbgrader's submission time (timestamp.txt, which
  collect writes and gradebook.record_result records);
- the penalty: SubmittedNotebook.late_submission_penalty, from the late-submission plugin nbgrader's
  AssignLatePenalties names (`c.AssignLatePenalties.plugin_class`; ours, late_policy.LatePolicy, by
  default), clamped to [0, score] by AssignLatePenalties' own rule.

A bad extensions file or due date is a CourseError naming the file, the line and the fix: the batch
stops before any kernel starts, and nothing in the gradebook is changed.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry, SubmittedAssignment
from nbgrader.preprocessors import AssignLatePenalties
from traitlets.config import Config

from ..course import Course, CourseError
from ..settings import Deadlines, DueDate, DueDateError, parse_due_date
from .submission_files import student_id_problem

EXTENSION_COLUMNS = ("student", "lab", "due", "reason")
MAX_EXTENSIONS_BYTES = 4 * 2**20  # some thousands of rows; a larger file is not one a TA wrote


@dataclass(frozen=True)
class Extension:
    """One student's own due date for one lab, and where it was written (for error messages)."""

    student: str
    lab: str
    due: DueDate
    reason: str
    where: str


@dataclass(frozen=True)
class LabDeadlines:
    """One lab's due date and its students' own ones, checked against each other."""

    lab: str
    due: DueDate | None
    extensions: dict[str, Extension]
    configured: bool  # the due date comes from c.Deadlines.due (else from the gradebook, or there is none)

    @classmethod
    def load(cls, course: Course, lab: str, gradebook: Gradebook | None = None) -> LabDeadlines:
        settings = Deadlines(config=course.config)
        try:
            due = settings.lab_due(lab)
        except DueDateError as err:
            raise CourseError(f"{err} (nbgrader_config.py)") from None
        configured = due is not None
        if due is None:
            stored = _stored_due(course, lab, gradebook)
            due = DueDate(stored, "UTC") if stored is not None else None
        extensions: dict[str, Extension] = {}
        for extension in [*_configured_extensions(settings, lab), *read_extensions_file(course, settings)]:
            if extension.lab != lab:
                continue
            if extension.student in extensions:
                raise CourseError(
                    f"{extension.student}'s due date for {lab} is given twice, in "
                    f"{extensions[extension.student].where} and {extension.where}: keep one"
                )
            if due is None:
                raise CourseError(
                    f"{extension.where}: {lab} has no due date to extend: set c.Deadlines.due[{lab!r}] "
                    "in nbgrader_config.py"
                )
            if extension.due.utc < due.utc:
                raise CourseError(
                    f"{extension.where}: {extension.student}'s due date {extension.due.shown()} is before the lab's "
                    f"({due.shown()}): an extension moves a deadline later"
                )
            extensions[extension.student] = extension
        return cls(lab, due, extensions, configured)

    def extension(self, student: str) -> timedelta | None:
        """nbgrader's SubmittedAssignment.extension for `student` (None: the lab's due date)."""
        extension = self.extensions.get(student)
        if extension is None or self.due is None:
            return None
        return extension.due.utc - self.due.utc


def _stored_due(course: Course, lab: str, gradebook: Gradebook | None) -> datetime | None:
    def find(gb: Gradebook) -> datetime | None:
        try:
            return gb.find_assignment(lab).duedate
        except MissingEntry:
            return None

    if gradebook is not None:
        return find(gradebook)
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        return find(gb)


def _configured_extensions(settings: Deadlines, lab: str) -> list[Extension]:
    found = []
    for student, text in settings.student_due.get(lab, {}).items():
        where = f"c.Deadlines.student_due[{lab!r}][{student!r}]"
        problem = student_id_problem(student)
        if problem:
            raise CourseError(f"{where}: {problem.split(':')[0]} (nbgrader_config.py)")
        try:
            found.append(Extension(student, lab, parse_due_date(text), "", where))
        except DueDateError as err:
            raise CourseError(f"{where}: {err} (nbgrader_config.py)") from None
    return found


def extensions_path(course: Course, settings: Deadlines | None = None) -> Path:
    settings = settings or Deadlines(config=course.config)
    return course.root / settings.extensions_file


def read_extensions_file(course: Course, settings: Deadlines | None = None) -> list[Extension]:
    """Every row of the extensions file (none when there is no file), each checked: a known lab, a
    usable student id, a due date with its zone, a reason. The first bad row stops it, named."""
    path = extensions_path(course, settings)
    if not path.is_file():
        if path.exists() or path.is_symlink():
            raise CourseError(f"{path} is not a regular file: the extensions file is a CSV (student,lab,due,reason)")
        return []
    if path.stat().st_size > MAX_EXTENSIONS_BYTES:
        raise CourseError(f"{path} is over {MAX_EXTENSIONS_BYTES // 2**20} MiB: not an extensions file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's BOM is not part of the header
    except UnicodeDecodeError as err:
        raise CourseError(f"{path} is not UTF-8 ({err.reason} at byte {err.start}): save it as UTF-8 CSV") from None
    rows = csv.reader(io.StringIO(text, newline=""))
    header = next(rows, None)
    if header is None or tuple(h.strip().lower() for h in header) != EXTENSION_COLUMNS:
        raise CourseError(f"{path} line 1 must be the header {','.join(EXTENSION_COLUMNS)} (found {header!r})")
    labs = set(course.labs())
    found: list[Extension] = []
    seen: dict[tuple[str, str], int] = {}
    for row in rows:
        line = rows.line_num
        where = f"{path.name} line {line}"
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) != len(EXTENSION_COLUMNS):
            raise CourseError(f"{where}: {len(row)} columns, expected 4 (student,lab,due,reason)")
        student, lab, due_text, reason = (cell.strip() for cell in row)
        problem = student_id_problem(student)
        if problem:
            raise CourseError(f"{where}: {problem.split(': rename')[0]}")
        if lab not in labs:
            raise CourseError(f"{where}: no lab {lab!r} in this course (labs: {', '.join(sorted(labs)) or 'none'})")
        if not reason:
            raise CourseError(f"{where}: the reason is empty: say why (kept for the staff, never shown to the student)")
        if (student, lab) in seen:
            raise CourseError(f"{where}: {student} already has an extension for {lab} on line {seen[student, lab]}")
        seen[student, lab] = line
        try:
            due = parse_due_date(due_text)
        except DueDateError as err:
            raise CourseError(f"{where}: {err}") from None
        found.append(Extension(student, lab, due, reason, where))
    return found


def late_penalties(course: Course) -> AssignLatePenalties:
    """nbgrader's AssignLatePenalties with its plugin made: the course's `plugin_class`, or ours."""
    config = Config(course.config)
    if "plugin_class" not in config.AssignLatePenalties:
        config.AssignLatePenalties.plugin_class = "autograder.grading.late_policy.LatePolicy"
    assigner = AssignLatePenalties(config=config)
    assigner.init_plugin()
    return assigner


def apply_to_submission(submission: SubmittedAssignment, deadlines: LabDeadlines, assigner: AssignLatePenalties):
    """Set the lab's due date, the student's extension and each notebook's penalty on one submission
    of the gradebook (the caller commits). Each notebook's penalty is what AssignLatePenalties would
    store: None on time, else the plugin's answer clamped to [0, the notebook's score]."""
    if deadlines.configured and deadlines.due is not None:
        submission.assignment.duedate = deadlines.due.utc
    submission.extension = deadlines.extension(submission.student.id)
    seconds_late = submission.total_seconds_late
    for notebook in submission.notebooks:
        notebook.late_submission_penalty = None
        if seconds_late > 0:
            penalty = assigner.plugin_inst.late_submission_penalty(submission.student.id, notebook.score, seconds_late)
            if penalty is not None:
                notebook.late_submission_penalty = assigner._check_late_penalty(notebook, penalty)


# ---- reading it back: the table, the feedback page, the exports --------------------------------------


@dataclass(frozen=True)
class Lateness:
    """One submission's deadline and what its lateness cost, as the gradebook has them."""

    student: str
    lab: str
    due: str | None  # the student's due date as shown to people (None: the lab has none)
    extended: bool
    submitted: datetime | None  # naive UTC, nbgrader's timestamp
    seconds_late: float
    penalty: float  # points, summed over the lab's notebooks
    score: float  # before the penalty

    @property
    def score_after_penalty(self) -> float:
        return round(max(0.0, self.score - self.penalty), 6)  # as nbgrader's export computes it

    @property
    def percent(self) -> float | None:
        """The penalty as a percent of the score (None when there was no score to take from)."""
        return round(100 * self.penalty / self.score, 2) if self.score > 0 else None

    def note(self) -> str:
        """'submitted 3 h 10 min late: −10 %', 'on time', or why neither can be said."""
        if self.due is None:
            return "no due date"
        if self.submitted is None:
            return "no submission time recorded"
        if self.seconds_late <= 0:
            return "on time"
        late = f"submitted {duration_text(self.seconds_late)} late"
        if self.penalty <= 0:
            return f"{late}: no penalty"
        percent = self.percent
        cost = f"−{percent:g} %" if percent is not None else f"−{self.penalty:g} points"
        return f"{late}: {cost}"


def lateness_of_lab(course: Course, lab: str) -> dict[str, Lateness]:
    """student → Lateness for every submission of `lab` in the gradebook ({} when it has none)."""
    try:
        deadlines = LabDeadlines.load(course, lab)
    except CourseError:
        deadlines = None  # shown in UTC: the command that applies them says what is wrong
    found = {}
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        try:
            submissions = gb.find_assignment(lab).submissions
        except MissingEntry:
            return {}
        for submission in submissions:
            student = submission.student.id
            has_due = submission.assignment.duedate is not None  # nbgrader's duedate adds an extension to it
            due = submission.duedate if has_due else None
            found[student] = Lateness(
                student=student,
                lab=lab,
                due=DueDate(due, _zone_of(deadlines, student)).shown() if due is not None else None,
                extended=bool(submission.extension) and has_due,
                submitted=submission.timestamp,
                seconds_late=float(submission.total_seconds_late) if has_due else 0.0,
                penalty=float(submission.late_submission_penalty or 0.0),
                score=float(submission.score or 0.0),
            )
    return found


def _zone_of(deadlines: LabDeadlines | None, student: str) -> str:
    """The zone a student's due date is shown in: the one its extension or the lab's due date was written in.
    The time itself is always the gradebook's."""
    if deadlines is None:
        return "UTC"
    extension = deadlines.extensions.get(student)
    due = extension.due if extension else deadlines.due
    return due.zone if due else "UTC"


def duration_text(seconds: float) -> str:
    """'45 s', '3 h 10 min', '2 d 4 h': the two largest units, rounded up (late is never understated)."""
    total = int(-(-seconds // 1))
    if total < 60:
        return f"{total} s"
    minutes = -(-total // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours + (1 if minutes else 0), 24)
    return f"{days} d {hours} h" if hours else f"{days} d"

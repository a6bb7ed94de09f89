"""What each student scored in each lab, as every export and the grades table show it.

The gradebook has the word on scores: nbgrader's `Grade.score` is a TA's `manual_score` (entered in
formgrader or `autograder review`) where there is one, else the autograder's `auto_score`, and a
submission's score is the sum over its cells; the late penalty is nbgrader's
`SubmittedNotebook.late_submission_penalty`, summed over the lab's notebooks. result.json says only
whether the run was graded or failed, and why: a TA who typed 20 over the autograded 17.6 sees 20
everywhere.

A failed run has no score (None, never 0), unless a TA has scored every one of its cells by hand; a
student on the roster (or with an autograded folder) who did not submit is "missing".
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from nbgrader.api import Gradebook, MissingEntry

from ...course import Course
from ..results import Result, load_result, result_path

GRADED, FAILED, MISSING = "graded", "failed", "missing"
DAMAGED = "failed: result.json is damaged (grade again with --force)"
NOT_RECORDED = "failed: graded but not in the gradebook (grade again with --force)"


@dataclass(frozen=True)
class Student:
    """A student as the gradebook knows them (nbgrader's Student; names from `autograder roster import`)."""

    id: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    lms_user_id: str = ""

    @property
    def sortable_name(self) -> str:
        """'Last, First' as Canvas and formgrader write it; the id where the roster has no name."""
        if self.last_name and self.first_name:
            return f"{self.last_name}, {self.first_name}"
        return self.last_name or self.first_name or self.id


@dataclass(frozen=True)
class CellGrade:
    """One test (or manually graded) cell of one submission, from nbgrader's Grade."""

    notebook: str
    grade_id: str
    max_score: float
    auto_score: float | None
    manual_score: float | None
    extra_credit: float | None
    needs_manual_grade: bool

    @property
    def score(self) -> float | None:
        """nbgrader's Grade.score (manual over auto, plus extra credit), or None where neither is set."""
        base = self.manual_score if self.manual_score is not None else self.auto_score
        return None if base is None else base + (self.extra_credit or 0.0)

    @property
    def by_ta(self) -> bool:
        return self.manual_score is not None


@dataclass(frozen=True)
class LabScore:
    """One student's outcome in one lab."""

    student: Student
    lab: str
    status: str  # GRADED, FAILED or MISSING
    status_text: str  # "graded", "failed: <reason>", "missing", ... (what the csv's status column says)
    failure: str  # the FailureKind's short name, or ""
    max_score: float
    score: float | None  # the gradebook's, before any late penalty; None: not scored
    penalty: float = 0.0  # late penalty in points (0 on time)
    cells: tuple[CellGrade, ...] = ()
    result: Result | None = field(default=None, compare=False)

    @property
    def score_after_penalty(self) -> float | None:
        if self.score is None:
            return None
        return round(max(0.0, self.score - self.penalty), 6)  # nbgrader's export computes it so

    @property
    def by_ta(self) -> bool:
        """Whether a TA's score stands in for the autograder's on any cell."""
        return any(c.by_ta for c in self.cells)

    @property
    def awaiting_ta(self) -> list[CellGrade]:
        """The cells still waiting for a TA (a written answer, a run that failed)."""
        return [c for c in self.cells if c.needs_manual_grade and c.score is None]

    def cell(self, notebook: str, grade_id: str) -> CellGrade | None:
        return next((c for c in self.cells if (c.notebook, c.grade_id) == (notebook, grade_id)), None)


@dataclass
class Scores:
    """Every student × lab of an export, read in one gradebook session."""

    labs: list[str]
    students: list[Student]
    cells: dict[str, list[tuple[str, str, float]]]  # lab → (notebook, grade_id, points), notebook by notebook
    max_scores: dict[str, float]  # lab → its points
    rows: dict[tuple[str, str], LabScore]  # (lab, student id) → outcome

    def of(self, lab: str, student: str) -> LabScore:
        return self.rows[(lab, student)]


def read_scores(course: Course, labs: list[str] | None = None) -> Scores:
    """The students (the gradebook's roster, and anyone with an autograded/ folder) and their outcome in
    each lab (default: every lab of the course)."""
    labs = list(labs or course.labs())
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        roster = {s.id: _student(s) for s in gb.students}
        folders = {p.name for p in course.autograded.glob("*") if p.is_dir()} if course.autograded.is_dir() else set()
        students = [roster.get(sid, Student(sid)) for sid in sorted(set(roster) | folders)]
        cells: dict[str, list[tuple[str, str, float]]] = {}
        max_scores: dict[str, float] = {}
        rows: dict[tuple[str, str], LabScore] = {}
        for lab in labs:
            try:
                assignment = gb.find_assignment(lab)
            except MissingEntry:
                assignment = None
            notebooks = sorted(assignment.notebooks, key=lambda n: n.name) if assignment is not None else []
            cells[lab] = [(nb.name, c.name, float(c.max_score)) for nb in notebooks for c in nb.grade_cells]
            order = {(notebook, grade_id): i for i, (notebook, grade_id, _) in enumerate(cells[lab])}
            max_scores[lab] = float(assignment.max_score) if assignment is not None else 0.0
            submissions = {s.student.id: s for s in assignment.submissions} if assignment is not None else {}
            for student in students:
                rows[(lab, student.id)] = _outcome(
                    course, lab, student, submissions.get(student.id), order, max_scores[lab]
                )
    return Scores(labs, students, cells, max_scores, rows)


def read_lab_scores(course: Course, lab: str) -> dict[str, LabScore]:
    """student id → outcome in one lab (the grades table)."""
    scores = read_scores(course, [lab])
    return {student.id: scores.of(lab, student.id) for student in scores.students}


def _student(row) -> Student:
    return Student(row.id, row.first_name or "", row.last_name or "", row.email or "", str(row.lms_user_id or ""))


def _outcome(course: Course, lab: str, student: Student, submission, order, lab_points: float) -> LabScore:
    result = load_result(course.autograded, student.id, lab)
    cells = _cells(submission, order) if submission is not None else ()
    total = round(sum(c.score or 0.0 for c in cells), 6)  # nbgrader's Submission.score, read cell by cell
    score: float | None = None
    if result is None and os.path.lexists(result_path(course.autograded, student.id, lab)):
        status, text, failure = FAILED, DAMAGED, ""
    elif result is None:
        status, text, failure = MISSING, MISSING, ""
    elif result.status == GRADED and submission is None:
        status, text, failure = FAILED, NOT_RECORDED, ""
    elif result.status == GRADED:
        status, text, failure, score = GRADED, result.status_text, "", total
    else:
        status, text, failure = FAILED, result.status_text, str(result.failure_kind or "")
    if status == FAILED and cells and all(c.by_ta for c in cells):  # a TA scored the failed run by hand
        status, text, score = GRADED, f"graded by a TA ({text})", total
    return LabScore(
        student=student,
        lab=lab,
        status=status,
        status_text=text,
        failure=failure,
        max_score=float(submission.max_score)
        if submission is not None
        else (result.max_score if result else lab_points),
        score=score,
        penalty=float(submission.late_submission_penalty or 0.0) if submission is not None else 0.0,
        cells=cells,
        result=result,
    )


def _cells(submission, order: dict[tuple[str, str], int]) -> tuple[CellGrade, ...]:
    """The submission's grades of grade cells, in the lab's cell order."""
    found = []
    for notebook in submission.notebooks:
        for grade in notebook.grades:
            if grade.cell.__class__.__name__ != "GradeCell":
                continue
            found.append(
                CellGrade(
                    notebook.name,
                    grade.name,
                    float(grade.max_score),
                    grade.auto_score,
                    grade.manual_score,
                    grade.extra_credit,
                    bool(grade.needs_manual_grade),
                )
            )
    return tuple(sorted(found, key=lambda c: order.get((c.notebook, c.grade_id), len(order))))

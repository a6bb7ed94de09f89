"""Write a submission's outcome into nbgrader's gradebook; the coordinator is its only writer.

A graded submission gets an auto_score on every test cell. A failed one gets no score
(auto_score None, needs_manual_grade) on every cell and its notebooks flagged, so that
formgrader and `nbgrader export` never show it as an honest 0; the reason is in the
result file and in our export's status column. Each recorded submission gets its lab's due date,
its extension and its late penalties where nbgrader keeps them (deadlines.py).
"""

from __future__ import annotations

import threading
import warnings
from datetime import datetime

from nbgrader.api import Gradebook, MissingEntry
from sqlalchemy.exc import SAWarning

from ..course import Course
from .deadlines import LabDeadlines, apply_to_submission, late_penalties
from .results import Result


def max_scores(course: Course, lab: str) -> dict[str, dict[str, float]]:
    """notebook → grade_id → points of its autograded test cells, as the build stored them.

    Written answers (manually graded answer cells) are left out: no run can award their points, so a
    result's max_score is what the autograder judges; the gradebook's total (submission.max_score)
    adds them once a TA scores them, and review.points_to_grade says what is still waiting."""
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        try:
            assignment = gb.find_assignment(lab)
        except MissingEntry:
            return {}
        scores = {}
        for nb in assignment.notebooks:
            written = {cell.name for cell in nb.solution_cells}
            scores[nb.name] = {cell.name: float(cell.max_score) for cell in nb.grade_cells if cell.name not in written}
        return scores


_WRITER = threading.Lock()  # one writer at a time, whatever the number of grading threads


def record_result(course: Course, result: Result, timestamp: datetime | None = None) -> None:
    assigner = late_penalties(course)
    with _WRITER, Gradebook(course.db_url, course.coursedir().course_id) as gb, warnings.catch_warnings():
        # nbgrader's update_or_create_submission trips SQLAlchemy's autoflush warning; harmless.
        warnings.simplefilter("ignore", category=SAWarning)
        deadlines = LabDeadlines.load(course, result.lab, gb)  # a bad extensions file: before anything is written
        gb.update_or_create_student(result.student)
        extra = {"timestamp": timestamp} if timestamp else {}
        submission = gb.update_or_create_submission(result.lab, result.student, **extra)
        scores = {(c.notebook, c.grade_id): c.score for c in result.cells}
        for notebook in submission.notebooks:
            notebook.flagged = result.status != "graded"
            written = {cell.name for cell in notebook.notebook.solution_cells}  # graded answers: a TA's
            for grade in notebook.grades:
                if grade.cell.__class__.__name__ != "GradeCell":
                    continue
                if grade.name in written:  # the run decides nothing; a TA's score stands (autograder review)
                    grade.auto_score, grade.needs_manual_grade = None, grade.manual_score is None
                    continue
                score = scores.get((notebook.name, grade.name)) if result.status == "graded" else None
                grade.auto_score = score
                # formgrader's rule: a cell needs a TA while it has no score at all; a TA's score stands unflagged
                grade.needs_manual_grade = score is None and grade.manual_score is None
        gb.db.commit()  # the notebooks' scores are read back from the database for the penalties
        apply_to_submission(submission, deadlines, assigner)
        gb.db.commit()


def apply_deadlines(course: Course, lab: str) -> int:
    """Due dates, extensions and late penalties onto every submission of `lab` in the gradebook (after
    the extensions file or the policy changed, and for results a batch reused); returns how many."""
    deadlines = LabDeadlines.load(course, lab)
    assigner = late_penalties(course)
    with _WRITER, Gradebook(course.db_url, course.coursedir().course_id) as gb:
        try:
            assignment = gb.find_assignment(lab)
        except MissingEntry:
            return 0
        if deadlines.configured and deadlines.due is not None:
            assignment.duedate = deadlines.due.utc
        submissions = assignment.submissions
        for submission in submissions:
            apply_to_submission(submission, deadlines, assigner)
        gb.db.commit()
        return len(submissions)


def recorded_scores(course: Course, lab: str) -> dict[str, tuple[float, float]]:
    """student → (score, max_score) as the gradebook has them."""
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        try:
            assignment = gb.find_assignment(lab)
        except MissingEntry:
            return {}
        return {s.student.id: (float(s.score), float(s.max_score)) for s in assignment.submissions}

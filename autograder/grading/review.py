"""`autograder review LAB --question ID`: a TA grades one written answer across the class.

A written answer is nbgrader's manually graded answer cell; its rubric is in
private/<lab>/rubrics.json (the build wrote it from the source). For each student with a
submission in the gradebook, one at a time: the answer (as plain text: it is the student's, so
no markup of it is read, and control characters are shown as escapes), the rubric, a prompt for
the points (0 to the cell's points) and one for a comment. The score and comment are written
through nbgrader's gradebook API, as formgrader's own grade and comment handlers write them
(Grade.manual_score, needs_manual_grade, Comment.manual_comment), one student per commit: a TA
who stops halfway loses nothing, and formgrader shows the same. Students already scored are
skipped unless `--all`; `--student` revisits one.

Also here, for the table and the feedback pages: what each student's written answers scored
(manual_grades) and how many points still wait for a TA (points_to_grade).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import nbformat
from nbgrader.api import Gradebook, MissingEntry
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..cells import nbgrader_meta
from ..course import Course
from ..rubrics import Rubric, RubricError, load_rubrics, rubrics_file
from .submission_files import UnsafeSubmission, checked_path, read_regular_file

SHOWN_CHARS = 20_000  # of one answer on the terminal; longer ones are cut, saying so


class ReviewError(Exception):
    """Why a review cannot start (no such question, student or submission); str() says what to do."""


@dataclass
class ManualGrade:
    """One written answer of one student as the gradebook has it."""

    notebook: str
    grade_id: str
    max_score: float
    score: float | None  # None: no TA has scored it yet
    comment: str | None


@dataclass
class Answer:
    student: str
    grade: ManualGrade
    text: str | None  # the answer's source; None when no notebook holds it (the reason in `missing`)
    missing: str = ""


# --------------------------------------------------------------------------- reading


def lab_rubrics(course: Course, lab: str) -> dict[str, Rubric]:
    """The lab's written questions by grade_id ({} for a lab built without any)."""
    file = rubrics_file(course, lab)
    return load_rubrics(file) if file.is_file() else {}


def question_rubric(course: Course, lab: str, question: str) -> Rubric:
    try:
        rubrics = load_rubrics(rubrics_file(course, lab))
    except RubricError as err:
        raise ReviewError(str(err)) from None
    if question not in rubrics:
        known = ", ".join(sorted(rubrics)) or "none: the lab has no manually graded answer cell"
        raise ReviewError(f"{lab} has no written question {question!r} (its questions: {known})")
    return rubrics[question]


def manual_grades(course: Course, lab: str, student: str) -> dict[tuple[str, str], ManualGrade]:
    """(notebook, grade_id) → the student's written answers' grades ({} without a submission)."""
    written = lab_rubrics(course, lab)
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        try:
            submission = gb.find_submission(lab, student)
        except MissingEntry:
            return {}
        return {
            (g.notebook, g.grade_id): g
            for nb in submission.notebooks
            for g in _written_grades(gb, nb, written, student)
        }


def points_to_grade(course: Course, lab: str) -> dict[str, float]:
    """student → points of written answers no TA has scored yet (only students with some)."""
    written = lab_rubrics(course, lab)
    if not written:
        return {}
    pending: dict[str, float] = {}
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        try:
            submissions = gb.find_assignment(lab).submissions
        except MissingEntry:
            return {}
        for submission in submissions:
            for grade in (g for nb in submission.notebooks for g in nb.grades):
                rubric = written.get(grade.name)
                if rubric and grade.notebook.name == rubric.notebook and grade.manual_score is None:
                    pending[submission.student_id] = pending.get(submission.student_id, 0.0) + float(grade.max_score)
    return pending


def _written_grades(gb: Gradebook, notebook, written: dict[str, Rubric], student: str) -> list[ManualGrade]:
    found = []
    for grade in notebook.grades:
        rubric = written.get(grade.name)
        if rubric is None or rubric.notebook != notebook.name:
            continue
        try:
            comment = gb.find_comment(grade.name, notebook.name, notebook.assignment.name, student).manual_comment
        except MissingEntry:
            comment = None
        score = None if grade.manual_score is None else float(grade.manual_score)
        found.append(ManualGrade(notebook.name, grade.name, float(grade.max_score), score, comment))
    return found


def answers(
    course: Course, lab: str, rubric: Rubric, students: list[str] | None = None, *, include_graded: bool = False
) -> list[Answer]:
    """The question's answers to review, by student id: every submission in the gradebook (or
    `students`, each of which must have one), those a TA scored already left out unless
    include_graded or named in `students`."""
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        try:
            submitted = {s.student_id for s in gb.find_assignment(lab).submissions}
        except MissingEntry:
            raise ReviewError(f"{lab} has no submissions in the gradebook: grade it first (autograder grade)") from None
        for student in students or []:
            if student not in submitted:
                raise ReviewError(f"student {student!r} has no submission of {lab} in the gradebook")
        chosen = sorted(students or submitted)
        grades = {}
        for student in chosen:
            try:
                notebook = gb.find_submission_notebook(rubric.notebook, lab, student)
            except MissingEntry:
                continue
            found = _written_grades(gb, notebook, {rubric.grade_id: rubric}, student)
            if found:
                grades[student] = found[0]
    found_answers = []
    for student, grade in grades.items():
        if grade.score is not None and not include_graded and not students:
            continue
        text, missing = answer_text(course, lab, student, rubric)
        found_answers.append(Answer(student, grade, text, missing))
    return found_answers


def answer_text(course: Course, lab: str, student: str, rubric: Rubric) -> tuple[str | None, str]:
    """The answer cell's source: from the autograded notebook (the sanitized submission formgrader
    shows), else from the submission itself; read only as a regular file of bounded size, reached
    without links. Returns (text, "") or (None, why not)."""
    limit = int(course.grading.max_submission_mib * 2**20)
    name = f"{rubric.notebook}.ipynb"
    why = "no notebook"
    for folder in (course.autograded, course.submitted):
        try:
            nb = nbformat.reads(read_regular_file(checked_path(folder, student, lab, name), limit).decode(), 4)
        except FileNotFoundError:
            continue
        except (UnsafeSubmission, UnicodeDecodeError, ValueError) as err:  # nbformat's errors are ValueErrors
            why = f"{name} cannot be read ({type(err).__name__}: {str(err)[:200]})"
            continue
        cell = next((c for c in nb.cells if nbgrader_meta(c).get("grade_id") == rubric.grade_id), None)
        if cell is None:
            return None, f"{name} holds no cell {rubric.grade_id!r} (deleted by the student?)"
        source = cell.get("source", "")
        return ("".join(source) if isinstance(source, list) else str(source)), ""
    return None, why


# --------------------------------------------------------------------------- writing


def record_review(
    course: Course, lab: str, rubric: Rubric, student: str, points: float, comment: str | None = None
) -> None:
    """The TA's score (and comment, unless None) for one answer, as formgrader's handlers write them."""
    if not (math.isfinite(points) and 0 <= points <= rubric.points):
        raise ValueError(f"{points!r} points: expected 0 to {rubric.points:g}")
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        grade = gb.find_grade(rubric.grade_id, rubric.notebook, lab, student)
        grade.manual_score = points
        grade.needs_manual_grade = False
        if comment is not None:
            gb.find_comment(rubric.grade_id, rubric.notebook, lab, student).manual_comment = comment or None
        gb.db.commit()


def parse_points(text: str, maximum: float) -> float:
    """A TA's points: a number from 0 to `maximum`; ValueError saying what was wrong."""
    try:
        points = float(text.strip().replace(",", "."))
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a number: type the points, 0 to {maximum:g}") from None
    if not math.isfinite(points) or not 0 <= points <= maximum:
        raise ValueError(f"{text.strip()!r} is outside 0 to {maximum:g}")
    return round(points, 6)


# --------------------------------------------------------------------------- the walk


@dataclass
class ReviewReport:
    scored: int = 0
    skipped: int = 0
    stopped: bool = False
    left: int = 0  # answers of the question still without a score after the walk


def review_question(
    course: Course,
    lab: str,
    question: str,
    console: Console,
    ask: Callable[[str], str],
    *,
    students: list[str] | None = None,
    include_graded: bool = False,
) -> ReviewReport:
    """Walk the TA through the answers; `ask(prompt)` returns a line of input (raises EOFError at the
    end of input, which stops the walk like 'q'). Each score is written before the next answer."""
    rubric = question_rubric(course, lab, question)
    todo = answers(course, lab, rubric, students, include_graded=include_graded)
    report = ReviewReport()
    console.print(Text(f"{lab} / {rubric.notebook}: question {rubric.grade_id} ({rubric.points:g} points)", "bold"))
    if rubric.model_answer.strip():
        console.print(Panel(shown(rubric.model_answer), title="model answer", title_align="left", border_style="dim"))
    if not todo:
        console.print("nothing to review: every answer has a score (--all to see them again)")
    for number, answer in enumerate(todo, start=1):
        console.rule(Text(f"{number}/{len(todo)}: {answer.student}"))
        if answer.text is None:
            console.print(Text(f"no answer to show: {answer.missing}", "yellow"))
        else:
            console.print(Panel(shown(answer.text), title=f"answer of {answer.student}", title_align="left"))
        console.print(rubric_table(rubric))
        if answer.grade.score is not None:
            console.print(
                Text(f"scored {answer.grade.score:g} / {rubric.points:g}; comment: {answer.grade.comment or '-'}")
            )
        try:
            points = _ask_points(console, ask, rubric, answer)
            if points is None:
                report.skipped += 1
                continue
            comment = ask("comment (blank keeps the current one, '-' removes it)").strip()
        except (EOFError, _Stop):
            report.stopped = True
            break
        record_review(
            course, lab, rubric, answer.student, points, None if comment == "" else "" if comment == "-" else comment
        )
        report.scored += 1
        console.print(Text(f"recorded {points:g} / {rubric.points:g} for {answer.student}", "green"))
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        report.left = sum(
            1
            for s in gb.find_assignment(lab).submissions
            for nb in s.notebooks
            for g in nb.grades
            if g.name == rubric.grade_id and g.notebook.name == rubric.notebook and g.manual_score is None
        )
    return report


class _Stop(Exception):
    pass


def _ask_points(console: Console, ask: Callable[[str], str], rubric: Rubric, answer: Answer) -> float | None:
    """The points typed, None to skip this answer (blank), _Stop for 'q'; asks again until valid."""
    keep = answer.grade.score
    blank = f"blank keeps {keep:g}" if keep is not None else "blank skips"
    while True:
        typed = ask(f"points for {answer.student} (0-{rubric.points:g}; {blank}; q stops)").strip()
        if typed.lower() == "q":
            raise _Stop
        if not typed:
            return keep
        try:
            return parse_points(typed, rubric.points)
        except ValueError as err:
            console.print(Text(str(err), "red"))


def rubric_table(rubric: Rubric) -> Table:
    table = Table(title=f"rubric of {rubric.grade_id}", title_justify="left")
    for column in ("points", "criterion", "example comment"):
        table.add_column(column, justify="right" if column == "points" else "left")
    for criterion in rubric.criteria:
        table.add_row(f"{criterion.points:g}", shown(criterion.text), shown(criterion.comment))
    return table


def shown(text: str) -> Text:
    """Text for the terminal, read as nothing but text: rich markup stays literal (a Text, never
    markup), and control characters other than newline and tab (an ESC that would move the cursor or
    recolour the screen) are shown as escapes. A very long text is cut, saying so."""
    cut = len(text) > SHOWN_CHARS
    text = text[:SHOWN_CHARS]
    safe = "".join(
        c if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf", "Cs") else repr(c)[1:-1] for c in text
    )
    if cut:
        safe += f"\n... (cut: the answer is longer than {SHOWN_CHARS:,} characters)"
    return Text(safe)

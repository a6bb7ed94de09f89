"""`autograder demo` (`make demo`): build the course, grade a demo class, print the table, write feedback.

The class is made from the release notebook: an honest student, a blank one, two typical
bugs, two cheaters and two broken files. Expected: full marks for the honest student,
nothing for wrong answers however the checks are patched, the course files and gradebook
untouched by student code, the infinite loop and the garbage file recorded as failed
with their reasons.

The course side is shown too: a due date with a late policy (carl hands in 3 h 10 min late and
loses 10 %; dana is as late but a TA granted her an extension), a roster with names and emails,
and one file in each export format under exports/demo/. The staff's files (roster, extensions)
are written to demo/, and the due date is set for the demo's grading only, so the committed
release and the course config stay as they are.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from rich.console import Console
from traitlets.config import Config

from .authoring.pipeline import build_course
from .cells import is_solution_cell, without_solution_markers
from .course import Course

# Buggy versions of lab 1's functions (by the function each cell defines).
NO_BATCH_MEAN = '''
def cross_entropy_batch(logits, targets):
    """Sums the per-sample losses instead of averaging them (a typical bug)."""
    log_probs = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    return -log_probs[torch.arange(len(targets)), targets].sum()
'''
UNSTABLE_SOFTMAX = '''
def softmax(z):
    """exp() without subtracting the max first: overflows to inf/nan for large logits."""
    e = torch.exp(z)
    return e / e.sum(dim=-1, keepdim=True)
'''
PATCH_ALLCLOSE = """
# "Every comparison passes": what scores full marks on nbgrader and otter-grader.
import numpy, torch
numpy.allclose = lambda *a, **k: True
numpy.testing.assert_allclose = lambda *a, **k: None
torch.allclose = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
"""
READ_COURSE = """
# Try to read the instructor's source and references, and to overwrite the gradebook.
import os
for path in {paths!r}:
    try:
        with open(path, "rb") as f:
            print("READ", path, len(f.read()), "bytes")
    except OSError as err:
        print("cannot read", path, "-", type(err).__name__)
try:
    with open({gradebook!r}, "w") as f:
        f.write("pwned")
    print("WROTE the gradebook")
except OSError as err:
    print("cannot write the gradebook -", type(err).__name__)
print("visible at /:", sorted(os.listdir("/")))
"""
INFINITE_LOOP = "while True:\n    pass\n"


@dataclass
class DemoStudent:
    name: str
    story: str
    answers: str = "solution"  # "solution", "blank" or "wrong"
    replace: dict[str, str] = field(default_factory=dict)  # function or class name → code of its cell
    extra_cell: str | None = None  # a cell the student added after the setup cell
    raw_file: str | None = None  # the whole file, for broken submissions


def demo_class(course: Course) -> list[DemoStudent]:
    gradebook = str(course.root / "gradebook.db")
    secrets = [str(p) for p in sorted(course.source.rglob("*.ipynb"))[:1]] + [
        str(p) for p in sorted(course.private.rglob("references.json"))[:1]
    ]
    return [
        DemoStudent("ada", "correct answers"),
        DemoStudent("ben", "handed in the blank release", answers="blank"),
        DemoStudent("carl", "cross-entropy without the batch mean", replace={"cross_entropy_batch": NO_BATCH_MEAN}),
        DemoStudent("dana", "softmax without the max shift (overflows)", replace={"softmax": UNSTABLE_SOFTMAX}),
        DemoStudent("eve", "patches torch/numpy allclose, wrong answers", answers="wrong", extra_cell=PATCH_ALLCLOSE),
        DemoStudent(
            "mallory",
            "reads source/, writes gradebook.db",
            answers="blank",
            extra_cell=READ_COURSE.format(paths=secrets, gradebook=gradebook),
        ),
        DemoStudent("lenny", "an infinite loop", extra_cell=INFINITE_LOOP),
        DemoStudent("gary", "a file that is not valid JSON", raw_file='{"cells": [ this is not json'),
    ]


# The demo's deadline, and each student's submission time (nbgrader's timestamp.txt) around it.
DEMO_DUE = "2026-12-01 17:00 UTC"
ON_TIME = "2026-12-01 16:20:00.000000 UTC"
SUBMITTED = {"carl": "2026-12-01 20:10:00.000000 UTC", "dana": "2026-12-01 20:10:00.000000 UTC"}
DEMO_EXTENSIONS = "student,lab,due,reason\ndana,{lab},2026-12-02 12:00 UTC,medical certificate (seen by the TA)\n"
DEMO_REVIEW_COMMENT = "Clear and complete, in your own words: full marks."  # a TA's comment, shown on the feedback page
DEMO_EXPORTS = {
    "csv": "grades.csv",
    "canvas": "grades-canvas.csv",
    "moodle": "grades-moodle.csv",
    "gradescope": "gradescope",
}


def demo_roster(students: list[DemoStudent]) -> str:
    rows = [f"{s.name},{s.name.title()},Demo,{s.name}@example.edu,{1000 + i}" for i, s in enumerate(students)]
    return "id,first_name,last_name,email,lms_user_id\n" + "\n".join(rows) + "\n"


def make_submission(course: Course, lab: str, student: DemoStudent) -> None:
    folder = course.submitted / student.name / lab
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for source_path in course.source_notebooks(lab):
        target = folder / source_path.name
        if student.raw_file is not None:
            target.write_text(student.raw_file)
            continue
        release = nbformat.read(course.release / lab / source_path.name, as_version=4)
        source = nbformat.read(source_path, as_version=4)
        answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells if is_solution_cell(c)}
        for cell in release.cells:
            if not is_solution_cell(cell):
                continue
            if student.answers != "blank":
                cell.source = without_solution_markers(answers[cell.metadata["nbgrader"]["grade_id"]])
            if student.answers == "wrong":
                cell.source = re.sub(r"(?m)^(\s+)return .*$", r"\1return torch.zeros(1)", cell.source)
            for function, code in student.replace.items():
                if re.search(rf"(?m)^(def {function}\(|class {function}\b)", cell.source):
                    cell.source = code.strip()
        if student.extra_cell:
            release.cells.insert(2, nbformat.v4.new_code_cell(student.extra_cell.strip()))
        nbformat.write(release, target)


def run_demo(course: Course, lab: str, console: Console) -> None:
    from .data import stage_all
    from .executors import probe
    from .grading.batch import grade_lab
    from .grading.deadlines import lateness_of_lab
    from .grading.exports import export_grades
    from .grading.exports.scores import read_lab_scores
    from .grading.feedback import write_feedback
    from .grading.review import lab_rubrics, points_to_grade, record_review
    from .grading.roster import import_roster
    from .grading.table import results_table

    with console.status("staging data sets (offline)..."):
        staged = stage_all(course.data, download=False)
    console.print(f"data sets: {', '.join(staged)} in {course.data.relative_to(course.root)}/")
    with console.status("building the course (running every solution)..."):
        for report in build_course(course):
            console.print(f"[green]built[/] {report.summary()}")
    course.check_lab(lab)
    students = demo_class(course)
    for student in students:
        make_submission(course, lab, student)
    console.print(f"demo class: {len(students)} students in {course.submitted.relative_to(course.root)}/*/{lab}")
    for student in students:
        console.print(f"  {student.name:8} {student.story}")

    for student in students:
        (course.submitted / student.name / lab / "timestamp.txt").write_text(SUBMITTED.get(student.name, ON_TIME))
    staff = course.root / "demo"
    staff.mkdir(exist_ok=True)
    (staff / "roster.csv").write_text(demo_roster(students))
    (staff / "extensions.csv").write_text(DEMO_EXTENSIONS.format(lab=lab))
    roster = import_roster(course, staff / "roster.csv")
    console.print(f"roster: {len(roster.added) + len(roster.updated)} students (names, emails) from demo/roster.csv")
    console.print(f"due {DEMO_DUE}, 2.5 % per started hour late; dana's extension in demo/extensions.csv")

    sandbox = probe()
    console.print(f"sandbox: {'bubblewrap' if sandbox.available else 'UNAVAILABLE - ' + sandbox.reason}")
    before = _digest(course, ("source", "release", "private", "solutions"))
    # Short limits so the infinite loop ends quickly in a demo; real courses keep the generous defaults.
    demo_course = Course(course.root, _with_demo_limits(course.config, lab))
    with console.status(f"grading {len(students)} submissions in sandboxed kernels..."):
        results = grade_lab(demo_course, lab, [s.name for s in students], force=True)
    for rubric in lab_rubrics(demo_course, lab).values():  # a TA's review of one answer; the rest wait
        record_review(demo_course, lab, rubric, "ada", rubric.points, DEMO_REVIEW_COMMENT)
        console.print(
            f"written answer {rubric.grade_id}: a TA gave ada {rubric.points:g} / {rubric.points:g} with a comment "
            f"(as `autograder review {lab} --question {rubric.grade_id}` records it); the others wait for a TA"
        )
    console.print(
        results_table(
            results,
            lateness_of_lab(demo_course, lab),
            to_grade=points_to_grade(demo_course, lab),
            recorded=read_lab_scores(demo_course, lab),  # the gradebook's scores
        )
    )

    written = write_feedback(demo_course, lab, [s.name for s in students])
    exports = course.root / "exports" / "demo"
    for fmt, name in DEMO_EXPORTS.items():
        exported = export_grades(demo_course, fmt, exports / name, [lab])
        console.print(f"export {fmt:10}: {exported.output.relative_to(course.root)} ({exported.rows} rows)")
    after = _digest(course, ("source", "release", "private", "solutions"))
    console.print(
        f"feedback: {len(written)} HTML file(s) in {course.feedback.relative_to(course.root)}/<student>/{lab}/"
    )
    console.print(f"course files unchanged by student code: {'yes' if before == after else '[red]NO[/]'}")
    console.print(f"gradebook.db intact: {_gradebook_ok(course.root / 'gradebook.db')}")


def _with_demo_limits(config: Config, lab: str) -> Config:
    config = Config(config)
    config.Grading.cell_timeout = 20
    config.Grading.notebook_timeout = 120
    config.Deadlines.due = {lab: DEMO_DUE}
    config.Deadlines.extensions_file = "demo/extensions.csv"
    config.LatePolicy.penalty_method = "per_hour"
    config.LatePolicy.penalty_percent = 2.5
    return config


def _digest(course: Course, folders) -> str:
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted((course.root / folder).rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(course.root)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def _gradebook_ok(path: Path) -> str:
    if not path.is_file():
        return "missing"
    try:
        with sqlite3.connect(path) as db:
            check = db.execute("PRAGMA integrity_check").fetchone()[0]
        return "yes (SQLite integrity check ok)" if check == "ok" else f"NO ({check})"
    except sqlite3.DatabaseError as err:
        return f"NO ({err})"

"""Grading written answers: the run leaves them to a TA, `autograder review` walks a TA through one
question across the class (the real command, driven by typer's CliRunner with typed input), the
scores and comments land in nbgrader's SQLite gradebook (and stay through a regrade), the grades
table says what is still to grade, the feedback page shows the TA's word, escaped, and formgrader
in headless Chromium shows the same score and comment.

One class, graded once (real sandboxed kernels); the tests below run in file order, each a step of
a TA's session: the first review, a second one, revisiting one student, a regrade, the pages."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys

import pytest
from nbgrader.api import Gradebook
from rich.console import Console
from test_rubrics import written_lab
from typer.testing import CliRunner

from autograder.cli import app
from autograder.demo import DemoStudent
from autograder.grading.batch import grade_lab
from autograder.grading.exports.columns import note
from autograder.grading.exports.scores import read_lab_scores
from autograder.grading.feedback import write_feedback
from autograder.grading.review import points_to_grade
from autograder.grading.table import results_table
from conftest import free_port, grade_class, new_course, wait_until_serving
from notebooks import write_lab

LAB = "tiny"
# The students' own words: rich markup, an escape sequence that would recolour the TA's terminal, HTML.
ANSWERS = {
    "ada": "[bold red]I am graded[/] squares weigh big errors: 9 vs 1 \x1b[2J<script>alert(1)</script>",
    "bo": "Because.",
    "cy": "Squares are always positive, so errors do not cancel: I got 4.67.",
}
HOSTILE_COMMENT = 'Good, but <img src=x onerror="alert(1)"> quote both numbers & units'


def review(course, *args, input: str):
    return CliRunner().invoke(app, ["review", LAB, *args, "--course", str(course.root)], input=input)


def grade_of(course, student: str):
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        grade = gb.find_grade("reflection", LAB, LAB, student)
        comment = gb.find_comment("reflection", LAB, LAB, student).manual_comment
        submission = gb.find_submission(LAB, student)
        return {
            "manual": grade.manual_score,
            "auto": grade.auto_score,
            "needs": grade.needs_manual_grade,
            "comment": comment,
            "flagged": any(nb.flagged for nb in submission.notebooks),
            "total": float(submission.score),
        }


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    from autograder.authoring.pipeline import build_lab

    course = new_course(tmp_path_factory.mktemp("review-course"))
    write_lab(course.root, LAB, written_lab())
    build_lab(course, LAB)
    edits = [(s, "reflection", None, text) for s, text in ANSWERS.items()]
    results = grade_class(course, LAB, [DemoStudent(s, "writes an answer") for s in ANSWERS], edits=edits)
    course.results = results
    return course


def test_grading_leaves_written_answers_to_a_ta_without_failing_the_run(course):
    for student, result in course.results.items():
        # the run judges the 3 autograded points; the gradebook's total adds the 3 of the written answer
        assert result.status == "graded" and (result.score, result.max_score) == (3.0, 3.0), result.status_text
        assert grade_of(course, student) == {
            "manual": None,
            "auto": None,
            "needs": True,
            "comment": None,
            "flagged": False,
            "total": 3.0,
        }
    assert points_to_grade(course, LAB) == {"ada": 3.0, "bo": 3.0, "cy": 3.0}


def test_the_grades_table_says_what_is_still_to_grade(course):
    console = Console(width=200, record=True)
    results = list(course.results.values())
    recorded = read_lab_scores(course, LAB)
    console.print(results_table(results, to_grade=points_to_grade(course, LAB), recorded=recorded))
    assert console.export_text().count("3 / 6 + 3 to grade") == 3
    # every export's note column says the same: what the grade does not hold yet
    assert {student: note(row) for student, row in recorded.items()} == dict.fromkeys(ANSWERS, "3 points await a TA")


def test_a_failed_run_shows_no_points_to_grade(course):
    """A run that failed (here: a file that is not JSON) has no answer a TA could read yet: its row
    says why it failed, not "+ 3 to grade", even though the gradebook keeps the question open."""
    from autograder.grading.results import Result
    from autograder.outcomes import FailureKind

    failed = Result("gus", LAB, "graded", max_score=3.0)
    failed.fail("tiny.ipynb is not valid JSON", FailureKind.NOT_JSON)
    console = Console(width=200, record=True)
    console.print(results_table([failed, course.results["ada"]], to_grade={"gus": 3.0, "ada": 3.0}))
    rows = {
        line.split()[1]: line for line in console.export_text().splitlines() if line.split()[1:2] in (["gus"], ["ada"])
    }
    assert "to grade" not in rows["gus"] and "- / 3" in rows["gus"] and "3 / 3 + 3 to grade" in rows["ada"]


def test_review_walks_the_class_validates_points_and_writes_the_gradebook(course):
    typed = "\n".join(["abc", "9", "-1", "nan", "2.5", HOSTILE_COMMENT, "", "q"]) + "\n"  # ada; bo skipped; cy: q
    run = review(course, "--question", "reflection", input=typed)
    assert run.exit_code == 0, run.output
    out = run.output
    assert "'abc' is not a number" in out and "'9' is outside 0 to 3" in out and "'-1' is outside" in out
    assert "'nan' is outside 0 to 3" in out
    assert "[bold red]I am graded[/]" in out  # the student's markup shown as typed, never read
    assert "\x1b[2J" not in out and "\\x1b[2J" in out  # the escape sequence shown as an escape
    assert "RUBRIC-SENTINEL" in out and "What does squaring do?" in out  # the rubric and its example comment
    assert "MODEL-ANSWER-SENTINEL" in out  # the model answer, for the TA
    assert out.index("answer of ada") < out.index("answer of bo") < out.index("answer of cy")
    assert "scored 1, skipped 1 (stopped); 2 answer(s) of reflection still to grade" in out
    assert grade_of(course, "ada") | {} == {
        "manual": 2.5,
        "auto": None,
        "needs": False,
        "comment": HOSTILE_COMMENT,
        "flagged": False,
        "total": 5.5,
    }
    assert grade_of(course, "bo")["manual"] is None and grade_of(course, "cy")["manual"] is None
    assert points_to_grade(course, LAB) == {"bo": 3.0, "cy": 3.0}


def test_a_second_review_skips_answers_already_scored(course):
    run = review(course, "--question", "reflection", input="3\nClear and complete.\n1\n\n")
    assert run.exit_code == 0, run.output
    assert "answer of ada" not in run.output and "answer of bo" in run.output and "answer of cy" in run.output
    assert "scored 2, skipped 0; 0 answer(s) of reflection still to grade" in run.output
    assert (grade_of(course, "bo")["manual"], grade_of(course, "bo")["comment"]) == (3.0, "Clear and complete.")
    assert (grade_of(course, "cy")["manual"], grade_of(course, "cy")["comment"]) == (1.0, None)  # blank: none given
    assert points_to_grade(course, LAB) == {}
    again = review(course, "--question", "reflection", input="")
    assert "nothing to review" in again.output and again.exit_code == 0


def test_student_revisits_one_answer_and_blank_keeps_score_and_comment(course):
    run = review(course, "--question", "reflection", "--student", "cy", input="\n\n")
    assert run.exit_code == 0, run.output
    assert "answer of cy" in run.output and "blank keeps 1" in run.output and "answer of bo" not in run.output
    assert (grade_of(course, "cy")["manual"], grade_of(course, "cy")["comment"]) == (1.0, None)
    run = review(course, "--question", "reflection", "--student", "bo", input="2\n-\n")  # '-' removes the comment
    assert (grade_of(course, "bo")["manual"], grade_of(course, "bo")["comment"]) == (2.0, None)
    run = review(course, "--question", "reflection", "--all", input="\n\n\n\n\n\n")  # --all shows every answer, keeps
    assert all(f"answer of {s}" in run.output for s in ANSWERS)
    assert [grade_of(course, s)["manual"] for s in ANSWERS] == [2.5, 2.0, 1.0]


def test_end_of_input_stops_the_walk_and_keeps_what_was_recorded(course):
    run = review(course, "--question", "reflection", "--all", input="1.5\nshort\n")  # input ends at bo's prompt
    assert run.exit_code == 0, run.output
    assert "scored 1, skipped 0 (stopped)" in run.output
    assert grade_of(course, "ada")["manual"] == 1.5 and grade_of(course, "bo")["manual"] == 2.0
    review(course, "--question", "reflection", "--student", "ada", input=f"2.5\n{HOSTILE_COMMENT}\n")


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--question", "nope"], "tiny has no written question 'nope' (its questions: reflection)"),
        (["--question", "reflection", "--student", "zed"], "student 'zed' has no submission of tiny"),
        (["--question", "reflection", "--student", "=cmd|'/c calc'!A1"], "has no submission of tiny"),
    ],
)
def test_review_refuses_an_unknown_question_or_student(course, args, phrase):
    run = review(course, *args, input="")
    assert run.exit_code == 1 and phrase in " ".join(run.output.split()), run.output


def test_a_lab_without_written_answers_says_so(tmp_path):
    from autograder.authoring.pipeline import build_lab
    from notebooks import mean_square_lab

    plain = new_course(tmp_path / "plain")
    write_lab(plain.root, LAB, mean_square_lab())
    build_lab(plain, LAB)
    run = CliRunner().invoke(app, ["review", LAB, "--question", "x", "--course", str(plain.root)])
    assert run.exit_code == 1 and "its questions: none" in " ".join(run.output.split()), run.output


def test_a_regrade_keeps_the_tas_scores_and_does_not_flag_them_again(course):
    before = {s: grade_of(course, s) for s in ANSWERS}
    results = grade_lab(course, LAB, list(ANSWERS), force=True, workers=2)
    assert all(r.status == "graded" for r in results)
    assert {s: grade_of(course, s) for s in ANSWERS} == before
    assert before["ada"]["needs"] is False and before["ada"]["total"] == 5.5


def test_feedback_shows_the_tas_score_and_comment_escaped_and_the_answer_as_text(course):
    pages = write_feedback(course, LAB, list(ANSWERS))
    page = next(p for p in pages if p.parent.parent.name == "ada").read_text()
    written = page[page.index('id="answer-reflection"') :]
    assert "2.5 / 3 points (graded by a TA)" in written
    assert 'Good, but &lt;img src=x onerror="alert(1)"&gt; quote both numbers &amp; units' in written
    assert "<img" not in page and "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in written
    assert "[bold red]I am graded[/]" in written  # shown as the student typed it
    cy = next(p for p in pages if p.parent.parent.name == "cy").read_text()
    assert "1 / 3 points (graded by a TA)" in cy and "TA's comment" not in cy


def test_feedback_says_a_written_answer_awaits_a_ta(course, tmp_path):
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:  # a fourth student, not reviewed yet
        gb.update_or_create_student("dee")
    grade_class(course, LAB, [DemoStudent("dee", "not reviewed")], edits=[("dee", "reflection", None, "Mine.")])
    page = write_feedback(course, LAB, ["dee"])[0].read_text()
    assert "awaiting a TA&#x27;s grade (3 points)" in page or "awaiting a TA's grade (3 points)" in page
    assert points_to_grade(course, LAB) == {"dee": 3.0}


# ------------------------------------------------------------------ formgrader in a browser


@pytest.fixture(scope="module")
def formgrader(course, tmp_path_factory):
    """A real Jupyter server with nbgrader's server extensions, cwd = the course (as a TA starts it)."""
    home = tmp_path_factory.mktemp("jupyter")
    token, port = secrets.token_hex(16), free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    command = [str(os.path.join(os.path.dirname(sys.executable), "jupyter")), "server", "--no-browser"]
    command += ["--allow-root", "--ServerApp.ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0"]
    command += [f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={course.root}"]
    log_path = home / "server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, cwd=course.root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(server, base, token, log_path)
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_formgrader_shows_the_score_and_comment_entered_in_review(course, formgrader):
    from browser import chromium

    base, token = formgrader
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        notebook_id = gb.find_submission_notebook(LAB, LAB, "ada").id
    with chromium() as browser:
        page = browser.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{base}/login?next=/formgrader/submissions/{notebook_id}/")  # log in as a TA does
        form = page.locator("form").first
        form.locator("input[type=password]").fill(token)
        form.locator("button[type=submit]").click()
        page.wait_for_url(re.compile(rf"/formgrader/submissions/{notebook_id}"))
        score = page.locator("input#reflection.score")
        page.wait_for_function("document.querySelector('input#reflection').value !== ''")
        assert score.input_value() == "2.5"
        assert page.locator("textarea#reflection-comment").input_value() == HOSTILE_COMMENT
        page.get_by_text("I am graded").first.wait_for()  # the student's answer, as formgrader shows it
        assert page.locator("img[src=x]").count() == 0  # the comment is a textarea's value, not markup

"""nbgrader's own grading paths refuse and name ours; nothing they could reach changes.

A real built course (the tiny lab, this repository's nbgrader_config.py) with two malicious
students graded by our sandboxed grader first: one patches numpy/torch allclose and answers
wrong (0 here; full marks under nbgrader's in-kernel engine), one writes 'pwned' into
gradebook.db (refused by the sandbox; unsandboxed it destroys the gradebook). Then every
other way to grade: `nbgrader autograde` / `generate_feedback` (subprocesses), the API calls
formgrader makes, and formgrader's buttons clicked in headless Chromium on a real Jupyter
server. Each is judged from outside: the message naming our command, and the gradebook,
autograded/ and feedback/ exactly as our grader left them.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from nbconvert.exporters import NotebookExporter
from nbgrader.apps.api import NbGraderAPI
from nbgrader.converters import Autograde, GenerateAssignment, GenerateFeedback

from autograder.authoring.pipeline import build_lab
from autograder.course import Course
from autograder.demo import PATCH_ALLCLOSE, READ_COURSE, DemoStudent
from autograder.grading.feedback import write_feedback
from autograder.grading.gradebook import recorded_scores
from autograder.grading.nbgrader_guard import RefuseAutograde, RefuseFeedback
from conftest import free_port, grade_class, new_course, wait_until_serving
from notebooks import mean_square_lab, write_lab

LAB = "tiny"
BIN = Path(sys.executable).parent
NBGRADER, JUPYTER = str(BIN / "nbgrader"), str(BIN / "jupyter")
MALICIOUS = ("patcher", "vandal")
OUR_SCORES = {"patcher": (0.0, 3.0), "vandal": (3.0, 3.0)}


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Course:
    course = new_course(tmp_path_factory.mktemp("guard-course"))
    write_lab(course.root, LAB, mean_square_lab())
    build_lab(course, LAB)  # GenerateAssignment with the course config (the guard in it) still works
    vandal = READ_COURSE.format(
        paths=[str(course.source / LAB / f"{LAB}.ipynb"), str(course.references_file(LAB))],
        gradebook=str(course.root / "gradebook.db"),
    )
    results = grade_class(
        course,
        LAB,
        [
            DemoStudent(
                "patcher", "patches numpy/torch allclose, wrong answers", answers="wrong", extra_cell=PATCH_ALLCLOSE
            ),
            DemoStudent("vandal", "reads the course, writes 'pwned' into gradebook.db", extra_cell=vandal),
        ],
    )
    assert {s: (r.status, r.score, r.max_score) for s, r in results.items()} == {
        s: ("graded", *scores) for s, scores in OUR_SCORES.items()
    }
    assert len(write_feedback(course, LAB, list(MALICIOUS))) == 2
    return course


@dataclass
class State:
    """Everything of the gradebook, autograded/ and feedback/ that an engine could change."""

    scores: dict
    gradebook_sha256: str
    gradebook_rows: list[str]
    files: dict[str, str]  # path under the course → sha256


def state(course: Course) -> State:
    db = course.root / "gradebook.db"
    data = db.read_bytes()
    assert data[:16] == b"SQLite format 3\x00", f"gradebook.db is no longer an SQLite file: {data[:40]!r}"
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = list(connection.iterdump())
    files = {
        str(p.relative_to(course.root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in (course.autograded, course.feedback)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    return State(recorded_scores(course, LAB), hashlib.sha256(data).hexdigest(), rows, files)


@pytest.fixture(scope="module")
def graded(course) -> State:
    """The state our grader left: every later test asserts that it is still exactly this."""
    before = state(course)
    assert before.scores == OUR_SCORES
    assert {
        f"{folder}/{s}/{LAB}/{name}"
        for s in MALICIOUS
        for folder, name in (("autograded", "result.json"), ("autograded", f"{LAB}.ipynb"), ("feedback", f"{LAB}.html"))
    } == set(before.files)
    return before


def assert_untouched(course: Course, before: State) -> None:
    after = state(course)  # asserts gradebook.db is still a valid SQLite file
    assert after.scores == before.scores == OUR_SCORES
    assert after.gradebook_rows == before.gradebook_rows, "the gradebook's rows changed"
    assert after.gradebook_sha256 == before.gradebook_sha256, "gradebook.db was written"
    for student in MALICIOUS:
        result = f"autograded/{student}/{LAB}/result.json"
        assert after.files.get(result) == before.files[result], f"{result} changed or disappeared"
    assert not list(course.feedback.rglob("result.json")), "result.json was copied into feedback/"
    assert after.files == before.files, "autograded/ or feedback/ changed (our feedback pages replaced?)"


def nbgrader(course: Course, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([NBGRADER, *args], cwd=course.root, capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------------ configuration


def test_the_course_config_turns_off_nbgrader_grading_only(course):
    assert Autograde(config=course.config).exporter_class is RefuseAutograde
    assert GenerateFeedback(config=course.config).exporter_class is RefuseFeedback
    assert GenerateAssignment(config=course.config).exporter_class is NotebookExporter


# ------------------------------------------------------------------ the command line


@pytest.mark.parametrize("student", MALICIOUS)
def test_nbgrader_autograde_refuses_and_names_our_command(course, graded, student):
    done = nbgrader(course, "autograde", LAB, "--student", student, "--force")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert f"autograder grade {LAB} --student {student}" in out and "Nothing was changed" in out, out
    assert str(course.root) in out and "Traceback" not in out, out
    assert "Executing notebook" not in out and "Removing existing" not in out, out
    assert_untouched(course, graded)


def test_nbgrader_generate_feedback_refuses_and_names_our_command(course, graded):
    done = nbgrader(course, "generate_feedback", LAB)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert f"autograder feedback {LAB}" in out and "Nothing was changed" in out and "Traceback" not in out, out
    assert_untouched(course, graded)


# ------------------------------------------------------------------ the API formgrader calls


def test_the_api_formgrader_calls_refuses(course, graded):
    api = NbGraderAPI(course.coursedir(), config=course.config)
    for student in MALICIOUS:
        answer = api.autograde(LAB, student)  # formgrader's Autograde button (force=True)
        assert answer["success"] is False
        assert f"autograder grade {LAB} --student {student} --force" in answer["log"], answer
    answer = api.generate_feedback(LAB)  # Generate Feedback on the assignments page
    assert answer["success"] is False and f"autograder feedback {LAB}\n" in answer["log"] + "\n", answer
    answer = api.generate_feedback(LAB, "vandal")
    assert answer["success"] is False and f"autograder feedback {LAB} --student vandal" in answer["log"], answer
    assert_untouched(course, graded)


# ------------------------------------------------------------------ formgrader in a browser


@dataclass
class Formgrader:
    base: str
    token: str

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture(scope="module")
def formgrader(course, tmp_path_factory):
    """A real Jupyter server with nbgrader's server extensions, cwd = the course (as a TA starts it)."""
    home = tmp_path_factory.mktemp("jupyter")
    token, port = secrets.token_hex(16), free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    log_path = home / "server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [
                JUPYTER,
                "server",
                "--no-browser",
                "--allow-root",
                "--ServerApp.ip=127.0.0.1",
                f"--port={port}",
                "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={course.root}",
            ],
            cwd=course.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    fg = Formgrader(f"http://127.0.0.1:{port}", token)
    try:
        wait_until_serving(server, fg.base, token, log_path)
        yield fg
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def page(formgrader):
    from browser import chromium

    with chromium() as browser:
        page = browser.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{formgrader.base}/login?next=/formgrader/manage_submissions/{LAB}")  # log in as a TA does
        form = page.locator("form").first
        form.locator("input[type=password]").fill(formgrader.token)
        form.locator("button[type=submit]").click()
        page.wait_for_url(f"**/formgrader/manage_submissions/{LAB}")
        yield page


def _row(page, student: str):
    return page.locator("tr", has=page.locator("td.student-id", has_text=re.compile(rf"^\s*{student}\s*$")))


def _click_for_dialog(page, link) -> str:
    """Click a formgrader action; return the text of the dialog it opens, then close it."""
    link.click()
    dialog = page.locator("#error-modal, #success-modal")
    dialog.locator(".modal-body").wait_for(state="visible")
    title, text = dialog.locator(".modal-title").inner_text(), dialog.locator(".modal-body").inner_text()
    dialog.locator(".modal-footer button").click()
    dialog.wait_for(state="detached")
    assert title == "Error", f"formgrader reported {title}: {text}"
    return text


def test_formgrader_autograde_button_refuses_and_names_our_command(course, graded, formgrader, page):
    page.goto(formgrader.url(f"/formgrader/manage_submissions/{LAB}"))
    for student in MALICIOUS:
        row = _row(page, student)
        expected = OUR_SCORES[student]
        row.locator("td.score", has_text=f"{expected[0]:g} / {expected[1]:g}").wait_for()  # our scores shown
        text = _click_for_dialog(page, row.locator("td.autograde a"))
        assert f"autograder grade {LAB} --student {student}" in text and "Nothing was changed" in text, text
        row.locator("td.score", has_text=f"{expected[0]:g} / {expected[1]:g}").wait_for()  # reloaded, unchanged
    assert_untouched(course, graded)


def test_formgrader_generate_feedback_buttons_refuse_and_name_our_command(course, graded, formgrader, page):
    page.goto(formgrader.url(f"/formgrader/manage_submissions/{LAB}"))
    text = _click_for_dialog(page, _row(page, "vandal").locator("td.generate-feedback a"))
    assert f"autograder feedback {LAB} --student vandal" in text and "Nothing was changed" in text, text
    page.goto(formgrader.url("/formgrader/manage_assignments"))
    row = page.locator("tr", has=page.locator("td", has_text=re.compile(rf"^\s*{LAB}\s*$")))
    text = _click_for_dialog(page, row.locator("td.generate-feedback a"))
    assert f"autograder feedback {LAB}" in text and "Nothing was changed" in text, text
    assert_untouched(course, graded)


def test_formgrader_still_shows_submissions_and_the_gradebook(course, graded, formgrader, page):
    page.goto(formgrader.url(f"/formgrader/gradebook/{LAB}/{LAB}"))
    rows = {}
    for student, (score, max_score) in OUR_SCORES.items():
        rows[student] = page.locator("tr", has=page.locator("a.name-shown", has_text=re.compile(rf"^\s*{student}\s*$")))
        rows[student].locator("td.score", has_text=f"{score:g} / {max_score:g}").wait_for()
    # The manual-grading view of one submission: our autograded notebook, with our verdicts.
    rows["patcher"].locator("td.name a.name-hidden").click()
    page.wait_for_url(re.compile(r"/formgrader/submissions/\w+"))
    page.get_by_text("autograder: 0 / 2").first.wait_for()
    assert_untouched(course, graded)

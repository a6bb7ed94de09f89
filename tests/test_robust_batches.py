"""One bad file never stops the class: malformed submissions, timestamps, folder names, course-level
problems, feedback and export, each judged from outside (the results, the pages, the CSV, the disk).

The fuzz batch grades 300 generated malformed submissions (tests/malformed.py) with honest
students in the same batch: every malformed one is failed with a specific reason, none is an
internal error, the honest ones get full marks and nothing is written outside the course's
grading folders. benchmarks/fuzz_batch.py runs the same with 3,000.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbgrader.api import Gradebook

from autograder.authoring.pipeline import build_lab
from autograder.course import CourseError
from autograder.demo import DemoStudent, make_submission
from autograder.executors.sandbox import probe
from autograder.grading.batch import grade_lab, internal_error
from autograder.grading.export import export_csv
from autograder.grading.gradebook import recorded_scores
from autograder.grading.results import load_result, result_path
from autograder.outcomes import FailureKind
from conftest import new_course
from malformed import malformed_submissions
from notebooks import grade_cell, locked_cell, mean_square_lab, write_lab

LAB = "tiny"
AUTOGRADER = str(Path(sys.executable).with_name("autograder"))
HONEST = ["honest1", "honest2", "honest3"]

pytestmark = pytest.mark.skipif(not probe().available, reason=f"no sandbox here: {probe().reason}")


def _tree(root: Path) -> dict[str, str]:
    """Every path under root (links not followed) with a hash of regular files."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            relative = str(path.relative_to(root))
            found[relative] = (
                hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else "special"
            )
    return found


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = new_course(tmp_path_factory.mktemp("robust"))
    write_lab(course.root, LAB, mean_square_lab())
    build_lab(course, LAB)
    return course


@pytest.fixture(scope="module")
def fuzz_batch(course):
    """300 malformed submissions and three honest ones, graded as one batch."""
    for student in HONEST:
        make_submission(course, LAB, DemoStudent(student, "", answers="solution"))
    honest_file = course.submitted / HONEST[0] / LAB / f"{LAB}.ipynb"
    release = json.loads((course.release / LAB / f"{LAB}.ipynb").read_text())
    labels = {}
    for index, (label, write) in enumerate(malformed_submissions(release, 300, honest_file, seed=13)):
        student = f"fuzz{index:03d}"
        folder = course.submitted / student / LAB
        folder.mkdir(parents=True)
        write(folder / f"{LAB}.ipynb")
        labels[student] = label
    before = _tree(course.root)
    passwd = hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()
    started = time.perf_counter()
    results = {r.student: r for r in grade_lab(course, LAB, workers=2)}
    seconds = time.perf_counter() - started
    return course, labels, results, before, passwd, seconds


def test_300_malformed_submissions_fail_with_reasons_and_the_honest_are_graded(fuzz_batch):
    course, labels, results, _, _, seconds = fuzz_batch
    assert len(results) == len(labels) + len(HONEST)
    for student in HONEST:
        assert (results[student].status, results[student].score) == ("graded", 3.0), results[student].reason
    kinds = Counter()
    for student, label in labels.items():
        result = results[student]
        assert result.status == "failed", f"{label}: graded ({result.score})"
        assert isinstance(result.failure_kind, FailureKind) and result.failure_kind != FailureKind.INTERNAL_ERROR, (
            f"{label}: {result.reason}"
        )
        assert f"{LAB}.ipynb" in result.reason, f"{label}: the reason does not name the file: {result.reason}"
        kinds[result.failure_kind] += 1
        saved = load_result(course.autograded, student, LAB)  # on disk too, as valid JSON
        assert saved is not None and saved.reason == result.reason
    print(f"\n300 malformed + 3 honest graded in {seconds:.1f} s; failure kinds: {dict(kinds)}")
    assert len(kinds) >= 6  # the generator reaches many different rules


def test_the_fuzz_batch_writes_only_grading_results(fuzz_batch):
    course, labels, results, before, passwd, _ = fuzz_batch
    after = _tree(course.root)
    changed = {path for path in set(before) | set(after) if before.get(path) != after.get(path)}
    allowed = ("autograded", "gradebook.db")
    assert {path for path in changed if not path.startswith(allowed)} == set()
    assert hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest() == passwd
    scores = recorded_scores(course, LAB)
    assert {s: scores[s] for s in HONEST} == {s: (3.0, 3.0) for s in HONEST}
    assert set(scores) == set(results)  # one gradebook row per student, failed ones unscored
    with Gradebook(course.db_url) as gb:
        for student in labels:
            notebook = gb.find_submission_notebook(LAB, LAB, student)
            assert notebook.flagged and notebook.needs_manual_grade


def test_a_rerun_of_the_fuzz_batch_reuses_every_result_and_starts_no_kernel(fuzz_batch):
    course, labels, results, _, _, _ = fuzz_batch
    reused = []
    again = grade_lab(course, LAB, on_result=lambda result, was_reused: reused.append(was_reused))
    assert all(reused) and len(reused) == len(results)
    assert {r.student: r.reason for r in again} == {s: r.reason for s, r in results.items()}


def test_a_garbage_timestamp_fails_its_submission_and_the_batch_goes_on(course):
    for student in ("stamp_garbage", "stamp_good"):
        make_submission(course, LAB, DemoStudent(student, "", answers="solution"))
    (course.submitted / "stamp_garbage" / LAB / "timestamp.txt").write_text("not a date \x00 at all")
    (course.submitted / "stamp_good" / LAB / "timestamp.txt").write_text("2026-12-02 10:00:00.000000 UTC")
    results = {r.student: r for r in grade_lab(course, LAB, ["stamp_garbage", "stamp_good"])}
    assert results["stamp_good"].status == "graded"
    garbage = results["stamp_garbage"]
    assert garbage.status == "failed" and "timestamp.txt holds 'not a date" in garbage.reason
    assert "collect the submission again" in garbage.reason
    # A rerun does not crash either; once the file is fixed, the submission is graded.
    assert grade_lab(course, LAB, ["stamp_garbage"])[0].reason == garbage.reason
    (course.submitted / "stamp_garbage" / LAB / "timestamp.txt").write_text("2026-12-02 11:00:00.000000 UTC")
    fixed = grade_lab(course, LAB, ["stamp_garbage"])[0]
    assert (fixed.status, fixed.score) == ("graded", 3.0)


def test_unusable_student_folder_names_are_reported_and_never_written(course):
    names = ["=HYPERLINK(x)", "@SUM(1)", "-rf", "+1", ".hidden", "a" * 65]
    for name in names:
        (course.submitted / name / LAB).mkdir(parents=True)
        (course.submitted / name / LAB / f"{LAB}.ipynb").write_text("{}")
    os.makedirs(os.path.join(os.fsencode(course.submitted), b"bad\xffname", os.fsencode(LAB)))
    weird = os.fsdecode(b"bad\xffname")
    make_submission(course, LAB, DemoStudent("honest_neighbour", "", answers="solution"))
    results = {r.student: r for r in grade_lab(course, LAB, [*names, weird, "honest_neighbour"])}
    assert results["honest_neighbour"].status == "graded"
    for name in [*names, weird]:
        assert results[name].status == "failed" and "not a usable student id" in results[name].reason
        assert not os.path.lexists(course.autograded / name)
    assert not set(recorded_scores(course, LAB)) & {*names, weird}


def test_course_level_problems_stop_the_batch_once_before_any_kernel(tmp_path):
    course = new_course(tmp_path / "c")
    nb = mean_square_lab()
    # A lab that reads a data set, and judges an accuracy on held-out labels.
    nb.cells.insert(2, locked_cell("paths", 'FOLDER = "fashion_mnist"   # DATA / "fashion_mnist" in a real lab'))
    nb.cells.append(
        grade_cell(
            "accuracy_tests",
            "### BEGIN HIDDEN TESTS\n"
            "check.accuracy('toy', torch.tensor([0, 1, 1, 0]), dataset='toy', "
            "min_accuracy=0.5)\n### END HIDDEN TESTS",
        )
    )
    write_lab(course.root, LAB, nb)
    (course.data / "labels").mkdir(parents=True)
    np.save(course.data / "labels" / "toy.npy", np.array([0, 1, 1, 1]))
    build_lab(course, LAB)
    make_submission(course, LAB, DemoStudent("alice", "", answers="solution"))

    with pytest.raises(CourseError, match=r"reads the data set 'fashion_mnist' .* run `autograder data` first"):
        grade_lab(course, LAB)
    (course.data / "fashion_mnist").mkdir()
    (course.data / "MANIFEST.json").write_text(json.dumps({"version": 1, "datasets": {"fashion_mnist": {"files": {}}}}))
    (course.data / "labels" / "toy.npy").unlink()
    with pytest.raises(CourseError, match=r"no held-out labels .*toy\.npy: run `autograder data`"):
        grade_lab(course, LAB)
    assert not course.autograded.exists()  # nobody was graded (or failed) in turn
    done = subprocess.run([AUTOGRADER, "grade", LAB], cwd=course.root, capture_output=True, text=True)
    assert done.returncode == 1 and "toy.npy" in done.stdout and "Traceback" not in done.stdout + done.stderr


def test_an_internal_error_says_what_to_report_and_is_graded_again(course, caplog):
    make_submission(course, LAB, DemoStudent("bugged", "", answers="solution"))
    first = grade_lab(course, LAB, ["bugged"])[0]
    try:
        {}["a grader bug"]
    except KeyError as err:
        with caplog.at_level(logging.ERROR):
            reason = internal_error(course, first, "judging", err)
    report = course.autograded / "bugged" / LAB / "grader-error.txt"
    assert reason.startswith("internal error while judging: KeyError") and str(report) in reason
    assert "please report it" in caplog.text and "Traceback" in report.read_text()
    # Recorded as such, the same submission is graded again by the next run, not reused.
    saved = json.loads(result_path(course.autograded, "bugged", LAB).read_text())
    saved.update(status="failed", reason=reason, score=0.0, failure=FailureKind.INTERNAL_ERROR.value)
    result_path(course.autograded, "bugged", LAB).write_text(json.dumps(saved))
    assert load_result(course.autograded, "bugged", LAB).failure_kind == "internal error"
    again = grade_lab(course, LAB, ["bugged"])[0]
    assert (again.status, again.score) == ("graded", 3.0)


def test_an_oversized_submission_is_refused_unread(course):
    release = nbformat.read(course.release / LAB / f"{LAB}.ipynb", as_version=4)
    picture = "iVBORw0KGgo" + "A" * (25 * 2**20)
    release.cells[0].attachments = {"big.png": {"image/png": picture}}
    folder = course.submitted / "hoarder" / LAB
    folder.mkdir(parents=True)
    nbformat.write(release, folder / f"{LAB}.ipynb")
    result = grade_lab(course, LAB, ["hoarder"])[0]
    assert result.status == "failed" and "MiB, over the 20 MiB a submission may have" in result.reason
    assert result.failure_kind == FailureKind.TOO_LARGE


def _damage(course, student: str, how: str) -> None:
    notebook = course.autograded / student / LAB / f"{LAB}.ipynb"
    if how == "empty":
        notebook.write_bytes(b"")
    elif how == "surrogate":
        notebook.write_text(notebook.read_text().replace('"# Tiny lab"', '"# Tiny lab \\ud800"'))
    elif how == "widgets":
        document = json.loads(notebook.read_text())
        document["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": [1, {"x": None}]}}
        notebook.write_text(json.dumps(document))
    elif how == "result":
        result_path(course.autograded, student, LAB).write_text('{"student": ')


def test_feedback_is_per_student_and_atomic(course):
    students = ["fb_empty", "fb_surrogate", "fb_widgets", "fb_result", "fb_fine"]
    for student in students:
        make_submission(course, LAB, DemoStudent(student, "", answers="solution"))
    assert all(r.status == "graded" for r in grade_lab(course, LAB, students))
    for student, how in zip(students, ["empty", "surrogate", "widgets", "result"], strict=False):  # not fb_fine
        _damage(course, student, how)
    done = subprocess.run(
        [AUTOGRADER, "feedback", LAB, *[f"--student={s}" for s in students]],
        cwd=course.root,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    out = " ".join(done.stdout.split())
    assert "fb_empty: tiny: the autograded notebook cannot be read" in out
    assert "fb_surrogate: tiny: the autograded notebook cannot be read" in out
    assert "fb_result: no page: its result.json is damaged" in out
    assert "wrote 4 feedback file(s)" in out and "3 problem(s) above" in out
    for student in ["fb_empty", "fb_surrogate", "fb_widgets", "fb_fine"]:
        page = (course.feedback / student / LAB / f"{LAB}.html").read_text()
        assert page.endswith("</html>\n") and "3 / 3" in page and "mean_square_negative" in page
    assert (
        "could not be shown here: only the verdicts are"
        in (course.feedback / "fb_empty" / LAB / f"{LAB}.html").read_text()
    )
    assert not (course.feedback / "fb_result").exists()
    assert not list(course.feedback.rglob("*.tmp"))


def test_no_feedback_page_is_over_its_cap(course):
    release = nbformat.read(course.release / LAB / f"{LAB}.ipynb", as_version=4)
    release.cells[0].source = "# Tiny lab\n\n" + "A long essay. " * 200_000  # 2.8 MB of markdown
    release.cells.insert(
        1,
        nbformat.v4.new_markdown_cell(
            "![plot](attachment:p.png)", attachments={"p.png": {"image/png": "iVBORw0K" * 300_000}}
        ),
    )
    folder = course.submitted / "verbose" / LAB
    folder.mkdir(parents=True)
    nbformat.write(release, folder / f"{LAB}.ipynb")
    assert grade_lab(course, LAB, ["verbose"])[0].status == "graded"
    config = course.root / "nbgrader_config.py"
    original = config.read_text()
    try:
        config.write_text(original + "\nc.Grading.max_feedback_mib = 1\n")
        done = subprocess.run(
            [AUTOGRADER, "feedback", LAB, "--student", "verbose"], cwd=course.root, capture_output=True, text=True
        )
    finally:
        config.write_text(original)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "over 1 MiB (c.Grading.max_feedback_mib)" in " ".join(done.stdout.split())
    page = course.feedback / "verbose" / LAB / f"{LAB}.html"
    assert page.stat().st_size <= 2**20
    text = page.read_text()
    assert "Long cells are cut and images left out" in text and "mean_square_negative" in text


def test_sigkill_during_feedback_leaves_whole_pages_and_a_rerun_writes_all(course, fuzz_batch):
    students = sorted(fuzz_batch[2])  # failed runs get a page too: their status and reason
    cut_short = []
    for attempt in range(3):
        shutil.rmtree(course.feedback, ignore_errors=True)
        run = subprocess.Popen(
            [AUTOGRADER, "feedback", LAB], cwd=course.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(course.feedback.glob(f"*/{LAB}/*.html"))) < 10 * (attempt + 1):
            time.sleep(0.002)
        run.send_signal(signal.SIGKILL)
        run.wait()
        pages = list(course.feedback.glob(f"*/{LAB}/*.html"))
        cut_short.append(len(pages) < len(students))
        for page in pages:
            assert page.read_text().endswith("</html>\n"), f"{page} is cut"
    assert any(cut_short), "every run finished before it was killed: nothing was tested"
    done = subprocess.run([AUTOGRADER, "feedback", LAB], cwd=course.root, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    written = {p.parent.parent.name for p in course.feedback.glob(f"*/{LAB}/{LAB}.html")}
    assert set(students) <= written
    assert not list(course.feedback.rglob("*.tmp"))


def test_the_csv_never_holds_a_formula_and_keeps_numbers_numeric(course, tmp_path):
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        for student in [
            '=HYPERLINK("http://evil.example","x")',
            "@SUM(A1:A9)",
            "+cmd|' /C calc'!A0",
            "-2+3",
            "\tTAB",
            "\rCR",
        ]:
            gb.update_or_create_student(student)
    make_submission(course, LAB, DemoStudent("csv_honest", "", answers="solution"))
    grade_lab(course, LAB, ["csv_honest"])
    target = tmp_path / "grades.csv"
    export_csv(course, target, [LAB])
    rows = list(csv.reader(target.open(newline="")))
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row
    by_student = {row[0]: row for row in rows[1:]}
    assert by_student['\'=HYPERLINK("http://evil.example","x")'][2] == "missing"
    assert by_student["'-2+3"] and by_student["'\tTAB"]
    assert by_student["csv_honest"][4:6] == ["3", "3"]  # numbers as numbers
    assert not list(tmp_path.glob(".*.tmp"))

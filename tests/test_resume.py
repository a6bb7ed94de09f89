"""A batch killed with SIGKILL mid-way and run again loses and duplicates nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from autograder.authoring.pipeline import build_lab
from autograder.demo import DemoStudent, make_submission
from autograder.grading.gradebook import recorded_scores
from autograder.grading.results import load_result
from conftest import new_course
from notebooks import mean_square_lab, write_lab

AUTOGRADER = str(Path(sys.executable).with_name("autograder"))


def _kill_when(course, students, done: int, timeout: float = 120) -> list[str]:
    """Start a batch, SIGKILL it once `done` more results exist than now (0: at once, while the
    executor starts), and return the students with a result."""
    before = sum(bool(load_result(course.autograded, s, "tiny")) for s in students)
    batch = subprocess.Popen(
        [AUTOGRADER, "grade", "tiny", "--workers", "1"],
        cwd=course.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + (timeout if done else 1.5)
    while time.monotonic() < deadline and sum(
        bool(load_result(course.autograded, s, "tiny")) for s in students
    ) < before + max(done, 1):
        time.sleep(0.05)
    batch.send_signal(signal.SIGKILL)
    batch.wait()
    return [s for s in students if load_result(course.autograded, s, "tiny")]


def test_sigkill_then_resume(tmp_path):
    course = new_course(tmp_path)
    write_lab(course.root, "tiny", mean_square_lab())
    build_lab(course, "tiny")
    students = [f"s{i}" for i in range(6)]
    for i, student in enumerate(students):
        make_submission(course, "tiny", DemoStudent(student, "", answers="solution" if i % 2 else "blank"))

    # Killed while starting, then after one more result, then after two more.
    _kill_when(course, students, done=0)
    done_before = _kill_when(course, students, done=1)
    assert 1 <= len(done_before) < len(students), "the batch should have been killed mid-way"
    done_before = _kill_when(course, students, done=2)
    assert len(done_before) < len(students), "the batch should have been killed mid-way"
    first = {s: load_result(course.autograded, s, "tiny").seconds for s in done_before}

    rerun = subprocess.run(
        [AUTOGRADER, "grade", "tiny", "--workers", "2"], cwd=course.root, capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "reused" in rerun.stdout
    results = {s: load_result(course.autograded, s, "tiny") for s in students}
    assert {s: r.score for s, r in results.items()} == {s: (3.0 if i % 2 else 0.0) for i, s in enumerate(students)}
    assert all(results[s].seconds == first[s] for s in done_before)  # not graded twice
    scores = recorded_scores(course, "tiny")
    assert scores == {s: (results[s].score, 3.0) for s in students}  # one gradebook row each
    assert not [p for p in course.autograded.rglob("*") if p.name.endswith(".tmp")]  # no half-written file

"""The `autograder` command as a user runs it (subprocesses), on the tiny lab."""

from __future__ import annotations

import csv
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from conftest import new_course
from notebooks import mean_square_lab, write_lab

AUTOGRADER = str(Path(sys.executable).with_name("autograder"))


def run(*args, cwd, ok=True):
    done = subprocess.run([AUTOGRADER, *args], cwd=cwd, capture_output=True, text=True)
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = new_course(tmp_path_factory.mktemp("cli-course"))
    write_lab(course.root, "tiny", mean_square_lab())
    out = run("build", "tiny", cwd=course.root).stdout
    assert "built tiny: 1 notebook(s), 4 checks (2 hidden), 3 points" in out
    return course


def test_collect_grade_feedback_export(course, tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    release = nbformat.read(course.release / "tiny" / "tiny.ipynb", as_version=4)
    with zipfile.ZipFile(downloads / "lms.zip", "w") as archive:
        for student in ("alice", "bob"):
            archive.writestr(f"{student}_tiny.ipynb", nbformat.writes(release))
    out = run("collect", "tiny", str(downloads), cwd=course.root).stdout
    assert (course.submitted / "alice" / "tiny" / "tiny.ipynb").is_file()
    assert (course.submitted / "bob" / "tiny" / "tiny.ipynb").is_file(), out

    out = run("grade", "tiny", cwd=course.root).stdout
    assert "alice" in out and "0 / 3" in out and "graded" in out
    out = run("feedback", "tiny", cwd=course.root).stdout
    assert "wrote 2 feedback file(s)" in out
    run("export", "--output", str(tmp_path / "grades.csv"), cwd=course.root)
    rows = list(csv.DictReader((tmp_path / "grades.csv").open()))
    assert {(r["student"], r["status"], r["score"]) for r in rows} == {("alice", "graded", "0"), ("bob", "graded", "0")}


def test_errors_are_plain_messages(course, tmp_path):
    done = run("grade", "nolab", cwd=course.root, ok=False)
    assert done.returncode == 1 and "no lab 'nolab'" in done.stdout and "Traceback" not in done.stdout + done.stderr
    empty = new_course(tmp_path / "empty")
    write_lab(empty.root, "tiny", mean_square_lab())
    done = run("grade", "tiny", cwd=empty.root, ok=False)
    assert done.returncode == 1 and "no submissions" in done.stdout


def test_a_broken_source_fails_the_build_naming_the_cell(tmp_path):
    course = new_course(tmp_path)
    nb = mean_square_lab()
    nb.cells[2].metadata = {}
    write_lab(course.root, "tiny", nb)
    done = run("build", "tiny", cwd=course.root, ok=False)
    assert done.returncode == 1 and "cell 2" in done.stdout and "solution region" in done.stdout

"""Shared fixtures: courses built once per test session (builds run real kernels)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from notebooks import mean_square_lab, write_lab  # noqa: E402

from autograder.build.pipeline import build_lab, copy_course_skeleton  # noqa: E402
from autograder.course import Course  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def new_course(root: Path) -> Course:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    return Course.load(root)


@pytest.fixture(scope="session")
def tiny_course(tmp_path_factory) -> Course:
    """A course with the two-function `tiny` lab, built."""
    course = new_course(tmp_path_factory.mktemp("tiny-course"))
    write_lab(course.root, "tiny", mean_square_lab())
    build_lab(course, "tiny")
    return course


@pytest.fixture(scope="session")
def lab1_course(tmp_path_factory) -> Course:
    """A copy of this repository's lab 1, built from scratch."""
    root = copy_course_skeleton(REPO, tmp_path_factory.mktemp("lab1-course"), ["lab1_cross_entropy"])
    course = Course.load(root)
    build_lab(course, "lab1_cross_entropy")
    return course

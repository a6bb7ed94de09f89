"""Shared fixtures: courses built once per test session (builds run real kernels)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from notebooks import mean_square_lab, write_lab  # noqa: E402

from autograder.authoring.pipeline import build_lab, copy_course_skeleton
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


def assert_release_in_sync(course: Course, lab: str) -> None:
    """The committed release/ and solutions/ of `lab` match a fresh build in `course`.

    Compared: every cell's source and nbgrader metadata (release), code sources (solutions,
    whose outputs vary run to run), and public reference values (np.allclose: floats may
    differ in the last bits across CPUs).
    """
    import json

    import nbformat
    import numpy as np

    from autograder.checks.observation import decode

    stale = f"release/{lab} or solutions/{lab} is stale against source/{lab}: run `autograder build {lab}` and commit"
    for built in sorted((course.release / lab).glob("*.ipynb")):
        committed = REPO / "release" / lab / built.name
        assert committed.is_file(), stale
        a, b = (nbformat.read(p, as_version=4) for p in (committed, built))
        assert [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in a.cells] == \
            [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in b.cells], stale
        sa, sb = (nbformat.read(root / "solutions" / lab / built.name, as_version=4) for root in (REPO, course.root))
        assert [c.source for c in sa.cells] == [c.source for c in sb.cells], stale
    refs = [json.loads((root / "release" / lab / "public_references.json").read_text())["checks"]
            for root in (REPO, course.root)]
    assert set(refs[0]) == set(refs[1]), stale
    for name in refs[0]:
        a, b = decode(refs[0][name]), decode(refs[1][name])
        assert (a.kind, a.params) == (b.kind, b.params), stale
        if a.kind in ("at_most", "at_least"):
            continue   # judged by the limit alone; the value is the solution's own training outcome, machine-dependent
        if isinstance(a.value, np.ndarray):
            assert a.value.shape == b.value.shape and np.allclose(a.value, b.value, rtol=1e-5, atol=1e-7), stale
        else:
            assert a.value == b.value, stale


def assert_no_secrets_in_release(lab: str) -> None:
    """No solution code or hidden-test text in the committed release of `lab`."""
    import nbformat

    from autograder.authoring.pipeline import check_release

    for source in sorted((REPO / "source" / lab).glob("*.ipynb")):
        check_release(nbformat.read(source, as_version=4),
                      nbformat.read(REPO / "release" / lab / source.name, as_version=4), source)


def cell_scores(result) -> dict[str, float]:
    """grade_id → score of a graded Result, rounded for exact comparison."""
    return {c["grade_id"]: round(c["score"], 6) for c in result.cells}


def failed_checks(result) -> dict[str, str]:
    """name → message of every check a Result failed."""
    return {check["name"]: check["message"] for c in result.cells for check in c["checks"] if not check["passed"]}


def assert_full_marks(result, full_cells: dict[str, float]) -> dict[str, str]:
    """The solution's Result: graded, every test cell at its points, no check failed.
    Returns name → message of every check (for the lab's own assertions on them)."""
    assert (result.status, result.reason) == ("graded", None)
    assert cell_scores(result) == full_cells and result.score == result.max_score == sum(full_cells.values())
    assert failed_checks(result) == {}
    return {check["name"]: check["message"] for c in result.cells for check in c["checks"]}


def assert_graded_zero(result, full_cells: dict[str, float]) -> dict[str, str]:
    """The blank release's Result: graded (not failed), 0 in every test cell. Returns its failed checks."""
    assert (result.status, result.score, result.max_score) == ("graded", 0.0, sum(full_cells.values()))
    assert cell_scores(result) == {grade_id: 0.0 for grade_id in full_cells}
    return failed_checks(result)


def assert_data_cell_names_the_command(lab: str, tmp_path: Path, monkeypatch) -> None:
    """The lab's data cell, run without staged data, says to run `autograder data`."""
    import nbformat

    nb = nbformat.read(REPO / "source" / lab / f"{lab}.ipynb", as_version=4)
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in nb.cells if c.cell_type == "code"}
    monkeypatch.setenv("AUTOGRADER_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {}
    exec(compile(cells["setup"], "setup", "exec"), namespace)
    with pytest.raises(FileNotFoundError, match=r"is not staged: run `autograder data` in the course folder"):
        exec(compile(cells["load_data"], "load_data", "exec"), namespace)


def build_repo_lab(tmp_path_factory, lab: str, datasets: list[str] = ()) -> Course:
    """A copy of this repository's `lab` with `datasets` staged, built from scratch."""
    from autograder.data import stage_all

    course = Course.load(copy_course_skeleton(REPO, tmp_path_factory.mktemp(f"{lab}-course"), [lab]))
    if datasets:
        assert stage_all(course.data, datasets=list(datasets)) == list(datasets)
    build_lab(course, lab)
    return course


def grade_class(course: Course, lab: str, students) -> dict:
    """Submit every DemoStudent and grade them in one batch: {student: Result}."""
    from autograder.demo import make_submission
    from autograder.grading.batch import grade_lab

    for student in students:
        make_submission(course, lab, student)
    return {r.student: r for r in grade_lab(course, lab, [s.name for s in students], force=True, workers=2)}

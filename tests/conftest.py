"""Shared fixtures and helpers: courses built once per test session (builds run real kernels).

The lab tests (test_lab1.py ... test_lab6.py) share the helpers below the line "lab tests":
building a copy of a repository lab (each lab built once per run, shared by the xdist workers),
grading a class of DemoStudents in one batch, and reading a Result (cell scores, failed checks,
checks by name) for their assertions.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from autograder.authoring.pipeline import build_lab, copy_course_skeleton
from autograder.course import Course
from autograder.data import FASHION_MNIST_SOURCE, stage_all
from notebooks import mean_square_lab, write_lab

REPO = Path(__file__).resolve().parent.parent


def public_checks(release_folder: Path) -> dict:
    """The public references every release notebook of a folder carries, merged: {name: payload}."""
    checks: dict = {}
    for notebook in sorted(Path(release_folder).glob("*.ipynb")):
        block = json.loads(notebook.read_text())["metadata"]["autograder"]
        checks.update(block["public_references"]["checks"])
    return checks


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


# ------------------------------------------------------------------------------------------ lab tests

needs_fashion_mnist = pytest.mark.skipif(
    not FASHION_MNIST_SOURCE.is_dir(),
    reason=("Debian's dataset-fashion-mnist is not installed (scripts/setup.sh installs it)"),
)


def assert_committed_lab_matches_the_source(course: Course, lab: str) -> None:
    """The committed release/ and solutions/ of `lab` match a fresh build, and the release holds no secrets."""
    assert_release_in_sync(course, lab)
    assert_no_secrets_in_release(lab)


def assert_release_in_sync(course: Course, lab: str) -> None:
    """The committed release/ and solutions/ of `lab` match a fresh build in `course`.

    Compared: every cell's source and nbgrader metadata (release), code sources (solutions,
    whose outputs vary run to run), and public reference values (np.allclose: floats may
    differ in the last bits across CPUs).
    """

    import nbformat
    import numpy as np

    from autograder.checks.observation import decode

    stale = f"release/{lab} or solutions/{lab} is stale against source/{lab}: run `autograder build {lab}` and commit"
    for built in sorted((course.release / lab).glob("*.ipynb")):
        committed = REPO / "release" / lab / built.name
        assert committed.is_file(), stale
        a, b = (nbformat.read(p, as_version=4) for p in (committed, built))
        assert [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in a.cells] == [
            (c.cell_type, c.source, c.metadata.get("nbgrader")) for c in b.cells
        ], stale
        sa, sb = (nbformat.read(root / "solutions" / lab / built.name, as_version=4) for root in (REPO, course.root))
        assert [c.source for c in sa.cells] == [c.source for c in sb.cells], stale
    refs = [public_checks(root / "release" / lab) for root in (REPO, course.root)]
    assert set(refs[0]) == set(refs[1]), stale
    for name in refs[0]:
        a, b = decode(refs[0][name]), decode(refs[1][name])
        assert (a.kind, a.params) == (b.kind, b.params), stale
        if a.kind in ("at_most", "at_least"):
            continue  # judged by the limit alone; the value is the solution's own training outcome, machine-dependent
        if isinstance(a.value, np.ndarray):
            assert a.value.shape == b.value.shape and np.allclose(a.value, b.value, rtol=1e-5, atol=1e-7), stale
        else:
            assert a.value == b.value, stale


def assert_no_secrets_in_release(lab: str) -> None:
    """No solution code or hidden-test text in the committed release of `lab`."""
    import nbformat

    from autograder.authoring.pipeline import check_release

    for source in sorted((REPO / "source" / lab).glob("*.ipynb")):
        check_release(
            nbformat.read(source, as_version=4),
            nbformat.read(REPO / "release" / lab / source.name, as_version=4),
            source,
        )


def public_and_hidden(references) -> dict[str, set[bool]]:
    """grade_id → the `hidden` flags of its references ({False, True}: public and hidden checks)."""
    cells: dict[str, set[bool]] = {}
    for ref in references.values():
        cells.setdefault(ref.grade_id, set()).add(ref.hidden)
    return cells


def cells_by_id(result) -> dict:
    """grade_id → cell of a graded Result."""
    return {c.grade_id: c for c in result.cells}


def checks_by_name(result) -> dict:
    """name → check of every check of a Result."""
    return {k.name: k for c in result.cells for k in c.checks}


def failed_cells(result) -> set[str]:
    """The grade ids of the cells that scored less than their points."""
    return {c.grade_id for c in result.cells if c.score < c.max_score}


def cell_scores(result) -> dict[str, float]:
    """grade_id → score of a graded Result, rounded for exact comparison."""
    return {c.grade_id: round(c.score, 6) for c in result.cells}


def failed_checks(result) -> dict[str, str]:
    """name → message of every check a Result failed."""
    return {check.name: check.message for c in result.cells for check in c.checks if not check.passed}


def assert_full_marks(result, full_cells: dict[str, float]) -> dict[str, str]:
    """The solution's Result: graded, every test cell at its points, no check failed.
    Returns name → message of every check (for the lab's own assertions on them)."""
    assert (result.status, result.reason) == ("graded", None)
    assert cell_scores(result) == full_cells and result.score == result.max_score == sum(full_cells.values())
    assert failed_checks(result) == {}
    return {check.name: check.message for c in result.cells for check in c.checks}


def assert_graded_zero(result, full_cells: dict[str, float]) -> dict[str, str]:
    """The blank release's Result: graded (not failed), 0 in every test cell. Returns its failed checks."""
    assert (result.status, result.score, result.max_score) == ("graded", 0.0, sum(full_cells.values()))
    assert cell_scores(result) == {grade_id: 0.0 for grade_id in full_cells}
    return failed_checks(result)


def assert_costs_exactly(
    result, full_cells: dict[str, float], full: float, cells: dict[str, float], failed: set[str]
) -> None:
    """A buggy submission's Result: `cells` (grade_id → score) lost points, every other cell has its
    full points, exactly the checks `failed` failed, and the score is `full` less what was lost."""
    assert cell_scores(result) == {**full_cells, **cells}
    assert set(failed_checks(result)) == failed
    assert result.score == pytest.approx(full - sum(full_cells[c] - s for c, s in cells.items()), abs=1e-5)


def assert_messages_name_the_cause(result, phrases: dict[str, str]) -> None:
    """Each failed check's message holds its phrase (check name → phrase)."""
    failed = failed_checks(result)
    for check, phrase in phrases.items():
        assert phrase in failed[check], failed[check]


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


# The data sets each repository lab's build reads (its solution runs on them).
LAB_DATASETS = {
    "lab2_backprop_xor": ["xor"],
    "lab3_mnist_lenet": ["fashion_mnist"],
    "lab5_vae_debiasing": ["fashion_mnist", "colored_fashion_mnist"],
    "lab6_attention": ["transpose"],
}


def build_repo_lab(tmp_path_factory, lab: str, datasets: list[str] | None = None) -> Course:
    """A copy of this repository's `lab` with `datasets` (default: LAB_DATASETS') staged, built
    from scratch: once per test run, whichever xdist worker asks first (the others wait on its
    lock), then copied, so that each caller grades into a course of its own. A build runs the
    lab's solution, minutes for some labs: test_labN, test_kit, test_by_hand and the student's
    JupyterLab test all need one."""
    datasets = list(LAB_DATASETS.get(lab, []) if datasets is None else datasets)
    built = _shared_build_folder(tmp_path_factory) / "-".join([lab, *datasets])
    with _lock(built.with_suffix(".lock")):
        if not (built / ".built").is_file():
            shutil.rmtree(built, ignore_errors=True)  # a build that failed halfway is not reused
            course = Course.load(copy_course_skeleton(REPO, built, [lab]))
            if datasets:
                assert stage_all(course.data, datasets=datasets) == datasets
            build_lab(course, lab)
            (built / ".built").write_text(lab)
    copy = tmp_path_factory.mktemp(f"{lab}-course")
    shutil.copytree(built, copy, symlinks=True, dirs_exist_ok=True)
    return Course.load(copy)


def _shared_build_folder(tmp_path_factory) -> Path:
    """This run's folder that every xdist worker sees (their base folders' parent), else the base."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "built-labs"
    folder.mkdir(exist_ok=True)
    return folder


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def edit_submitted_cell(course: Course, lab: str, student: str, grade_id: str, old: str | None, new: str) -> None:
    """Replace `old` by `new` in one cell of a submission (the whole cell when old is None)."""
    import nbformat

    path = course.submitted / student / lab / f"{lab}.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    assert old is None or old in cell.source
    cell.source = new.strip() if old is None else cell.source.replace(old, new)
    nbformat.write(nb, path)


def grade_class(course: Course, lab: str, students, edits=()) -> dict:
    """Submit every DemoStudent, apply `edits` ((student, grade_id, old, new) for edit_submitted_cell:
    what a DemoStudent's replace= cannot say, such as a whole class), and grade them in one batch:
    {student: Result}."""
    from autograder.demo import make_submission
    from autograder.grading.batch import grade_lab

    for student in students:
        make_submission(course, lab, student)
    for student, grade_id, old, new in edits:
        edit_submitted_cell(course, lab, student, grade_id, old, new)
    return {r.student: r for r in grade_lab(course, lab, [s.name for s in students], force=True, workers=2)}


def wait_until_serving(server, base: str, token: str, log_path: Path, timeout: float = 60) -> None:
    """Wait for a Jupyter server started by a test to answer /api/status; fail with its log if it
    exits or stays silent for `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            pytest.fail(f"jupyter server exited ({server.returncode}):\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"jupyter server did not answer in {timeout:g} s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

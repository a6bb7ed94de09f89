"""`autograder import-otter` (autograder/authoring/otter_import.py) and otter-grader itself.

The masters under tests/otter_master/ are otter assign's v1 format: squares.ipynb in the style of
otter's docs (every test an np.allclose assertion), features.ipynb with each mapping the importer
knows and otter features it cannot carry. The otter extra (`pip install '.[otter]'`) is needed:
without it every test here is skipped, saying so, except the one that checks the message.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from typer.testing import CliRunner

from autograder.authoring.otter_import import OTTER_EXTRA, OtterImportError, convert_master, import_otter, read_master
from autograder.authoring.pipeline import build_lab
from autograder.cli import app
from autograder.demo import PATCH_ALLCLOSE, DemoStudent
from conftest import grade_class, new_course

MASTERS = Path(__file__).parent / "otter_master"
try:
    import otter  # noqa: F401

    HAVE_OTTER = True
except ImportError:
    HAVE_OTTER = False
needs_otter = pytest.mark.skipif(not HAVE_OTTER, reason="otter-grader is not installed (pip install '.[otter]')")

HONEST = DemoStudent("ada", "the solution")
BLANK = DemoStudent("ben", "the blank release", answers="blank")
# The demo's allclose-patching student (autograder/demo.py, eve): wrong answers and the patch cell.
PATCHER = DemoStudent("eve", "patches allclose, wrong answers", answers="wrong", extra_cell=PATCH_ALLCLOSE)


def cells_by_id(nb) -> dict:
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if "nbgrader" in c.metadata}


def master(cells, name="m.ipynb", tmp_path=None) -> Path:
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def question(name: str, solution: str, tests: list[str], points=1):
    raw, code = nbformat.v4.new_raw_cell, nbformat.v4.new_code_cell
    return [
        raw(f"# BEGIN QUESTION\nname: {json.dumps(name)}\npoints: {points}"),
        raw("# BEGIN SOLUTION"),
        code(solution),
        raw("# END SOLUTION"),
        raw("# BEGIN TESTS"),
        *(code(t) for t in tests),
        raw("# END TESTS"),
        raw("# END QUESTION"),
    ]


# ------------------------------------------------------------------------------- the mapping


@needs_otter
def test_features_map_onto_solution_and_test_cells():
    path = MASTERS / "features.ipynb"
    imported = convert_master(read_master(path), path)
    cells = cells_by_id(imported.notebook)
    assert imported.lab == "features"
    assert list(cells) == ["setup", "q1_solution", "q1_tests", "q2_solution", "q2_tests", "q3_solution", "q3_tests"]
    assert cells["setup"].source == "from autograder.checks import Checker\ncheck = Checker()"
    # `# SOLUTION` lines → one nbgrader region; otter's block markers → nbgrader's
    assert cells["q1_solution"].source == (
        "def mean_of(xs):\n    ### BEGIN SOLUTION\n    total = sum(xs)\n"
        "    return total / len(xs)\n    ### END SOLUTION"
    )
    assert "    ### BEGIN SOLUTION\n    return {p for p" in cells["q2_solution"].source
    # points: the question's, shared among its hidden tests by otter's points (1 + 1 of q1's 3)
    assert [(q.name, q.points, q.public_tests, q.hidden_tests) for q in imported.questions] == [
        ("q1", 3.0, 1, 2),
        ("q2", 2.0, 1, 2),
        ("q3", 0.0, 1, 0),
    ]
    q1 = cells["q1_tests"].source
    public, hidden = q1.split("### BEGIN HIDDEN TESTS")
    assert "check.equal('q1_1', mean_of([1, 2, 3]), expected=2.0)" in public  # the doctest's output
    assert "check.equal('q1_2', mean_of([2, 4]), expected=3.0, weight=1.5, hint='the mean of 2 and 4 is 3')" in hidden
    assert (
        "check.close('q1_3', mean_of([0.1, 0.2]), rtol=1e-09, atol=0.0, check_dtype=False, expected=0.15, "
        "weight=1.5, hint='divide the sum by the count')"
    ) in hidden
    q2 = cells["q2_tests"].source
    assert "check.equal('q2_1', sorted(primes_below(10)), expected=sorted({2, 3, 5, 7}))" in q2
    assert (
        "check.at_least('q2_2_2', spread([1, 4, 2]), 0" in q2 and "check.at_most('q2_2_3', spread([1, 4, 2]), 10" in q2
    )
    assert "check.equal('q2_3', _otter_passed" in q2  # an assertion in a loop: only a boolean
    assert cells["q3_tests"].metadata["nbgrader"]["points"] == 0
    assert "instructor only" not in nbformat.writes(imported.notebook)  # the # IGNORE line
    for cell in imported.notebook.cells:
        if cell.cell_type == "code":
            ast.parse(cell.source)


@needs_otter
def test_the_report_names_every_feature_not_carried():
    path = MASTERS / "features.ipynb"
    report = "\n".join(convert_master(read_master(path), path).not_carried)
    for phrase in (
        "ASSIGNMENT CONFIG seed: autograder-side seeds",
        "ASSIGNMENT CONFIG requirements:",
        "ASSIGNMENT CONFIG files: support files are not copied",
        "q1: its prompt (# BEGIN PROMPT) is not carried over",
        "q1: test 3: its success message is not shown",
        "q1: the 1 point(s) otter gives its public tests go to its hidden tests",
        "q2: all_or_nothing is not carried over",
        "q2: test 3: `for n in (3, 5): assert len(primes_below(n)) == n // 2",
        "is judged in the student's kernel",
        "q3: has no hidden tests: imported with 0 points instead of 1",
        "q4: a manually graded question (manual: true) is not carried over",
        "1 line(s) marked # IGNORE are left out",
    ):
        assert phrase in report, phrase


# ------------------------------------------------------------------------------- built and graded


@pytest.fixture(scope="module")
def imported_course(tmp_path_factory):
    """Both masters imported with the command, built, and a class graded on each."""
    if not HAVE_OTTER:
        pytest.skip("otter-grader is not installed (pip install '.[otter]')")
    course = new_course(tmp_path_factory.mktemp("otter-course"))
    outputs = {}
    for name in ("squares", "features"):
        run = CliRunner().invoke(app, ["import-otter", str(MASTERS / f"{name}.ipynb"), "--course", str(course.root)])
        assert run.exit_code == 0, run.output
        outputs[name] = run.output
        build_lab(course, name)
    results = {
        "squares": grade_class(course, "squares", [HONEST, BLANK, PATCHER]),
        "features": grade_class(course, "features", [HONEST, BLANK]),
    }
    return course, outputs, results


@needs_otter
def test_the_command_prints_questions_and_what_it_left_out(imported_course):
    _, outputs, _ = imported_course
    assert "q1" in outputs["squares"] and "not carried over:" in outputs["squares"]
    assert "export_cell: the export cell is left out" in outputs["squares"]
    assert "next: autograder build squares" in outputs["squares"]


@needs_otter
@pytest.mark.parametrize("lab, points", [("squares", 4.0), ("features", 5.0)])
def test_imported_lab_solution_full_marks_blank_zero(imported_course, lab, points):
    _, _, results = imported_course
    honest, blank = results[lab]["ada"], results[lab]["ben"]
    assert (honest.status, honest.score, honest.max_score) == ("graded", points, points)
    assert all(check.passed for cell in honest.cells for check in cell.checks)
    assert (blank.status, blank.score, blank.max_score) == ("graded", 0.0, points)


@needs_otter
def test_imported_lab_gives_the_allclose_patch_nothing(imported_course):
    _, _, results = imported_course
    patcher = results["squares"]["eve"]
    assert (patcher.status, patcher.score, patcher.max_score) == ("graded", 0.0, 4.0)


# ------------------------------------------------------------------------------- otter itself


def otter_command() -> list[str]:
    return [str(Path(sys.executable).with_name("otter"))]


def otter_submission(release: Path, master_nb: Path, student: DemoStudent, target: Path) -> None:
    """The demo's student on otter's release: answers from the master (markers removed, every `return`
    made wrong as DemoStudent answers='wrong' does) and the student's extra cell at index 2."""
    nb = nbformat.read(release, as_version=4)
    solutions = [
        c.source
        for c in nbformat.read(master_nb, as_version=4).cells
        if c.cell_type == "code" and "SOLUTION" in c.source
    ]
    answers = [c for c in nb.cells if "otter_answer_cell" in c.metadata.get("tags", [])]
    assert len(answers) == len(solutions)
    for cell, solution in zip(answers, solutions, strict=True):
        lines = [
            re.sub(r"\s*# SOLUTION$", "", line) for line in solution.splitlines() if "# BEGIN SOLUTION" not in line
        ]
        cell.source = "\n".join(line for line in lines if "# END SOLUTION" not in line)
        if student.answers == "wrong":
            cell.source = re.sub(r"(?m)^(\s+)return .*$", r"\1return torch.zeros(1)", cell.source)
    if student.extra_cell:
        nb.cells.insert(2, nbformat.v4.new_code_cell(student.extra_cell.strip()))
    if student.answers == "wrong":
        nb.cells.insert(2, nbformat.v4.new_code_cell("import torch"))
    nbformat.write(nb, target)


def otter_score(workdir: Path, submission: Path) -> tuple[float, float]:
    out = workdir / f"out-{submission.stem}"
    out.mkdir()
    autograder_zip = next((workdir / "dist" / "autograder").glob("*-autograder_*.zip"))
    run = subprocess.run(
        [*otter_command(), "run", "-a", str(autograder_zip), "-o", str(out), str(submission)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=workdir,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    tests = json.loads((out / "results.json").read_text())["tests"]
    scored = [t for t in tests if "score" in t]
    return sum(t["score"] for t in scored), sum(t["max_score"] for t in scored)


@needs_otter
def test_otter_gives_the_allclose_patch_full_marks(tmp_path, imported_course):
    """README's claim: the patch that earns 0 here (test above) scores full marks on otter (`otter run`,
    no Docker); the same wrong answers without the patch score 0 there."""
    shutil.copy(MASTERS / "squares.ipynb", tmp_path / "squares.ipynb")
    assign = subprocess.run(
        [*otter_command(), "assign", "squares.ipynb", "dist", "--no-pdfs", "--no-run-tests"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert assign.returncode == 0, assign.stdout + assign.stderr
    release = tmp_path / "dist" / "student" / "squares.ipynb"
    otter_submission(release, MASTERS / "squares.ipynb", PATCHER, tmp_path / "eve.ipynb")
    wrong_only = DemoStudent("walt", "wrong answers, no patch", answers="wrong")
    otter_submission(release, MASTERS / "squares.ipynb", wrong_only, tmp_path / "walt.ipynb")
    assert otter_score(tmp_path, tmp_path / "eve.ipynb") == (4.0, 4.0)
    assert otter_score(tmp_path, tmp_path / "walt.ipynb") == (0.0, 4.0)
    _, _, results = imported_course
    assert results["squares"]["eve"].score == 0.0  # ours, same master, same attack


# ------------------------------------------------------------------------------- bad input


def test_without_otter_the_command_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "otter", None)  # what an environment without the extra imports
    monkeypatch.setitem(sys.modules, "otter.assign", None)
    for name in [m for m in sys.modules if m.startswith("otter.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(OtterImportError, match=re.escape(OTTER_EXTRA)):
        convert_master(read_master(MASTERS / "squares.ipynb"), MASTERS / "squares.ipynb")


@needs_otter
def test_bad_masters_are_refused_with_the_reason(tmp_path):
    garbage = tmp_path / "garbage.ipynb"
    garbage.write_text('{"cells": [ not json')
    with pytest.raises(OtterImportError, match=r"garbage.ipynb: not a valid notebook"):
        read_master(garbage)
    with pytest.raises(OtterImportError, match=r"missing.ipynb: cannot be read"):
        read_master(tmp_path / "missing.ipynb")
    r_master = master([], "r.ipynb", tmp_path)
    nb = nbformat.read(r_master, as_version=4)
    nb.metadata["kernelspec"]["language"] = "R"
    nbformat.write(nb, r_master)
    with pytest.raises(OtterImportError, match=r"a R notebook; only Python otter assignments are imported"):
        read_master(r_master)
    outside = master([nbformat.v4.new_raw_cell("# BEGIN SOLUTION")], "outside.ipynb", tmp_path)
    with pytest.raises(
        OtterImportError, match=r"otter cannot read it .*Found a begin solution cell outside a question"
    ):
        convert_master(read_master(outside), outside)
    one = ("q1", "x = 1  # SOLUTION", ["# HIDDEN\nassert x == 1"])
    twice = master(question(*one) + question(*one), "twice.ipynb", tmp_path)
    with pytest.raises(OtterImportError, match=r"two questions are named 'q1'"):
        convert_master(read_master(twice), twice)


@needs_otter
def test_an_existing_source_notebook_is_not_overwritten(tmp_path):
    course = new_course(tmp_path / "course")
    target = course.root / "source" / "squares" / "squares.ipynb"
    target.parent.mkdir(parents=True)
    target.write_text("the instructor's own work")
    with pytest.raises(OtterImportError, match=r"exists: choose another --lab, or --force"):
        import_otter(MASTERS / "squares.ipynb", course.root)
    assert target.read_text() == "the instructor's own work"
    run = CliRunner().invoke(app, ["import-otter", str(MASTERS / "squares.ipynb"), "--course", str(course.root)])
    assert run.exit_code == 1 and "exists" in run.output
    assert import_otter(MASTERS / "squares.ipynb", course.root, force=True).path == target
    assert "q1_tests" in target.read_text()


@needs_otter
@pytest.mark.parametrize("lab", ["=cmd", "../escape", "-x", "a b", "@SUM(1)", "x" * 65])
def test_unusable_lab_names_are_refused(tmp_path, lab):
    course = new_course(tmp_path / "course")
    with pytest.raises(OtterImportError, match=r"is not a usable lab name"):
        import_otter(MASTERS / "squares.ipynb", course.root, lab)
    assert not (course.root / "source").exists() or not any((course.root / "source").iterdir())


@needs_otter
def test_odd_question_names_become_ids_and_stay_strings(tmp_path):
    """A question named like code or a formula: its ids are sanitised, its check names are string
    literals, and nothing of the name runs."""
    name = '=HYPERLINK("x"); import os #\''
    path = master(question(name, "x = 1  # SOLUTION", ["# HIDDEN\nassert x == 1"]), "odd.ipynb", tmp_path)
    imported = convert_master(read_master(path), path, "odd")
    cells = cells_by_id(imported.notebook)
    ids = [i for i in cells if i != "setup"]
    qid = "q__HYPERLINK__x____import_os___"  # every character but letters, digits and _ made _, then a letter first
    assert ids == [f"{qid}_solution", f"{qid}_tests"]
    tests = cells[ids[1]].source
    tree = ast.parse(tests)
    names = [
        n.args[0].value for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "equal"
    ]
    assert names == [f"{qid}_1"]
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import)]
    assert any("its name is not an id" in line for line in imported.not_carried)

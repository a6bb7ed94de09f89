"""`autograder validate NOTEBOOK` (autograder/student): lab 1's release notebook, run for real.

Real kernels, no mocks. Notebooks: the committed release of lab 1 (blank answers), a "solved
release" (the release with the answer cells' sources taken from the committed solutions, by
grade_id), and edits of those. A run of the solved notebook takes tens of seconds, so each kind
of run is done once (module-scoped fixtures) and its report read by several tests.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autograder.checks.notebook_metadata import EDITED, NOT_FOUND, MetadataProblem, course_metadata
from autograder.student.cli import app
from autograder.student.validate import HIDDEN_NOTE

REPO = Path(__file__).resolve().parent.parent
LAB = "lab1_cross_entropy"
RELEASE = REPO / "release" / LAB / f"{LAB}.ipynb"
SOLUTION = REPO / "solutions" / LAB / f"{LAB}.ipynb"

WRONG_FUNC = '''def func(a, b):
    """a, b: numbers or tensors of the same shape  ->  e = (a + b) * (b - 1), same shape"""
    return (a + b) * (b + 1)
'''
LOOPING_SLICES = """def slices(m):
    while True:
        pass
"""


def grade_id(cell: dict) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def release() -> dict:
    return json.loads(RELEASE.read_text())


def solved() -> dict:
    """The release with every answer cell's source from the solution notebook."""
    nb = release()
    answers = {grade_id(c): c["source"] for c in json.loads(SOLUTION.read_text())["cells"] if grade_id(c)}
    roles = nb["metadata"]["autograder"]["cells"]
    for cell in nb["cells"]:
        if roles.get(grade_id(cell), {}).get("role") == "answer":
            cell["source"] = answers[grade_id(cell)]
    return nb


def with_source(nb: dict, grade: str, source: str) -> dict:
    nb = copy.deepcopy(nb)
    (cell,) = [c for c in nb["cells"] if grade_id(c) == grade]
    cell["source"] = source
    return nb


def write(folder: Path, nb: dict | str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{LAB}.ipynb"
    path.write_text(nb if isinstance(nb, str) else json.dumps(nb, indent=1, ensure_ascii=False))
    return path


def run_cli(path: Path, *options: str) -> tuple[int, dict]:
    """`autograder validate --json` in a real subprocess (as a student's shell runs it): (exit code, report)."""
    # the grader's record mode in the caller's environment must not reach the kernel: checks would only record
    env = {**{k: v for k, v in os.environ.items() if k != "COLUMNS"}, "AUTOGRADER_MODE": "record"}
    done = subprocess.run(
        [sys.executable, "-m", "autograder.student.cli", "validate", "--json", *options, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout)


def invoke(path: Path, *options: str):
    """The typer app in this process, for the people's output (rich); the kernel is still real."""
    return CliRunner().invoke(app, ["validate", *options, str(path)], env={"COLUMNS": "200"})


def statuses(report: dict) -> dict[str, str]:
    return {t["grade_id"]: t["status"] for t in report["tests"]}


def test_the_release_carries_its_block():
    nb = release()
    assert nb["metadata"]["autograder"]["lab"] == LAB
    assert any(e["role"] == "tests" for e in nb["metadata"]["autograder"]["cells"].values())


# ------------------------------------------------------------------------------ full runs, shared


@pytest.fixture(scope="module")
def blank(tmp_path_factory):
    path = write(tmp_path_factory.mktemp("blank"), RELEASE.read_text())
    before = path.read_bytes()
    code, report = run_cli(path, "--cell-timeout", "100000", "--notebook-timeout", "600")
    return path, before, code, report


@pytest.fixture(scope="module")
def solved_run(tmp_path_factory):
    path = write(tmp_path_factory.mktemp("solved"), solved())
    before = path.read_bytes()
    began = time.monotonic()
    code, report = run_cli(path)
    return path, before, code, report, time.monotonic() - began


@pytest.fixture(scope="module")
def wrong(tmp_path_factory):
    path = write(tmp_path_factory.mktemp("wrong"), with_source(solved(), "func", WRONG_FUNC))
    return invoke(path)


def test_the_blank_release_raises_not_implemented_in_every_tests_cell(blank):
    path, before, code, report = blank
    assert code == 1, report
    assert report["exit_code"] == 1 and report["executed"] and not report["problems"]
    tests = report["tests"]
    roles = release()["metadata"]["autograder"]["cells"]
    assert {t["grade_id"] for t in tests} == {g for g, e in roles.items() if e["role"] == "tests"}
    assert {(t["status"], t["message"]) for t in tests} == {("raised", "NotImplementedError")}
    autograded = sum(e["points"] for e in roles.values() if e["role"] == "tests")  # a written answer is a TA's
    assert report["points_passed"] == 0 and report["points"] == autograded


def test_the_solved_release_passes_every_public_check(solved_run):
    path, before, code, report, seconds = solved_run
    assert code == 0, json.dumps(report, indent=1)
    assert set(statuses(report).values()) == {"passed"}
    assert all("public check" in t["message"] and t["points"] > 0 for t in report["tests"])
    assert report["errors"] == [] and report["cell_problems"] == [] and report["timeout"] is None
    assert 0 < report["seconds"] < report["notebook_timeout"] == 1200 and report["cell_timeout"] == 300
    print(f"solved lab 1 validated in {seconds:.1f} s (cells {report['seconds']:.1f} s)")


def test_the_json_report_has_its_fields(solved_run):
    report = solved_run[3]
    for key in ("notebook", "lab", "problems", "cell_problems", "tests", "errors", "timeout", "executed"):
        assert key in report
    for key in ("kernel", "seconds", "cell_timeout", "notebook_timeout", "notes", "exit_code", "points"):
        assert key in report
    assert report["notebook"] == str(solved_run[0]) and report["lab"] == LAB and report["kernel"] == "python3"
    assert report["hidden_checks"] == HIDDEN_NOTE
    first = report["tests"][0]
    assert set(first) == {"position", "grade_id", "role", "points", "status", "message", "seconds"}
    assert first["grade_id"] == "make_tensors_tests" and first["points"] == 2 and first["seconds"] > 0


def test_validate_never_writes_the_students_file(blank, solved_run):
    for path, before, *_ in (blank, solved_run):
        assert path.read_bytes() == before
        assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_one_wrong_answer_shows_its_check_message_and_the_others_pass(wrong):
    assert wrong.exit_code == 1, wrong.output
    lines = wrong.output.splitlines()
    (func,) = [line for line in lines if "'func_tests'" in line]
    assert "failed" in func and "func_scalars" in func
    assert "expected" in wrong.output and "got" in wrong.output  # the check's own message, values shown
    others = [line for line in lines if "_tests'" in line and "'func_tests'" not in line]
    assert len(others) == 10 and all("passed" in line for line in others), wrong.output
    assert "Hidden checks run only when the notebook is graded" in wrong.output
    assert "not yet" in wrong.output and "(exit 1)" in wrong.output


# --------------------------------------------------------------------- edits that make it unusable


def test_an_edited_locked_tests_cell_is_named_and_unusable(tmp_path):
    nb = with_source(release(), "func_tests", 'print("\u2713 func_scalars passed")')
    code, report = run_cli(write(tmp_path, nb))
    assert code == 3
    (problem,) = report["cell_problems"]
    assert problem["kind"] == "changed" and problem["grade_id"] == "func_tests"
    assert "the grader puts the original back, your edit there is lost" in problem["message"]
    assert report["executed"] and statuses(report)["func_tests"] == "passed"  # it still ran, and said so
    assert statuses(report)["slices_tests"] == "raised"  # everything else reported too


def test_deleted_and_duplicated_cells_are_unusable(tmp_path):
    nb = release()
    nb["cells"] = [c for c in nb["cells"] if grade_id(c) not in ("softmax_tests", "predict")]
    (toy,) = [c for c in nb["cells"] if grade_id(c) == "toy_problems"]
    nb["cells"].append(copy.deepcopy(toy))
    result = invoke(write(tmp_path, nb))
    assert result.exit_code == 3, result.output
    text = " ".join(result.output.split())
    assert "deleted: 'softmax_tests' (a tests cell) was deleted: its 2 points cannot be earned" in text
    assert "deleted: 'predict' (an answer cell) was deleted: your answer there is lost" in text
    assert "duplicated: cell" in text and "('toy_problems') duplicated" in text
    assert "NotImplementedError" in result.output  # the rest still ran


def test_edited_references_are_unusable(tmp_path):
    nb = release()
    reference = nb["metadata"]["autograder"]["public_references"]["checks"]["func_scalars"]
    assert reference["data"].endswith("AADAQA==")  # 6.0 as float32
    reference["data"] = reference["data"][: -len("AADAQA==")] + "AADgQA=="  # 7.0
    result = invoke(write(tmp_path, nb))
    assert result.exit_code == 3, result.output
    assert " ".join(EDITED.split()[:6]) in " ".join(result.output.split())
    assert "ran in" not in result.output  # nothing run without trustworthy references


def javascript_round_trip(text: str) -> str:
    """The file as a browser front end saves it: JSON.parse, then JSON.stringify (Node's V8, the
    engine of the Chromium that JupyterLab runs in)."""
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is missing (scripts/setup.sh --test installs nodejs)")
        pytest.skip("node is not installed")
    script = (
        "let t = ''; process.stdin.on('data', d => t += d)"
        ".on('end', () => process.stdout.write(JSON.stringify(JSON.parse(t), null, 1)))"
    )
    done = subprocess.run([node, "-e", script], input=text, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def test_a_release_saved_by_a_javascript_front_end_keeps_its_references():
    """JupyterLab writes 1.0 back as 1: the block's digest is over numbers as JavaScript writes
    them, so a saved notebook still runs its public checks, and an edit after the save is still one."""
    saved = javascript_round_trip(RELEASE.read_text())
    assert '"weight": 1.0' in RELEASE.read_text() and '"weight": 1.0' not in saved  # the round trip changed numbers
    nb = json.loads(saved)
    assert course_metadata(nb)["lab"] == LAB
    checks = nb["metadata"]["autograder"]["public_references"]["checks"]
    checks["func_scalars"]["params"]["weight"] = 2
    with pytest.raises(MetadataProblem, match="were edited"):
        course_metadata(nb)


def test_removed_metadata_is_unusable(tmp_path):
    nb = release()
    del nb["metadata"]["autograder"]
    result = invoke(write(tmp_path, nb), "--json")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["problems"] == [NOT_FOUND]


def test_a_file_that_is_not_json_is_unusable(tmp_path):
    text = RELEASE.read_text()
    result = invoke(write(tmp_path, text[: len(text) // 2]))
    assert result.exit_code == 3
    assert "not valid JSON" in result.output


def test_json_that_is_not_a_notebook_is_unusable(tmp_path):
    nb = release()
    del nb["cells"][3]["cell_type"]
    result = invoke(write(tmp_path, nb), "--json")
    assert result.exit_code == 3
    (problem,) = json.loads(result.stdout)["problems"]
    assert "not a valid notebook (nbformat)" in problem


def test_a_missing_file_is_a_usage_error(tmp_path):
    assert invoke(tmp_path / "nothing.ipynb").exit_code == 2


# --------------------------------------------------------------------------------------- time limits


def test_an_infinite_loop_stops_at_the_cell_timeout_and_names_the_cell(tmp_path):
    path = write(tmp_path, with_source(solved(), "slices", LOOPING_SLICES))
    began = time.monotonic()
    code, report = run_cli(path, "--cell-timeout", "5")
    seconds = time.monotonic() - began
    assert code == 4, report
    assert report["cell_timeout"] == 5
    assert "'slices_tests'" in report["timeout"] and "5 s per cell" in report["timeout"]
    assert statuses(report)["make_tensors_tests"] == "passed"
    assert statuses(report)["slices_tests"] == "timed out"
    assert statuses(report)["softmax_tests"] == "not run"
    assert seconds < 60, seconds


def test_the_whole_notebook_deadline_names_the_running_cell(tmp_path):
    code, report = run_cli(write(tmp_path, with_source(solved(), "slices", LOOPING_SLICES)), "--notebook-timeout", "8")
    assert code == 4, report
    assert report["notebook_timeout"] == 8 and report["cell_timeout"] == 300
    assert "('slices_tests') was running when the notebook passed its limit of 8 s" in report["timeout"]
    assert report["seconds"] < 20


def test_options_only_lower_the_limits(blank, tmp_path):
    report = blank[3]
    assert report["cell_timeout"] == 300  # --cell-timeout 100000: the grader's limit stays
    assert report["notebook_timeout"] == 600  # --notebook-timeout 600: lowered
    assert any("--cell-timeout 100000 is above the grader's limit" in note for note in report["notes"])
    assert invoke(write(tmp_path, release()), "--cell-timeout", "0").exit_code == 2

"""What a student sees: the student wheel in a fresh venv, its JupyterLab, in a real browser.

One fresh Python 3.11 venv gets torch and torchvision (this machine's local wheel store), then
the kit's wheel with its `[jupyter]` extra, exactly as the kit's README tells a student; it must
hold no nbgrader, ray or nvidia-ml-py and its `autograder validate` must answer. Its JupyterLab
(a clean HOME and Jupyter folders, so nothing of this machine's configuration leaks in) serves a
folder holding the kit of lab1_cross_entropy and, apart from it, a copy of the notebook that
travels alone. Headless Chromium then does what a student does:

  (a) opens the blank release notebook and runs all cells: the first test cell shows the
      NotImplementedError raised in the student's own answer cell, and the run stops there;
  (b) opens a partly solved notebook (answers from the published solutions, one answer wrong,
      some left blank) and runs it cell by cell (JupyterLab's Run All stops at the first error):
      solved test cells show "✓", the wrong answer's test cell shows CheckFailed with the
      check's own message, and no output shows a frame of the checks package;
  (c) opens the copy in the unrelated folder: its public checks pass there too (the references
      travel inside the notebook's metadata);
  (d) reads the menus, the command palette and the commands: nothing of nbgrader;
  (e) runs the partly solved notebook again, saves it with Ctrl+S, runs the student venv's
      `autograder validate --json` on the saved file (exit 1: a public check failed) and hands
      it in: `autograder grade` (lab 1 built from this repository's source) scores that very
      file as validate foretold, full marks where every public check passed, 0 elsewhere.

Screenshots of every step go to test-artifacts/student-jupyter/ (their paths are printed).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest

from browser import chromium
from conftest import build_repo_lab, cell_scores, failed_checks, free_port

REPO = Path(__file__).resolve().parent.parent
LAB = "lab1_cross_entropy"
RELEASE = REPO / "release" / LAB / f"{LAB}.ipynb"
SOLUTIONS = REPO / "solutions" / LAB / f"{LAB}.ipynb"
ARTIFACTS = REPO / "test-artifacts" / "student-jupyter"
TORCH = ["torch==2.14.1", "torchvision==0.29.1"]  # the versions this machine's wheel store holds
PIP = ["-m", "pip", "--disable-pip-version-check", "-q"]
NOT_FOR_STUDENTS = ["nbgrader", "ray", "nvidia-ml-py"]
# Text that would be a frame of the checks package in a rendered output.
CHECKS_FRAMES = ["autograder/checks", "checker.py", "compare.py", "observation.py", "notebook_metadata.py"]
# The venv's installed distributions, by normalized name (pip's own `list -q` prints nothing).
DISTRIBUTIONS = (
    "import importlib.metadata as m, json, re; "
    "print(json.dumps(sorted({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower() for d in m.distributions()})))"
)
NBGRADER_WORDS = ["nbgrader", "formgrader", "assignment list", "create assignment", "course list"]

# The partly solved notebook: these answers from the solutions, one wrong, the rest left blank.
SOLVED = ["make_tensors", "slices", "func", "dense_forward", "derivative_of_square", "gradient_descent", "softmax"]
SOLVED += ["cross_entropy_one", "logistic_loss"]
WRONG = "cross_entropy_batch"  # the sum of the per-point losses where their mean is asked
BLANK = ["modules", "predict"]

# Helpers the page gets before JupyterLab loads; they read JupyterLab's own objects (the app is
# exposed by --LabApp.expose_app_in_browser) and what the cells render.
PAGE_HELPERS = """
window.__student = {
  panel() {
    const app = window.jupyterapp;
    const w = app && app.shell && app.shell.currentWidget;
    return w && w.content && w.sessionContext && w.context ? w : null;
  },
  path() { const w = this.panel(); return w ? w.context.path : null; },
  kernel() {
    const w = this.panel();
    const k = w && w.sessionContext.session && w.sessionContext.session.kernel;
    return k ? k.status : null;
  },
  cells() {
    const w = this.panel();
    if (!w) return [];
    return w.content.widgets.map((c, index) => {
      const code = c.model.type === 'code';
      const prompt = code && c.node.querySelector('.jp-InputPrompt');
      const out = code && c.node.querySelector('.jp-Cell-outputArea');
      return {
        index, type: c.model.type,
        id: ((c.model.getMetadata && c.model.getMetadata('nbgrader')) || {}).grade_id || null,
        count: code ? c.model.executionCount : null,
        prompt: prompt ? prompt.innerText.trim() : '',
        output: out ? out.innerText : '',
      };
    });
  },
  busy() {
    return [...document.querySelectorAll('.jp-Notebook .jp-InputPrompt')].some(p => p.innerText.includes('*'));
  },
  ran(i) {  // cell i has run, the next one is selected and the kernel waits for more
    const w = this.panel();
    const cells = w.content.widgets, c = cells[i];
    return w.content.activeCellIndex >= Math.min(i + 1, cells.length - 1) && this.kernel() === 'idle'
      && !this.busy() && (c.model.type !== 'code' || c.model.executionCount !== null);
  },
  active() { const w = this.panel(); return w ? w.content.activeCellIndex : -1; },
};
"""


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module", autouse=True)
def chromium_installed() -> None:
    """Checked first, before the minute of installing: the policy of browser.py, louder under CI."""
    if not shutil.which("chromium"):
        reason = "Debian's chromium is not installed (scripts/setup.sh --test installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI is set, so the student's JupyterLab would go untested")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> Path:
    """`autograder kit lab1_cross_entropy`: what a student downloads."""
    from autograder.course import Course
    from autograder.kit import make_kit

    output = tmp_path_factory.mktemp("student") / "kit"
    started = time.monotonic()
    make_kit(Course.load(REPO), [LAB], output)
    print(f"\nkit of {LAB}: {time.monotonic() - started:.1f} s")
    assert (output / "labs" / LAB / f"{LAB}.ipynb").is_file(), sorted(map(str, output.rglob("*")))
    return output


@pytest.fixture(scope="module")
def student_venv(kit, tmp_path_factory) -> Path:
    """A fresh venv: torch first (the student's own choice of build), then the kit's wheel[jupyter]."""
    wheels = sorted((kit / "wheels").glob("autograder_student-*-py3-none-any.whl"))
    assert len(wheels) == 1, f"the kit should hold one student wheel: {wheels}"
    venv = tmp_path_factory.mktemp("student-venv") / "venv"
    python = str(venv / "bin" / "python")
    started = time.monotonic()
    _run(["python3.11", "-m", "venv", str(venv)], "create the venv")
    _run([python, *PIP, "install", *TORCH], "install torch", timeout=900)
    torch_done = time.monotonic()
    _run([python, *PIP, "install", f"{wheels[0]}[jupyter]"], "install the student wheel", timeout=900)
    done = time.monotonic()
    print(
        f"\nfresh venv: torch {torch_done - started:.0f} s, student wheel[jupyter] {done - torch_done:.0f} s, "
        f"{done - started:.0f} s in all"
    )
    return venv


@pytest.fixture(scope="module")
def folders(kit) -> dict[str, Path]:
    """The server's root: the kit, and elsewhere (not under the kit) a copy of the notebook, alone."""
    root = kit.parent
    lab_folder = kit / "labs" / LAB
    blank = lab_folder / f"{LAB}.ipynb"
    solved = lab_folder / f"{LAB} (partly solved).ipynb"
    solved.write_text(json.dumps(partly_solved(json.loads(blank.read_text())), indent=1))
    downloads = root / "Downloads"
    downloads.mkdir()
    alone = downloads / "my lab 1.ipynb"  # renamed on the way, as downloads are
    shutil.copy(solved, alone)
    assert [p.name for p in downloads.iterdir()] == [alone.name]
    return {"root": root, "blank": blank, "solved": solved, "alone": alone}


@pytest.fixture(scope="module")
def grading_course(tmp_path_factory):
    """The grading side: this repository's lab 1 built from its source, where the file is handed in.

    Built in a thread of its own: the build runs its kernel through jupyter_core's run_sync, which
    runs the coroutine on the calling thread's event loop, and in this thread that is Playwright's
    (its sync API's loop): left with the kernel client's sockets and tasks, it stopped driving the
    browser (menus and the palette timed out in the next test)."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(build_repo_lab, tmp_path_factory, LAB).result()


class Server:
    def __init__(self, url: str, token: str, root: Path):
        self.url, self.token, self.root = url, token, root

    def lab(self, notebook: Path) -> str:
        relative = notebook.relative_to(self.root).as_posix()
        return f"{self.url}/lab/tree/{quote(relative)}?reset&token={self.token}"

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shut_down_kernels(self) -> None:
        """Each step opens its notebook in a fresh kernel, as a student's next day would."""
        for session in self.api("/api/sessions"):
            self.api(f"/api/sessions/{session['id']}", method="DELETE")


@pytest.fixture(scope="module")
def server(student_venv, folders, tmp_path_factory) -> Iterator[Server]:
    with jupyter_lab(student_venv / "bin", folders["root"], tmp_path_factory.mktemp("student-home")) as server:
        yield server


@contextmanager
def jupyter_lab(bin_dir: Path, root: Path, home: Path) -> Iterator[Server]:
    """`bin_dir/jupyter lab` on 127.0.0.1, serving `root`, with HOME and every Jupyter folder in
    `home` (nothing of this machine's configuration); always stopped, with its kernels."""
    settings = home / "lab-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # Every cell rendered (not only those in view), so the page holds all outputs to read and shoot.
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "JUPYTER_CONFIG_DIR": str(home / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(home / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(home / "jupyter-runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "lab-workspaces"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    token, port = secrets.token_hex(16), free_port()
    command = [
        str(bin_dir / "jupyter"),
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.open_browser=False",
        "--LabApp.expose_app_in_browser=True",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log_path = home / "server.log"
    log = log_path.open("w")
    process = subprocess.Popen(command, cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", token, root)
    try:
        started = time.monotonic()
        while True:
            try:
                server.api("/api/status")
                break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert process.poll() is None, f"jupyter lab exited: {log_path.read_text()[-3000:]}"
            assert time.monotonic() - started < 120, f"no /api/status after 120 s: {log_path.read_text()[-3000:]}"
            time.sleep(0.5)
        print(f"\njupyter lab of {bin_dir.parent.name} answered in {time.monotonic() - started:.1f} s")
        yield server
    finally:
        _stop(process, server, marker=str(home / "jupyter-runtime"))
        log.close()


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser, server):
    server.shut_down_kernels()
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_init_script(PAGE_HELPERS)
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        yield page
    finally:
        context.close()


# ------------------------------------------------------------------------------------------ the tests


def test_the_fresh_venv_holds_the_student_package_and_no_grading_tools(student_venv, tmp_path):
    python = str(student_venv / "bin" / "python")
    listed = _run([python, "-c", DISTRIBUTIONS], "list the installed distributions")
    installed = set(json.loads(listed))
    for name in NOT_FOR_STUDENTS:
        assert name not in installed, f"{name} is installed in the student venv: {sorted(installed)}"
    for name in ["autograder-student", "torch", "jupyterlab", "notebook", "ipykernel"]:
        assert name in installed, f"{name} is missing from the student venv: {sorted(installed)}"
    versions = _run([python, "-c", "import torch, jupyterlab; print(torch.__version__, jupyterlab.__version__)"], "v")
    assert versions.split()[0].startswith("2.14.1") and versions.split()[1].startswith("4."), versions
    # the wheel's autograder, not this repository's: only checks and student, no grading side
    where = _run(
        [python, "-c", "import autograder, autograder.checks, autograder.student; print(autograder.__file__)"],
        "import autograder",
        cwd=tmp_path,
    )
    assert str(student_venv) in where, where
    grading = subprocess.run([python, "-c", "import autograder.grading"], cwd=tmp_path, capture_output=True, text=True)
    assert grading.returncode != 0 and "ModuleNotFoundError" in grading.stderr, grading.stderr
    helped = _run([str(student_venv / "bin" / "autograder"), "validate", "--help"], "autograder validate --help")
    assert "NOTEBOOK" in helped, helped
    extensions = _run([str(student_venv / "bin" / "jupyter"), "labextension", "list"], "labextension list")
    assert "nbgrader" not in extensions.lower(), extensions


def test_a_blank_notebook_run_all_shows_the_students_not_implemented(page, server, folders, artifacts):
    _open(page, server, folders["blank"])
    _shoot(page, artifacts / "a1-blank-opened.png")
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()
    _wait_settled(page, "Run All on the blank notebook")
    cells = _cells(page)
    _shoot(page, artifacts / "a2-blank-run-all.png")
    code = [c for c in cells if c["type"] == "code"]
    first_test = next(c for c in code if c["id"] == "make_tensors_tests")
    assert first_test["count"] is not None, _visible(cells)
    assert "NotImplementedError" in first_test["output"], _visible(cells)
    assert "in make_tensors()" in first_test["output"], _visible(cells)  # the frame of the student's answer cell
    after = [c for c in code if c["index"] > first_test["index"]]
    assert after and all(c["count"] is None for c in after), (
        f"the run should stop at the first error:\n{_visible(cells)}"
    )
    _assert_no_checks_frames(cells)


def test_a_partly_solved_notebook_shows_passes_the_wrong_answer_and_no_frames(page, server, folders, artifacts):
    _open(page, server, folders["solved"])
    _shoot(page, artifacts / "b1-solved-opened.png")
    cells = _run_cell_by_cell(page, "the partly solved notebook")
    _shoot(page, artifacts / "b2-solved-cell-by-cell.png")
    by_id = {c["id"]: c for c in cells if c["id"]}
    code = [c for c in cells if c["type"] == "code"]
    assert all(c["count"] is not None for c in code), _visible(cells)
    for grade_id in ["make_tensors_tests", "slices_tests", "softmax_tests", "logistic_loss_tests"]:
        lines = by_id[grade_id]["output"].splitlines()
        assert lines and all(line.startswith("\u2713 ") for line in lines), f"{grade_id}:\n{_visible(cells)}"
    assert "\u2713 check 'logistic_small' passed" in by_id["logistic_loss_tests"]["output"]
    # the wrong answer: the check's own message, as the Checker raises it, and nothing else
    wrong = by_id[f"{WRONG}_tests"]["output"]
    assert wrong.startswith("CheckFailed: check 'ce_batch_mean' failed: 1 of 1 values differ"), _visible(cells)
    assert "expected" in wrong and "got" in wrong, wrong
    assert "likely cause: exactly 3x too large: a sum where a mean over 3 items is expected?" in wrong, wrong
    assert "hint: the batch loss is the MEAN of the per-point losses" in wrong, wrong
    assert "Traceback" not in wrong and "Cell In[" not in wrong, wrong
    # answers left blank: the student's own NotImplementedError
    for grade_id in [f"{b}_tests" for b in BLANK]:
        assert "NotImplementedError" in by_id[grade_id]["output"], f"{grade_id}:\n{_visible(cells)}"
    _assert_no_checks_frames(cells)


def test_the_student_saves_validates_and_submits_and_the_grader_agrees(
    page, server, folders, artifacts, student_venv, grading_course, tmp_path
):
    """The last steps of the README's student workflow: save in JupyterLab, `autograder validate`
    the saved file from the student's venv, hand it in; the grader scores that file as validate
    foretold: the solved cells full marks, the wrong and blank ones 0 with their cause."""
    from autograder.grading.results import load_result

    served = folders["root"] / "handed-in.ipynb"
    shutil.copy(folders["solved"], served)  # the pristine partly solved file
    _open(page, server, served)
    _run_cell_by_cell(page, "the notebook to hand in")
    before = served.stat().st_mtime_ns
    page.keyboard.press("Control+s")
    page.wait_for_function("() => !window.__student.panel().context.model.dirty", timeout=30_000)
    _shoot(page, artifacts / "f1-saved.png")
    assert served.stat().st_mtime_ns != before, "Ctrl+S did not write the file"
    on_disk = json.loads(served.read_text())
    ran = [c for c in on_disk["cells"] if c["cell_type"] == "code" and c.get("execution_count")]
    assert len(ran) >= len(SOLVED), "the saved file holds no run of its cells"
    saved = tmp_path / "handed-in" / folders["solved"].name  # what the student uploads, outside the kit
    saved.parent.mkdir()
    shutil.copy(served, saved)

    validated = subprocess.run(
        [str(student_venv / "bin" / "autograder"), "validate", "--json", str(saved)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=saved.parent,
    )
    assert validated.returncode == 1, f"a public check failed, so exit 1:\n{validated.stdout}\n{validated.stderr}"
    report = json.loads(validated.stdout)
    said = {t["grade_id"]: t["status"] for t in report["tests"]}
    assert said[f"{WRONG}_tests"] == "failed", said
    assert all(said[f"{b}_tests"] == "raised" for b in BLANK), said

    student = "student1"
    handed_in = grading_course.submitted / student / LAB / f"{LAB}.ipynb"
    handed_in.parent.mkdir(parents=True)
    shutil.copy(saved, handed_in)
    # the TA's command, in its own process (as a TA runs it; the grading's event loops and
    # threads then stay out of this process, where Playwright drives the browser)
    graded = subprocess.run(
        [str(Path(sys.prefix) / "bin" / "autograder"), "grade", LAB, "--student", student, "--force"],
        cwd=grading_course.root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert graded.returncode == 0, f"autograder grade failed:\n{graded.stdout[-3000:]}\n{graded.stderr[-3000:]}"
    result = load_result(grading_course.autograded, student, LAB)
    assert result is not None and result.status == "graded", (result and result.status, result and result.reason)
    points = {
        c["metadata"]["nbgrader"]["grade_id"]: c["metadata"]["nbgrader"]["points"]
        for c in json.loads(RELEASE.read_text())["cells"]
        if c["metadata"].get("nbgrader", {}).get("grade") and c["cell_type"] == "code"
    }
    scores = cell_scores(result)
    for grade_id, status in said.items():
        if status == "passed":  # every public check passed: the hidden ones pass too for these answers
            assert scores[grade_id] == points[grade_id], (grade_id, scores)
        else:
            assert scores[grade_id] == 0, (grade_id, status, scores)
    assert {g for g, s in said.items() if s != "passed"} == {f"{WRONG}_tests", *(f"{b}_tests" for b in BLANK)}, said
    assert "ce_batch_mean" in failed_checks(result), failed_checks(result)
    assert result.score == sum(points[g] for g, s in said.items() if s == "passed"), (result.score, scores)


def test_a_copy_alone_in_another_folder_runs_its_public_checks(page, server, folders, artifacts):
    _open(page, server, folders["alone"])
    cells = _run_cell_by_cell(page, "the copy in Downloads", until="make_tensors_tests")
    _shoot(page, artifacts / "c-copy-elsewhere.png")
    test = next(c for c in cells if c["id"] == "make_tensors_tests")
    assert test["output"].startswith("\u2713 check 'scalar_shape' passed"), _visible(cells)
    assert "no public reference" not in test["output"] and "public references" not in test["output"], test["output"]
    _assert_no_checks_frames(cells)


def test_jupyterlab_shows_nothing_of_nbgrader(page, server, folders, artifacts):
    _open(page, server, folders["blank"])
    seen = _nbgrader_seen(page, artifacts / "d1-first-menu.png", artifacts / "d2-command-palette.png")
    assert not seen, "the student's JupyterLab shows nbgrader:\n" + "\n".join(seen)


def test_the_same_reading_finds_nbgrader_where_it_is_installed(browser, tmp_path, artifacts):
    """The control: this repository's own venv (the grading side) has nbgrader's lab extension,
    and the reading above finds it there, so its silence in the student's JupyterLab means something."""
    (tmp_path / "root").mkdir()
    with jupyter_lab(Path(sys.prefix) / "bin", tmp_path / "root", tmp_path / "home") as grading:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{grading.url}/lab?reset&token={grading.token}")
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.restored")
            page.evaluate("() => window.jupyterapp.restored.then(() => true)")
            seen = _nbgrader_seen(page, artifacts / "e1-grading-venv-menu.png", artifacts / "e2-grading-palette.png")
        finally:
            context.close()
    assert any(s.startswith("commands:") for s in seen), seen
    assert any(s.startswith("menu bar:") for s in seen), seen
    assert any(s.startswith("command palette") for s in seen), seen


# ------------------------------------------------------------------------------------------ helpers


def partly_solved(release: dict) -> dict:
    """The release notebook with SOLVED answers from the solutions, WRONG summed instead of averaged."""
    solutions = json.loads(SOLUTIONS.read_text())
    answers = {
        c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"])
        for c in solutions["cells"]
        if c["metadata"].get("nbgrader", {}).get("solution")
    }
    notebook = json.loads(json.dumps(release))
    seen = set()
    for cell in notebook["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in SOLVED:
            cell["source"] = answers[grade_id]
        elif grade_id == WRONG:
            assert ".mean()" in answers[WRONG], answers[WRONG]
            cell["source"] = answers[WRONG].replace(".mean()", ".sum()")
        elif grade_id in BLANK:
            assert "raise NotImplementedError()" in "".join(cell["source"]), cell["source"]
        seen.add(grade_id)
    assert {*SOLVED, WRONG, *BLANK} <= seen, seen
    return notebook


def _open(page, server: Server, notebook: Path) -> None:
    """Open `notebook` in JupyterLab and wait for its kernel to be idle (a kernel dialog is accepted)."""
    page.goto(server.lab(notebook))
    relative = notebook.relative_to(server.root).as_posix()
    page.wait_for_function("(path) => window.__student.path() === path", arg=relative, timeout=90_000)
    deadline = time.monotonic() + 120
    while True:
        state = page.wait_for_function(
            """() => (document.querySelector('.jp-Dialog') ? 'dialog'
                     : window.__student.kernel() === 'idle' ? 'idle' : false)""",
            timeout=max(1, deadline - time.monotonic()) * 1000,
        ).json_value()
        if state == "idle":
            return
        dialog = page.locator(".jp-Dialog")
        text = dialog.inner_text()
        assert "kernel" in text.lower(), f"an unexpected dialog: {text}"
        page.screenshot(path=str(ARTIFACTS / "kernel-dialog.png"))
        dialog.locator(".jp-mod-accept").first.click()  # "Select" the proposed (only) kernel
        dialog.wait_for(state="detached")


def _wait_settled(page, what: str, timeout: float = 180) -> None:
    """The kernel idle and no cell waiting ([*]): a run has finished or stopped."""
    try:
        page.wait_for_function(
            "() => window.__student.kernel() === 'idle' && !window.__student.busy()"
            " && window.__student.cells().some(c => c.count !== null)",
            timeout=timeout * 1000,
            polling=250,
        )
    except Exception as err:
        raise AssertionError(f"{what} did not finish in {timeout} s:\n{_visible(_cells(page))}") from err


def _run_cell_by_cell(page, what: str, until: str | None = None) -> list[dict]:
    """Shift+Enter from the first cell, one cell at a time (each run waits for the kernel), as a
    student works through a lab; JupyterLab's Run All would stop at the first error."""
    page.locator(".jp-Notebook .jp-Cell").first.locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")  # command mode: Shift+Enter runs and moves to the next cell
    page.wait_for_function("() => window.__student.active() === 0")
    cells = _cells(page)
    for cell in cells:
        page.keyboard.press("Shift+Enter")
        try:
            page.wait_for_function("(i) => window.__student.ran(i)", arg=cell["index"], timeout=180_000, polling=100)
        except Exception as err:
            raise AssertionError(
                f"{what}: cell {cell['index']} ({cell['id']}) did not run:\n{_visible(_cells(page))}"
            ) from err
        if until and cell["id"] == until:
            break
    return _cells(page)[: len(cells)]  # not the empty cell Shift+Enter adds after the last one


def _cells(page) -> list[dict]:
    return page.evaluate("() => window.__student.cells()")


def _visible(cells: list[dict]) -> str:
    """What the page shows, cell by cell, for an assertion's message."""
    lines = []
    for c in cells:
        if c["type"] == "code":
            lines.append(f"--- cell {c['index']} {c['id'] or ''} {c['prompt']}")
            lines.extend(f"    {line}" for line in c["output"].splitlines()[:30])
    return "\n".join(lines)


def _assert_no_checks_frames(cells: list[dict]) -> None:
    for c in cells:
        for frame in CHECKS_FRAMES:
            assert frame not in c["output"], f"cell {c['index']} ({c['id']}) shows {frame!r}:\n{c['output']}"


def _nbgrader_seen(page, menu_shot: Path, palette_shot: Path) -> list[str]:
    """Whatever of nbgrader the page offers: its commands, menu bar entries, menu items, toolbar
    buttons and command-palette results (one line each)."""
    page.evaluate("() => window.jupyterapp.restored.then(() => true)")
    seen = []
    commands = page.evaluate("() => window.jupyterapp.commands.listCommands()")
    assert "notebook:run-all-cells" in commands, commands  # the list is JupyterLab's real one
    if found := [c for c in commands if "nbgrader" in c.lower()]:
        seen.append(f"commands: {found}")
    labels = page.locator(".lm-MenuBar-item").all_inner_texts()
    assert "Run" in labels, labels
    if found := _nbgrader_text(" ".join(labels)):
        seen.append(f"menu bar: {labels}")
    for label in labels:
        page.locator(".lm-MenuBar-item", has_text=label).first.click()
        menu = page.locator(".lm-Menu").last
        menu.wait_for(state="visible")
        items = menu.inner_text()
        if label == labels[0]:
            _shoot(page, menu_shot)
        if found := _nbgrader_text(items):
            seen.append(f"menu {label}: {found}")
        _close_menu(page, menu)
    for toolbar in page.locator(".jp-NotebookPanel-toolbar").all_inner_texts():
        if _nbgrader_text(toolbar) or "Validate" in toolbar:
            seen.append(f"notebook toolbar: {toolbar}")
    palette = page.locator("#command-palette")
    # the palette searches: JupyterLab's own command (enabled with or without a notebook) first
    _palette_search(page, "launcher")
    palette.locator(".lm-CommandPalette-item", has_text="New Launcher").first.wait_for(state="visible")
    _shoot(page, palette_shot)
    for word in ["nbgrader", "formgrader", "assignment", "course list"]:
        shown = _palette_search(page, word)
        if found := _nbgrader_text(" ".join(shown)):
            seen.append(f"command palette, {word!r}: {shown}")
    page.keyboard.press("Escape")
    return seen


def _palette_search(page, word: str) -> list[str]:
    """The command palette's items for `word`. The palette is opened with its key (Ctrl+Shift+C),
    or with the command that key is bound to where the key reached no widget; it closes when it
    loses the focus (a notification, an extension's panel loading), so it is opened again then."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    palette = page.locator("#command-palette")
    search = palette.locator("input").first
    for attempt in range(3):
        if not search.is_visible():
            page.keyboard.press("Control+Shift+C")
            try:
                search.wait_for(state="visible", timeout=5_000)
            except PlaywrightTimeout:
                page.evaluate("() => window.jupyterapp.commands.execute('apputils:activate-command-palette')")
                search.wait_for(state="visible", timeout=10_000)
        try:
            search.fill(word, timeout=5_000)
        except PlaywrightTimeout:
            if attempt == 2:
                raise
            continue
        _frames(page)
        return palette.locator(".lm-CommandPalette-item").all_inner_texts()
    raise AssertionError("unreachable")


def _close_menu(page, menu) -> None:
    """Escape closes a menu that has the focus; without a notebook open the focus can sit elsewhere,
    so a click on an empty spot of the main area closes it then."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.keyboard.press("Escape")
    try:
        menu.wait_for(state="detached", timeout=3_000)
    except PlaywrightTimeout:
        page.mouse.click(700, 600)
        menu.wait_for(state="detached")


def _nbgrader_text(text: str) -> list[str]:
    return [word for word in NBGRADER_WORDS if word in text.lower()]


def _shoot(page, path: Path) -> None:
    """The whole notebook: the viewport grown to the notebook's height and the notebook scrolled to
    its top (JupyterLab scrolls inside its panel, so a plain full-page shot would show one screen)."""
    scroller = ".jp-NotebookPanel .jp-WindowedPanel-outer"
    found = page.evaluate(
        f"() => {{ const s = document.querySelector('{scroller}'); return s && [s.scrollHeight, s.scrollTop]; }}"
    )
    if not found:  # no notebook open (the launcher, a menu): the screen as it is
        page.screenshot(path=str(path), full_page=True)
        print(f"\nscreenshot: {path}")
        return
    height, where = found
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": min(max(size["height"], height + 200), 16_000)})
    page.evaluate(f"() => {{ document.querySelector('{scroller}').scrollTop = 0; }}")
    _frames(page)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    page.evaluate(f"(top) => {{ document.querySelector('{scroller}').scrollTop = top; }}", where)
    _frames(page)
    print(f"\nscreenshot: {path}")


def _frames(page) -> None:
    """Until the page has drawn twice: Lumino lays out and renders on animation frames."""
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


def _run(command: list[str], what: str, timeout: float = 300, cwd: Path | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done.stdout


def _stop(process: subprocess.Popen, server: Server, marker: str) -> None:
    """Shut the server down (it stops its kernels), then end any process of ours that is left: the
    kernels run in sessions of their own, so they are found by the runtime folder in their env."""
    if process.poll() is None:
        try:
            server.api("/api/shutdown", method="POST")
            process.wait(timeout=30)
        except (OSError, urllib.error.URLError, subprocess.TimeoutExpired):
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    for pid in _processes_with(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


if sys.platform != "linux":  # /proc, Debian's chromium and python3.11 on PATH
    pytest.skip("the student's JupyterLab is tested on Linux", allow_module_level=True)

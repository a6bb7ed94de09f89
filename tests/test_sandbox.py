"""The grading sandbox with real bubblewrap and real kernels (no mocks).

Each test runs a small notebook through execute_notebook and looks at what came back; the
isolation checks run as cells inside one sandboxed kernel and raise when something leaks.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from autograder.executors import Limits
from autograder.executors.cgroups import process_limit
from autograder.executors.sandbox import probe, sandbox_argv
from autograder.executors.session import execute_notebook
from job_limits import default_limits

REPO = Path(__file__).resolve().parent.parent
FAST = default_limits(cell_timeout=20, notebook_timeout=60)
CANARY = "AUTOGRADER_TEST_CANARY"
# bwrap's minimal /dev: no GPUs, no disks
DEV = {
    "null",
    "zero",
    "full",
    "random",
    "urandom",
    "tty",
    "pts",
    "ptmx",
    "shm",
    "fd",
    "stdin",
    "stdout",
    "stderr",
    "core",
}

pytestmark = pytest.mark.skipif(not probe().available, reason=f"no sandbox here: {probe().reason}")


def run(tmp_path: Path, cells: list[str], limits: Limits = FAST, **kw):
    nb = new_notebook(cells=[new_code_cell(source) for source in cells])
    kw.setdefault("sandbox", True)
    return execute_notebook(nb, job_dir=tmp_path / "job", limits=limits, **kw)


def texts(cell) -> str:
    """Everything a cell showed, as one string."""
    parts = []
    for output in cell.outputs:
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def own_cgroups() -> list[str]:
    parent = Path("/sys/fs/cgroup/pids/autograder")
    return [p.name for p in parent.iterdir() if p.is_dir() and f"-{os.getpid()}-" in p.name] if parent.is_dir() else []


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def processes_left(marker: str, within: float) -> list[int]:
    """The processes with `marker` still there after waiting up to `within` seconds for them to go."""
    deadline = time.monotonic() + within
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return processes_with(marker)


@pytest.fixture(autouse=True)
def no_leftovers():
    """Every run leaves no cgroup (and so no process) behind."""
    yield
    assert own_cgroups() == []


def test_computes_keeps_outputs_and_goes_on_after_an_error(tmp_path):
    nb = new_notebook(
        cells=[
            new_markdown_cell("# lab"),
            new_code_cell("x = 6 * 7\nx"),
            new_code_cell("print('hi')"),
            new_code_cell("raise ValueError('boom')"),
            new_code_cell("x + 1"),
        ]
    )
    result = execute_notebook(nb, job_dir=tmp_path / "job", limits=FAST, sandbox=True)
    assert (result.status, result.reason, result.sandboxed) == ("completed", None, True)
    assert result.cell_errors == {3: "ValueError: boom"}
    cells = result.notebook.cells
    assert texts(cells[1]) == "42" and texts(cells[2]) == "hi\n" and texts(cells[4]) == "43"
    assert cells[3].outputs[0].output_type == "error"
    assert nb.cells[1].outputs == []  # the caller's notebook is left as it was


def test_sandbox_isolation(tmp_path, monkeypatch):
    monkeypatch.setenv(CANARY, "leaked")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "data.txt").write_text("course data")
    limits = default_limits(cell_timeout=30, notebook_timeout=60, file_size_bytes=1 << 20, tmpfs_bytes=4 << 20)
    prefix = Path(sys.base_prefix)
    cells = [
        # the host's files: the repository, /root beyond the Python installation, /etc
        f"""
try:
    open({str(REPO / "pyproject.toml")!r})
    raise AssertionError('the repository is visible')
except FileNotFoundError:
    pass
""",
        f"""
import os
from pathlib import Path
prefix = Path({str(prefix)!r})
for folder in [p for p in prefix.parents if Path('/root') in (p, *p.parents)]:
    child = prefix.relative_to(folder).parts[0]
    assert os.listdir(folder) == [child], (folder, os.listdir(folder))
assert set(os.listdir('/etc')) <= {{'ld.so.cache', 'fonts'}}, os.listdir('/etc')
""",
        # no network: the host's loopback listener and the internet are both out of reach
        f"""
import socket
for address in [('127.0.0.1', {port}), ('1.1.1.1', 53)]:
    try:
        socket.create_connection(address, timeout=2)
        raise AssertionError(f'connected to {{address}}')
    except OSError as err:
        assert not isinstance(err, socket.timeout), address
""",
        # read-only system, venv and binds; writable /tmp, HOME and the job dir
        f"""
import errno, os, sys
for path in ['/usr/evil', sys.prefix + '/evil', '/shared/evil', '/evil', '/dev/evil']:
    try:
        open(path, 'w')
        raise AssertionError(f'{{path}} is writable')
    except OSError as err:
        assert err.errno in (errno.EROFS, errno.EACCES), (path, err)
assert open('/shared/data.txt').read() == 'course data'
for folder in ['/tmp', os.environ['HOME'], os.getcwd(), {str(tmp_path / "job")!r}]:
    open(os.path.join(folder, 'ok'), 'w').write('ok')
""",
        # nothing from the parent's environment, no GPU, no capabilities, own pid namespace
        f"""
import glob, os
assert {CANARY!r} not in os.environ
assert os.environ['GIVEN'] == 'yes' and os.environ['HOME'] == '/tmp/home'
assert glob.glob('/dev/nvidia*') == []
assert set(os.listdir('/dev')) <= {DEV}, os.listdir('/dev')
caps = dict(line.split(':\\t') for line in open('/proc/self/status').read().splitlines() if line.startswith('Cap'))
assert int(caps['CapEff'], 16) == 0 and int(caps['CapBnd'], 16) == 0, caps
assert max(int(p) for p in os.listdir('/proc') if p.isdigit()) < 100
""",
        # RLIMIT_FSIZE and the sized tmpfs
        """
import errno
try:
    open('/tmp/big', 'wb').write(b'0' * (2 << 20))
    raise AssertionError('wrote over RLIMIT_FSIZE')
except OSError as err:
    assert err.errno == errno.EFBIG, err
try:
    for i in range(8):
        open(f'/tmp/part{i}', 'wb').write(b'0' * (900 << 10))
    raise AssertionError('filled over the tmpfs size')
except OSError as err:
    assert err.errno == errno.ENOSPC, err
""",
        "import torch\nprint(torch.ones(3).sum().item())",
    ]
    try:
        result = run(tmp_path, cells, limits, env={"GIVEN": "yes"}, read_only=[(shared, "/shared")])
    finally:
        listener.close()
    assert (result.status, result.sandboxed) == ("completed", True), result.reason
    assert result.cell_errors == {}
    assert texts(result.notebook.cells[-1]) == "3.0\n"
    assert (tmp_path / "job" / "ok").read_text() == "ok"


@pytest.mark.parametrize(
    "source",
    ["while True: pass", "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass"],
    ids=["loop", "loop-ignoring-sigint"],
)
def test_a_cell_over_its_time_is_stopped(tmp_path, source):
    start = time.monotonic()
    result = run(tmp_path, ["1 + 1", source, "2 + 2"], default_limits(cell_timeout=2, notebook_timeout=60))
    assert result.status == "failed"
    assert result.reason == "timeout: cell 1 ran longer than 2 s"
    assert texts(result.notebook.cells[0]) == "2" and result.notebook.cells[2].outputs == []
    assert time.monotonic() - start < 20


def test_the_whole_notebook_has_a_wall_clock(tmp_path):
    result = run(
        tmp_path, ["import time"] + ["time.sleep(1)"] * 10, default_limits(cell_timeout=10, notebook_timeout=4)
    )
    assert (result.status, result.reason) == ("failed", "timeout: the notebook ran longer than 4 s")
    assert result.wall_seconds < 10


@pytest.mark.parametrize(
    "source, how",
    [
        ("import os\nos._exit(1)", "exited with code 1"),
        ("import os\nos.kill(os.getpid(), 9)", "killed by signal 9 (SIGKILL); out of memory or process limit?"),
    ],
    ids=["exit", "sigkill"],
)
def test_a_dying_kernel_fails_the_run(tmp_path, source, how):
    result = run(tmp_path, ["1", source, "2"])
    assert (result.status, result.reason) == ("failed", f"kernel died while running cell 1 ({how})")


def test_process_limit_stops_a_fork_bomb(tmp_path):
    with process_limit("probe", default_limits()) as limit:
        if limit.reason:
            pytest.skip(limit.reason)
    marker = "987654"
    bomb = f"""
import subprocess
children = []
try:
    for _ in range(400):
        children.append(subprocess.Popen(['sleep', '{marker}']))
finally:
    print(len(children))
"""
    limits = default_limits(cell_timeout=20, notebook_timeout=60, max_processes=64)
    result = run(tmp_path, [bomb, "print('still here')"], limits)
    assert result.status == "completed"
    assert result.cell_errors[0].startswith("BlockingIOError")
    assert int(texts(result.notebook.cells[0])) < 64
    assert texts(result.notebook.cells[1]) == "still here\n"
    assert processes_with(marker) == []
    assert subprocess.run(["true"]).returncode == 0  # the host can still fork


@pytest.mark.parametrize(
    "source", ["while True: print('x' * 10_000)", "print('y' * 3_000_000)"], ids=["many-messages", "one-huge-message"]
)
def test_output_is_capped(tmp_path, source):
    result = run(
        tmp_path, [source, "1"], default_limits(cell_timeout=20, notebook_timeout=60, max_output_bytes=1 << 20)
    )
    assert (result.status, result.reason) == ("failed", "output over 1 MiB")
    assert sum(len(texts(cell)) for cell in result.notebook.cells) <= 1 << 20


def test_unsandboxed_run_has_a_clean_environment_and_the_binds(tmp_path, monkeypatch):
    monkeypatch.setenv(CANARY, "leaked")
    library = tmp_path / "library"
    library.mkdir()
    (library / "helper.py").write_text("VALUE = 'from the bind'\n")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "input.txt").write_text("next to the notebook")
    cells = [
        f"import os\nassert {CANARY!r} not in os.environ\nprint(os.environ['MODE'])",
        "import helper\nprint(helper.VALUE)",
        "print(open('input.txt').read())",
    ]
    result = run(
        tmp_path,
        cells,
        sandbox=False,
        env={"MODE": "trusted", "PYTHONPATH": "/opt/lib"},
        read_only=[(library / "helper.py", "/opt/lib/helper.py")],
        cwd=cwd,
    )
    assert (result.status, result.sandboxed, result.cell_errors) == ("completed", False, {})
    assert [texts(c) for c in result.notebook.cells] == ["trusted\n", "from the bind\n", "next to the notebook\n"]


def test_a_coordinator_killed_while_the_sandbox_starts_leaves_nothing(tmp_path):
    """bwrap's --die-with-parent misses a parent that dies in its first milliseconds; the
    lifeline pipe does not."""
    marker = "4325987"
    coordinator = f"""
import os, signal, subprocess, sys, time
from pathlib import Path
from autograder.executors.sandbox import sandbox_argv
from autograder.grading.kernel_policy import limits_from
from autograder.settings import Grading
read, write = os.pipe()
argv = sandbox_argv(['sleep', '{marker}'], job_dir=Path({str(tmp_path)!r}), env={{}}, limits=limits_from(Grading()),
                    lifeline_fd=read)
subprocess.Popen(argv, pass_fds=(read,), start_new_session=True)
time.sleep(float(sys.argv[1]))
os.kill(os.getpid(), signal.SIGKILL)
"""
    for delay in (0, 0.002, 0.005, 0.01, 0.03, 0.1):
        done = subprocess.run([sys.executable, "-c", coordinator, str(delay)], capture_output=True, text=True)
        assert done.returncode == -signal.SIGKILL, done.stderr  # it started the sandbox, then died
    assert processes_left(marker, within=5) == []


@pytest.mark.parametrize("fd_number", [21, 321])
def test_the_sandbox_dies_when_its_lifeline_closes_whatever_its_fds_number(tmp_path, fd_number):
    """The coordinator's end of the lifeline closing is what kills the sandbox. A coordinator
    with many files open (pytest, a batch's kernel sockets) hands it a two-digit fd, which the
    sandbox's /bin/sh (dash: fds 0-9 only in a redirection) once could not read: the sandbox
    then outlived its coordinator whenever --die-with-parent missed it."""
    marker = f"4325{fd_number}"
    read, write = os.pipe()
    lifeline = os.dup2(read, fd_number, inheritable=False)
    os.close(read)
    try:
        argv = sandbox_argv(["sleep", marker], job_dir=tmp_path, env={}, limits=default_limits(), lifeline_fd=lifeline)
        sandbox = subprocess.Popen(argv, pass_fds=(lifeline,), start_new_session=True, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while not processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes_with(marker), "the sandbox did not start"
        time.sleep(0.5)  # the lifeline's reader is up (or has failed) by now
        assert sandbox.poll() is None
        os.close(write)
        write = -1
        assert processes_left(marker, within=5) == []
        sandbox.wait(timeout=5)
        assert sandbox.stderr.read() == b""
    finally:
        for fd in (lifeline, write):
            if fd >= 0:
                os.close(fd)


def test_sandbox_command_line():
    argv = sandbox_argv(["python"], job_dir=Path("/tmp/job"), env={"A": "1"}, limits=default_limits(memory_bytes=None))
    assert argv[0].endswith("prlimit") and not any(a.startswith("--as=") for a in argv)
    bwrap = argv[argv.index("--") + 1 :]
    for flag in ("--unshare-all", "--die-with-parent", "--new-session", "--clearenv"):
        assert flag in bwrap
    assert bwrap[bwrap.index("--cap-drop") + 1] == "ALL"
    assert bwrap.index("/tmp") < bwrap.index("/tmp/job")  # tmpfs first, then the bind under it
    assert "/etc" not in bwrap and "/root" not in bwrap
    assert bwrap[-2:] == ["--", "python"]
    with pytest.raises(ValueError, match="RLIMIT_AS"):
        sandbox_argv(["python"], job_dir=Path("/tmp/job"), env={}, limits=default_limits(), gpu_devices=["/dev/null"])

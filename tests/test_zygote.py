"""Kernels forked from a per-slot zygote (c.Grading.kernel_start = "fork"): isolation and parity.

Real bubblewrap, real zygotes, real kernels. Each job here is one forked kernel; the checks run
as cells inside it and raise when something of another job (concurrent or earlier) shows, and
the host is searched afterwards for anything a job left. The same class is graded with "fork"
and "fresh" and must get the same scores, statuses and messages.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_notebook
from test_sandbox import processes_left, processes_with
from traitlets.config import Config

from autograder.authoring.pipeline import build_lab
from autograder.course import Course
from autograder.demo import DemoStudent, make_submission
from autograder.executors import zygote as zygote_module
from autograder.executors.job_folder import JobFolder
from autograder.executors.local import LocalExecutor, new_zygote
from autograder.executors.processes import process_tree
from autograder.executors.sandbox import probe
from autograder.executors.slots import Slot, SlotPool
from autograder.executors.spec import JobSpec
from autograder.grading.batch import grade_lab
from autograder.grading.lab import LabContext
from conftest import new_course
from notebooks import mean_square_lab, write_lab

LAB = "tiny"
MARKER = "autograder-zygote-test-leftover"
pytestmark = pytest.mark.skipif(not probe().available, reason=f"no sandbox here: {probe().reason}")


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Course:
    course = new_course(tmp_path_factory.mktemp("zygote"))
    write_lab(course.root, LAB, mean_square_lab())
    build_lab(course, LAB)
    return course


def spec_for(course: Course, kernel_start: str = "fork", **limits) -> JobSpec:
    spec = LabContext.load(course, LAB).job_spec()
    return JobSpec(
        limits=dataclasses.replace(spec.limits, **limits),
        env=spec.env,
        read_only=spec.read_only,
        sandbox=True,
        warm_up_modules=("numpy", "torch"),
        kernel_start=kernel_start,
    )


@pytest.fixture(scope="module")
def forking(course):
    """Skips where this machine cannot fork kernels into namespaces of their own (said why)."""
    zygote = new_zygote(spec_for(course), Slot(0), name="probe")
    try:
        problem = asyncio.run(zygote.start())
    finally:
        zygote.close()
    if problem is not None:
        pytest.skip(f"kernel_start='fork' is not possible here: {problem}")


def notebook(*sources: str):
    return new_notebook(cells=[new_code_cell(textwrap.dedent(source)) for source in sources])


def run_all(executor, notebooks, workers: int):
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda item: executor.execute(item[1], f"job{item[0]}"), enumerate(notebooks)))


def assert_completed_forked(results) -> None:
    for r in results:
        assert (r.status, r.cell_errors, r.sandboxed) == ("completed", {}, True), (r.reason, r.cell_errors)
        assert r.where.endswith(", forked") and not any("kernel_start" in w for w in r.warnings), (r.where, r.warnings)


def cell_text(result, index: int = -1) -> str:
    return "".join(o.get("text", "") for o in result.notebook.cells[index].outputs)


# A job that looks for every other job while others run: their processes, job folders, /tmp,
# /dev/shm, abstract sockets; then waits, holding its own, so that the others overlap it.
SPY = """
import glob, os, signal, socket, sys, time
from ipykernel import get_connection_file
job_dir = os.path.dirname(os.path.dirname(get_connection_file()))
mine = os.path.basename(job_dir)
# processes: only this job's own pid namespace (its init, the kernel, what the kernel started)
pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
assert pids == [1, 2], pids
own = {int(t) for p in pids for t in os.listdir(f'/proc/{p}/task')}  # their threads
for pid in set(range(1, 4096)) - own:
    try:
        os.kill(pid, 0)
        raise AssertionError(f'pid {pid} is visible')
    except ProcessLookupError:
        pass
# files: the job folder alone of the slot's jobs folder; empty /tmp and /dev/shm
assert os.listdir(os.path.dirname(job_dir)) == [mine], os.listdir(os.path.dirname(job_dir))
# the job folder's top and, in a checkout under /tmp, the virtualenv's (the sandbox binds it at its own path)
binds = {p.split('/')[2] for p in (sys.prefix, sys.base_prefix) if p.startswith('/tmp/')}
assert sorted(os.listdir('/tmp')) == sorted({'home', 'work', job_dir.split('/')[2], *binds}), os.listdir('/tmp')
assert os.listdir('/dev/shm') == [], os.listdir('/dev/shm')
assert os.listdir('/tmp/work') == [], os.listdir('/tmp/work')
mounts = [line.split()[4] for line in open('/proc/self/mountinfo')]
assert [m for m in mounts if '/jobs/' in m] == [job_dir], mounts
assert not [m for m in mounts if m.endswith('/ctl')], mounts
# leave traces the others must not find
open('/tmp/work/trace', 'w').write(mine)
open('/dev/shm/trace', 'w').write(mine)
open(os.path.join(job_dir, 'trace'), 'w').write(mine)
abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
abstract.bind('\\0autograder-zygote-test')  # EADDRINUSE if another job's network were shared
abstract.listen()
caps = dict(line.split(':\\t') for line in open('/proc/self/status').read().splitlines() if line.startswith('Cap'))
assert all(int(caps[k], 16) == 0 for k in ('CapEff', 'CapPrm', 'CapBnd', 'CapAmb', 'CapInh')), caps
assert 'NoNewPrivs:\\t1' in open('/proc/self/status').read()
uid_map = open('/proc/self/uid_map').read().split()
assert uid_map == ['0', '0', '1'], uid_map
time.sleep(3)
print('spy', mine)
"""


def test_concurrent_forked_jobs_cannot_see_or_signal_each_other(course, forking):
    spec = spec_for(course)
    with LocalExecutor(spec, SlotPool.for_machine(gpus=[], cpu_jobs=2), jobs=4) as executor:
        results = run_all(executor, [notebook(SPY)] * 4, workers=2)
    assert_completed_forked(results)
    assert len({cell_text(r) for r in results}) == 4  # four different job folders


# One job changes everything a module, the environment, a thread or a file can carry ...
DIRTY = """
import os, sys, threading, time, json
import numpy, torch
numpy.allclose = lambda *a, **k: True
torch.Tensor.sum = lambda self, *a, **k: torch.tensor(42.0)
json.loads = None
sys.modules['torch'].leaked_by_an_earlier_job = True
os.environ['LEAKED_BY_AN_EARLIER_JOB'] = 'yes'
sys.path.insert(0, '/tmp/work')
open('/tmp/work/evil.py', 'w').write('print("imported from an earlier job")')
open('/tmp/marker', 'w').write('an earlier job was here')
open('/dev/shm/marker', 'w').write('an earlier job was here')
threading.Thread(target=time.sleep, args=(1000,), name='leftover', daemon=True).start()
print('threads', threading.active_count())
"""

# ... and the next job must find none of it.
CLEAN = """
import os, sys, threading, json
import numpy, torch
assert not numpy.allclose(1.0, 2.0)
assert torch.ones(3).sum().item() == 3.0
assert json.loads('[1]') == [1]
assert not hasattr(torch, 'leaked_by_an_earlier_job')
assert 'LEAKED_BY_AN_EARLIER_JOB' not in os.environ
assert '/tmp/work' not in sys.path and not os.path.exists('/tmp/work/evil.py')
assert not os.path.exists('/tmp/marker') and not os.path.exists('/dev/shm/marker')
assert 'leftover' not in [t.name for t in threading.enumerate()]
print('threads', threading.active_count())
"""


def test_nothing_of_one_job_is_in_the_next(course, forking):
    spec = spec_for(course)
    with LocalExecutor(spec, SlotPool.for_machine(gpus=[], cpu_jobs=1), jobs=4) as executor:
        results = [executor.execute(notebook(source), f"job{i}") for i, source in enumerate([DIRTY, CLEAN] * 2)]
    assert_completed_forked(results)
    dirty, clean = (int(cell_text(results[i]).split()[1]) for i in (0, 1))
    assert clean == dirty - 1  # the same threads as any kernel has, less the leftover


def test_read_only_binds_under_tmp_reach_a_forked_kernel_still_read_only(course, forking, tmp_path):
    """A checkout under /tmp (CI's clean clone: its .venv is bound at its own path under /tmp) lost
    every not-yet-imported file of the virtualenv in forked kernels when the job's fresh /tmp
    replaced the zygote's: ipykernel's own late imports failed and every kernel died. A bind under
    /tmp stands in for it here."""
    data = tmp_path / "public-data"
    data.mkdir()
    (data / "train.txt").write_text("the data\n")
    spec = spec_for(course)
    spec = dataclasses.replace(spec, read_only=(*spec.read_only, (str(data), "/tmp/course-data/public")))
    cell = """
    import errno, os
    print(open('/tmp/course-data/public/train.txt').read().strip())
    try:
        open('/tmp/course-data/public/new.txt', 'w')
    except OSError as err:
        print('write refused:', errno.errorcode[err.errno])
    """
    with LocalExecutor(spec, SlotPool.for_machine(gpus=[], cpu_jobs=1), jobs=1) as executor:
        results = [executor.execute(notebook(cell), f"job{i}") for i in range(2)]
    assert_completed_forked(results)
    for result in results:
        assert cell_text(result).splitlines() == ["the data", "write refused: EROFS"]
    assert sorted(p.name for p in data.iterdir()) == ["train.txt"]


def test_forked_kernels_have_fresh_random_state(course, forking):
    source = "import random, numpy, torch\nprint(random.random(), numpy.random.rand(), torch.rand(1).item())"
    with LocalExecutor(spec_for(course), SlotPool.for_machine(gpus=[], cpu_jobs=1), jobs=3) as executor:
        results = [executor.execute(notebook(source), f"job{i}") for i in range(3)]
    assert_completed_forked(results)
    draws = [cell_text(r).split() for r in results]
    for column in range(3):  # a fork inherits the zygote's generators: each is seeded again
        assert len({row[column] for row in draws}) == 3, draws


LEAVE_CHILDREN = f"""
import os, subprocess, sys, time
sleeper = [sys.executable, '-c', 'import time; time.sleep(1000)', {MARKER!r}]
subprocess.Popen(sleeper, start_new_session=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, sleeper)
    os._exit(0)
time.sleep(0.5)
print('children', len([p for p in os.listdir('/proc') if p.isdigit()]))
"""


@pytest.mark.parametrize(
    "ending",
    ["", "import os\nos._exit(3)", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"],
    ids=["finishes", "exits", "kills-itself"],
)
def test_a_job_that_forks_or_kills_its_kernel_leaves_nothing(course, forking, ending):
    spec = spec_for(course, cell_timeout=20, notebook_timeout=40)
    sources = [LEAVE_CHILDREN] + ([ending] if ending else [])
    with LocalExecutor(spec, SlotPool.for_machine(gpus=[], cpu_jobs=1), jobs=2) as executor:
        first = executor.execute(notebook(*sources), "job0")
        assert processes_left(MARKER, within=10) == []  # gone with its job, while the zygote lives on
        after = executor.execute(notebook("print('next', 6 * 7)"), "job1")
    assert int(cell_text(first, 0).split()[1]) >= 4  # its init, the kernel and both sleepers
    if ending:
        assert first.status == "failed" and "kernel died while running cell 1" in first.reason, first.reason
    else:
        assert first.status == "completed", first.reason
    assert_completed_forked([after])
    assert cell_text(after) == "next 42\n"


def test_a_killed_coordinator_leaves_no_kernel_and_no_zygote(course, forking, tmp_path):
    """SIGKILL of the coordinator mid-job: its zygotes' lifelines close, every fork goes with them."""
    script = tmp_path / "coordinator.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path[:0] = {[str(Path(__file__).parent)]!r}
            from test_zygote import *
            from autograder.course import Course
            course = Course.load({str(course.root)!r})
            executor = LocalExecutor(spec_for(course), SlotPool.for_machine(gpus=[], cpu_jobs=1), jobs=1)
            executor.execute(notebook({LEAVE_CHILDREN!r}, "import time\\ntime.sleep(1000)"))
            """
        )
    )
    coordinator = subprocess.Popen([sys.executable, str(script)], cwd=course.root)
    deadline = time.monotonic() + 120
    while len(processes_with(MARKER)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(processes_with(MARKER)) == 2, "the job's children did not start"
    # its zygote, the job's monitor, init and kernel, the connector (other coordinators may run zygotes too)
    ours = set(process_tree(coordinator.pid)) - {coordinator.pid}
    assert ours & set(processes_with(zygote_module.ZYGOTE_INSIDE))
    coordinator.send_signal(signal.SIGKILL)
    coordinator.wait()

    def left() -> list[int]:
        return processes_with(MARKER) + [pid for pid in ours if os.path.exists(f"/proc/{pid}")]

    deadline = time.monotonic() + 10
    while left() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left() == []
    # what it left on disk (its zygote's folder, the shared bind of its jobs folder) goes at the next start
    stale = list(Path("/tmp").glob(f"{zygote_module.FOLDER_PREFIX}*-{coordinator.pid}-*"))
    assert stale
    new_zygote(spec_for(course), Slot(0)).close()
    assert not any(folder.exists() for folder in stale)
    assert not [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(stale[0]) in line]


def test_a_forked_kernel_keeps_every_guarantee_of_the_sandbox(course, forking, monkeypatch):
    """test_sandbox.py's isolation, limits and process limit, for a forked kernel."""
    monkeypatch.setenv("AUTOGRADER_TEST_CANARY", "leaked")  # the coordinator's environment
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    repo = Path(__file__).resolve().parent.parent
    cells = [
        f"""
        import errno, glob, os, socket, sys
        assert not os.path.exists({str(repo / "pyproject.toml")!r})
        assert set(os.listdir('/etc')) <= {{'ld.so.cache', 'fonts'}}, os.listdir('/etc')
        assert 'AUTOGRADER_TEST_CANARY' not in os.environ and os.environ['HOME'] == '/tmp/home'
        assert glob.glob('/dev/nvidia*') == []
        for address in [('127.0.0.1', {port}), ('1.1.1.1', 53)]:
            try:
                socket.create_connection(address, timeout=2)
                raise AssertionError(f'connected to {{address}}')
            except OSError as err:
                assert not isinstance(err, socket.timeout), address
        for path in ['/usr/evil', sys.prefix + '/evil', '/evil', '/dev/evil', '/opt/autograder-zygote/evil',
                     '/opt/autograder-lib/evil', '/proc/sys/kernel/hostname']:
            try:
                open(path, 'w')
                raise AssertionError(f'{{path}} is writable')
            except OSError as err:
                assert err.errno in (errno.EROFS, errno.EACCES, errno.ENOENT, errno.EPERM), (path, err)
        assert os.getcwd() == '/tmp/work'
        """,
        """
        import errno
        try:
            open('/tmp/big', 'wb').write(b'0' * (2 << 20))
            raise AssertionError('wrote over RLIMIT_FSIZE')
        except OSError as err:
            assert err.errno == errno.EFBIG, err
        for folder in ('/tmp', '/dev/shm'):
            try:
                for i in range(8):
                    open(f'{folder}/part{i}', 'wb').write(b'0' * (900 << 10))
                raise AssertionError(f'filled {folder} over its size')
            except OSError as err:
                assert err.errno == errno.ENOSPC, err
        import resource
        assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] == 1 << 20
        assert resource.getrlimit(resource.RLIMIT_CORE) == (0, 0)
        """,
        """
        import subprocess
        children = []
        try:
            for _ in range(400):
                children.append(subprocess.Popen(['sleep', '987650']))
        finally:
            print(len(children))
        """,
        "import torch\nprint(torch.ones(3).sum().item())",
    ]
    spec = spec_for(course, file_size_bytes=1 << 20, tmpfs_bytes=4 << 20, max_processes=64)
    try:
        with LocalExecutor(spec, SlotPool.for_machine(gpus=[], cpu_jobs=1), jobs=1) as executor:
            result = executor.execute(notebook(*cells), "job")
    finally:
        listener.close()
    assert result.where.endswith(", forked")
    assert set(result.cell_errors) == {2}, result.cell_errors  # only the fork bomb, stopped
    assert result.cell_errors[2].startswith("BlockingIOError")
    assert int(cell_text(result, 2)) < 64
    assert cell_text(result, 3) == "3.0\n"
    assert processes_with("987650") == []


def test_where_forking_is_impossible_kernels_start_fresh_and_say_so(course, monkeypatch):
    # A zygote without the capabilities its forks need is what a machine that cannot nest
    # namespaces gives: the probe job fails at its first unshare.
    monkeypatch.setattr(zygote_module, "ZYGOTE_CAPABILITIES", ())
    with LocalExecutor(spec_for(course), SlotPool.for_machine(gpus=[], cpu_jobs=1), jobs=1) as executor:
        result = executor.execute(notebook("print(6 * 7)"), "job")
    assert (result.status, cell_text(result), result.where) == ("completed", "42\n", "slot 0, CPU")
    (warning,) = [w for w in result.warnings if "kernel_start" in w]
    assert warning.startswith("c.Grading.kernel_start = 'fork' is not possible here, kernels start fresh")
    assert "Operation not permitted" in warning


CLASS = [
    DemoStudent("honest", "correct"),
    DemoStudent("blank", "blank release", answers="blank"),
    DemoStudent(
        "summer", "sum instead of mean", replace={"mean_square": "def mean_square(x):\n    return (x ** 2).sum()"}
    ),
    DemoStudent("looper", "infinite loop", extra_cell="while True:\n    pass"),
    DemoStudent("crasher", "kills its kernel", extra_cell="import os\nos._exit(3)"),
    DemoStudent("patcher", "patches numpy", extra_cell="import numpy\nnumpy.allclose = lambda *a, **k: True"),
]


# What CLASS scores (the patcher's numpy.allclose = lambda: True fools no verdict: judged outside).
CLASS_SCORES = {
    "honest": ("graded", 3.0),
    "blank": ("graded", 0.0),
    "summer": ("graded", 1.0),
    "looper": ("failed", 0.0),
    "crasher": ("failed", 0.0),
    "patcher": ("graded", 3.0),
}


def verdicts(course: Course, kernel_start: str, executor: str | None = None) -> dict:
    """CLASS graded with `kernel_start` (on `executor`): every result's status, score, reason,
    failure and each cell's checks with their messages."""
    config = Config(course.config)
    config.Grading.kernel_start = kernel_start
    config.Grading.cell_timeout, config.Grading.notebook_timeout = 8, 30
    results = grade_lab(
        Course(course.root, config), LAB, [s.name for s in CLASS], force=True, workers=2, executor=executor
    )
    assert not [w for r in results for w in r.warnings if "kernel_start" in w]
    return {
        r.student: (
            r.status,
            r.score,
            r.reason,
            r.failure,
            [(c.grade_id, c.score, [(k.name, k.passed, k.message) for k in c.checks]) for c in r.cells],
        )
        for r in results
    }


def test_fork_and_fresh_grade_the_same_class_alike(course, forking):
    for student in CLASS:
        make_submission(course, LAB, student)
    forked, fresh = verdicts(course, "fork"), verdicts(course, "fresh")
    assert forked == fresh
    assert {s: v[:2] for s, v in forked.items()} == CLASS_SCORES


def test_the_zygote_command_line_keeps_capabilities_for_itself_only(course):
    zygote = new_zygote(spec_for(course), Slot(0))
    try:
        argv = zygote.kernel_argv(
            ["python", "-m", "ipykernel_launcher", "-f", "k.json"], job_dir=zygote.jobs / "j", procs=None, lifeline_fd=7
        )
    finally:
        zygote.close()
    assert argv[:4] == [sys.executable, "-I", "-S", str(zygote_module.CONNECTOR_PROGRAM)]
    assert argv[-5:] == ["python", "-m", "ipykernel_launcher", "-f", "k.json"]
    assert os.path.basename(zygote_module.ZYGOTE_PROGRAM) == "zygote_main.py"


# --------------------------------------------------------------------------- on a GPU machine


def has_gpu() -> bool:
    from autograder.executors import visible_gpus

    return bool(visible_gpus())


GPU_ONLY = pytest.mark.skipif(not has_gpu(), reason="no NVIDIA GPU on this machine")


@GPU_ONLY
def test_a_forked_gpu_kernel_sees_exactly_its_gpu_and_initialises_cuda_itself(course, forking):
    from autograder.executors import visible_gpus
    from autograder.executors.gpus import gpu_uuids

    gpu = visible_gpus()[-1]
    uuid = gpu_uuids().get(gpu)
    source = (
        "import glob, os, torch\n"
        "print(torch.cuda.device_count(), os.environ['CUDA_VISIBLE_DEVICES'], sorted(glob.glob('/dev/nvidia[0-9]*')),"
        " (torch.ones(4, device='cuda') * 2).sum().item())"
    )
    spec = dataclasses.replace(spec_for(course), limits=dataclasses.replace(spec_for(course).limits, memory_bytes=None))
    with LocalExecutor(spec, SlotPool.for_machine(gpus=[gpu], jobs_per_gpu=2), jobs=3) as executor:
        results = run_all(executor, [notebook(source)] * 3, workers=2)
    assert_completed_forked(results)
    for r in results:
        assert cell_text(r).strip() == f"1 {uuid or 0} ['/dev/nvidia{gpu}'] 8.0"


@GPU_ONLY
@pytest.mark.parametrize("lab", ["lab1_cross_entropy", "lab3_mnist_lenet", "lab5_vae_debiasing"])
def test_forked_gpu_kernels_give_the_verdicts_of_fresh_cpu_kernels(tmp_path, lab):
    from autograder.authoring.pipeline import build_lab, copy_course_skeleton
    from autograder.data import stage_all
    from conftest import REPO

    course = Course.load(copy_course_skeleton(REPO, tmp_path, [lab]))
    datasets = {"lab3_mnist_lenet": ["fashion_mnist"], "lab5_vae_debiasing": ["fashion_mnist", "colored_fashion_mnist"]}
    if lab in datasets:
        stage_all(course.data, datasets=datasets[lab], download=False)
    build_lab(course, lab)
    students = [DemoStudent("solution", ""), DemoStudent("blank", "", answers="blank")]
    for student in students:
        make_submission(course, lab, student)

    def verdicts(gpus: str, kernel_start: str):
        config = Config(course.config)
        config.Grading.gpus, config.Grading.kernel_start = gpus, kernel_start
        results = grade_lab(Course(course.root, config), lab, force=True)
        assert all(r.status == "graded" for r in results), [(r.student, r.reason) for r in results]
        assert not [w for r in results for w in r.warnings if "kernel_start" in w]
        return {(r.student, k.name): k.passed for r in results for c in r.cells for k in c.checks}

    assert verdicts("auto", "fork") == verdicts("none", "fresh")


def test_fork_is_the_default_and_reaches_the_job_spec(course):
    assert LabContext.load(course, LAB).job_spec().kernel_start == "fork"
    config = Config(course.config)
    config.Grading.kernel_start = "fresh"
    assert LabContext.load(Course(course.root, config), LAB).job_spec().kernel_start == "fresh"


def test_a_slot_whose_zygote_died_starts_another(course, forking):
    """A zygote killed mid-batch (the kernel it had prepared goes with it): the slot's next kernels
    come from a new one, and closing the executor removes both zygotes' folders."""
    with LocalExecutor(spec_for(course), SlotPool.for_machine(gpus=[], cpu_jobs=1), jobs=4) as executor:
        first = executor.execute(notebook("print(6 * 7)"), "job0")
        dead = executor._zygotes[0].result()
        os.killpg(dead.process.pid, signal.SIGKILL)
        dead.process.wait()
        executor.execute(notebook("print(6 * 7)"), "job1")  # its kernel was forked by the dead zygote
        later = [executor.execute(notebook("print(6 * 7)"), f"job{i}") for i in (2, 3)]
        alive = executor._zygotes[0].result()
        assert alive is not dead and alive.alive()
    assert_completed_forked([first, *later])
    assert not dead.folder.exists() and not alive.folder.exists()


def test_a_job_folder_removed_while_a_kernel_is_forked_does_not_fail_the_fork(course, forking):
    """A forked kernel unmounts the slot's other job folders; one the coordinator removes at that
    moment is already detached by the kernel (its mount point was unlinked), which is not an error:
    a CI run's forked kernel died on it ("unmount ...: No such file or directory"). Job folders
    are made and removed beside probe jobs, which go through every step of a kernel's set-up."""
    zygote = new_zygote(spec_for(course), Slot(0), name="churn")
    stop, churned = threading.Event(), [0]

    def churn() -> None:
        while not stop.is_set():
            JobFolder.create(prefix="autograder-slot0-", dir=zygote.jobs, size_bytes=2**20, inodes=64).remove()
            churned[0] += 1

    try:
        # started in this thread: bwrap's --die-with-parent follows the thread that started it
        assert zygote._start() is None
        churners = [threading.Thread(target=churn) for _ in range(4)]
        for churner in churners:
            churner.start()
        try:
            problems = [zygote._probe() for _ in range(100)]
        finally:
            stop.set()
            for churner in churners:
                churner.join()
    finally:
        zygote.close()
    assert churned[0] > 100, churned  # folders came and went all along
    assert [p for p in problems if p is not None] == []

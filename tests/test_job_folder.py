"""Bounded job folders (autograder/executors/job_folder.py), attacked and judged from outside.

The job folder is the one host folder a sandboxed kernel can write: it holds the connection
file and the ZeroMQ sockets and is bound at its own host path, which the kernel finds from its
connection file's path (sys.argv). Real bubblewrap and real kernels grade a tiny lab with
students who try to fill it (2,000 MiB, 100,000 files) and to break the clean-up (3,000 nested
folders, symlinks to the host's files at every level), next to an honest one. Judged by the
recorded results, the host's disk, its /proc/self/mountinfo and what is left in the folder the
job folders were made in. The remover is tested on its own on deep trees whose symlinks point
outside.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_notebook

from autograder.authoring.pipeline import build_lab
from autograder.demo import DemoStudent, make_submission
from autograder.executors import job_folder
from autograder.executors.job_folder import JobFolder, measure_tree, remove_tree
from autograder.executors.local import run_session, start_kernel
from autograder.executors.sandbox import probe
from autograder.executors.slots import Slot
from autograder.executors.spec import JobSpec
from autograder.grading.batch import grade_lab
from conftest import cell_scores, new_course
from job_limits import default_limits
from notebooks import mean_square_lab, write_lab

MiB = 2**20
LAB = "tiny"
FULL = {"mean_square_tests": 2.0, "outer_tests": 1.0}
ROOT = os.geteuid() == 0
sandbox_only = pytest.mark.skipif(not probe().available, reason=f"no sandbox here: {probe().reason}")

# The kernel's job folder, as a student finds it: its connection file lies in <job folder>/kernel.
FIND_JOB = (
    "import os, sys\n"
    "job = os.path.dirname(os.path.dirname(os.path.abspath(sys.argv[sys.argv.index('-f') + 1])))\n"
    "assert os.path.isdir(os.path.join(job, 'kernel')), job\n"
)
# 2,000 MiB in files of 100 MiB (RLIMIT_FSIZE allows 256 MiB a file), going on past every error.
BIG_WRITER = (
    FIND_JOB
    + """
chunk, written = b"\\0" * (1 << 20), 0
for n in range(20):
    try:
        with open(os.path.join(job, "fill" + str(n)), "wb") as f:
            for _ in range({mib_per_file}):
                f.write(chunk)
                written += 1
    except OSError:
        pass
print("wrote", written, "MiB")
"""
)
# 100,000 files, going on past every error.
MANY_FILES = (
    FIND_JOB
    + """
made = 0
for n in range(100_000):
    try:
        open(os.path.join(job, f"f{n}"), "w").close()
        made += 1
    except OSError:
        pass
print("made", made, "files")
"""
)
# 3,000 nested folders, every 10th with a symlink to the host's canary folder and one to its
# file (3,600 entries: within the 4,096 cap): a remover that follows links would delete the canary.
DEEP = (
    FIND_JOB
    + """
fd = os.open(job, os.O_RDONLY)
for n in range(3000):
    if n % 10 == 0:
        os.symlink({canary!r}, "escape", dir_fd=fd)
        os.symlink({canary_file!r}, "escape_file", dir_fd=fd)
    os.mkdir("d", dir_fd=fd)
    child = os.open("d", os.O_RDONLY, dir_fd=fd)
    os.close(fd)
    fd = child
os.close(fd)
print("nested 3000 folders")
"""
)


# ---------------------------------------------------------------------------- the remover alone


def nested(root: Path, depth: int, outside: Path) -> None:
    """`depth` nested folders under root, each with a file, a symlink to the folder `outside`
    and one to a file in it; the deepest made unreadable (mode 0)."""
    root.mkdir()
    fd = os.open(root, os.O_RDONLY)
    for _ in range(depth):
        os.symlink(outside, "link_folder", dir_fd=fd)
        os.symlink(outside / "keep", "link_file", dir_fd=fd)
        file = os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd)
        os.write(file, b"x" * 100)
        os.close(file)
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.chmod(f"/proc/self/fd/{fd}", 0)
    os.close(fd)


@pytest.fixture
def outside(tmp_path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "keep").write_text("keep")
    (folder / "sub").mkdir()
    (folder / "sub" / "keep").write_text("keep")
    return folder


def intact(folder: Path) -> bool:
    return (folder / "keep").read_text() == "keep" and (folder / "sub" / "keep").read_text() == "keep"


def test_a_tree_3000_deep_with_symlinks_outside_is_removed_and_the_links_not_followed(tmp_path, outside):
    root = tmp_path / "tree"
    nested(root, 3000, outside)
    began = time.perf_counter()
    remove_tree(root)
    seconds = time.perf_counter() - began
    assert not os.path.lexists(root) and intact(outside)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside"]
    print(f"removed a 3,000-deep tree (12,000 entries) in {seconds * 1000:.0f} ms")


def test_the_remover_holds_few_descriptors_whatever_the_depth(tmp_path, outside):
    import resource

    root = tmp_path / "tree"
    nested(root, 1500, outside)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    open_now = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_now + 8, hard))
    try:
        remove_tree(root)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert not os.path.lexists(root) and intact(outside)


def test_a_wide_folder_is_removed_in_one_pass(tmp_path):
    root = tmp_path / "wide"
    root.mkdir()
    for n in range(5000):
        (root / f"d{n}").mkdir()
        (root / f"f{n}").touch()
    began = time.perf_counter()
    remove_tree(root)
    assert not root.exists() and time.perf_counter() - began < 10


def test_a_symlink_given_to_the_remover_is_removed_not_its_target(tmp_path, outside):
    link = tmp_path / "link"
    link.symlink_to(outside, target_is_directory=True)
    remove_tree(link)
    assert not os.path.lexists(link) and intact(outside)
    remove_tree(tmp_path / "missing")  # nothing there: no error
    file = tmp_path / "file"
    file.write_text("x")
    remove_tree(file)
    assert not file.exists()


def test_measuring_counts_without_following_links_and_stops_over_a_cap(tmp_path, outside):
    (outside / "big").write_bytes(b"x" * (4 * MiB))
    root = tmp_path / "tree"
    nested(root, 100, outside)
    size, entries = measure_tree(root)
    assert entries == 400  # per level: a file, two links, a folder
    assert size < 2 * MiB  # the 4 MiB file the links point to is not counted
    assert measure_tree(root, max_entries=10)[1] == 11
    assert intact(outside)


# ---------------------------------------------------------------------------- the folder itself


def mounts_under(folder: Path) -> list[str]:
    return [
        line
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4] == str(folder) or line.split()[4].startswith(str(folder) + "/")
    ]


@pytest.mark.skipif(not ROOT, reason="mounting a tmpfs needs root (CAP_SYS_ADMIN)")
def test_a_bounded_folder_is_its_own_tmpfs_full_at_its_cap_and_gone_after(tmp_path):
    folder = JobFolder.create(dir=tmp_path, size_bytes=2 * MiB, inodes=50)
    assert folder.bounded and folder.problem is None
    [line] = mounts_under(folder.path)
    assert " - tmpfs autograder-job-" in line and "size=2048k" in line and "nr_inodes=50" in line
    assert folder.full() is None
    with pytest.raises(OSError) as err:
        (folder.path / "big").write_bytes(b"x" * (3 * MiB))
    assert err.value.errno == errno.ENOSPC
    assert folder.full() == "the job folder is full: 2 MiB written, its cap (c.Grading.job_folder_mib)"
    (folder.path / "big").unlink()
    with pytest.raises(OSError) as err:
        for n in range(100):
            (folder.path / f"f{n}").touch()
    assert err.value.errno == errno.ENOSPC
    assert folder.full() == "the job folder is full: 50 files and folders, its cap (c.Grading.job_folder_inodes)"
    began = time.perf_counter()
    folder.remove()
    assert time.perf_counter() - began < 1
    assert mounts_under(folder.path) == [] and not folder.path.exists()


def test_a_disk_folder_is_measured_against_the_caps(tmp_path):
    folder = JobFolder.given(tmp_path / "job", size_bytes=1 * MiB, inodes=10)
    assert not folder.bounded and folder.full() is None
    (folder.path / "big").write_bytes(b"x" * (2 * MiB))
    assert folder.full() == (
        "the job folder is over its cap: more than 1 MiB written (c.Grading.job_folder_mib), measured after the run"
    )
    (folder.path / "big").unlink()
    for n in range(12):
        (folder.path / f"f{n}").touch()
    assert folder.full() == (
        "the job folder is over its cap: more than 10 files and folders "
        "(c.Grading.job_folder_inodes), measured after the run"
    )


def test_caps_of_zero_are_refused_not_read_as_unlimited(tmp_path):
    with pytest.raises(ValueError, match="c.Grading.job_folder_mib must be at least 1"):
        JobFolder.create(dir=tmp_path, size_bytes=0, inodes=10)
    with pytest.raises(ValueError, match="c.Grading.job_folder_inodes must be at least 1"):
        JobFolder.create(dir=tmp_path, size_bytes=MiB, inodes=0)


CHILD = """
import json, sys
from autograder.executors.job_folder import JobFolder
folder = JobFolder.create(dir=sys.argv[1], size_bytes=1 << 20, inodes=16)
print(json.dumps([folder.bounded, folder.problem, str(folder.path)]))
"""


def run_unprivileged(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """`script` in a Python process without any capability (as a non-root coordinator runs)."""
    return subprocess.run(
        ["setpriv", "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
    )


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="util-linux setpriv is not installed")
def test_an_unprivileged_coordinator_gets_a_disk_folder_and_says_why(tmp_path):
    """A real refusal: the coordinator's process without any capability (as a non-root one)."""
    import json

    done = run_unprivileged(CHILD, tmp_path)
    assert done.returncode == 0, done.stderr
    bounded, problem, path = json.loads(done.stdout.splitlines()[-1])
    assert not bounded and Path(path).is_dir() and mounts_under(Path(path)) == []
    assert "not bounded while the kernel runs: cannot mount a tmpfs (Operation not permitted" in problem
    assert "job folders are on disk, not bounded while kernels run" in done.stderr  # the log, once


UNREADABLE = """
import os, sys
from pathlib import Path
from autograder.executors.trees import measure_tree, remove_tree
root = Path(sys.argv[1]) / "tree"
(root / "a" / "b").mkdir(parents=True)
(root / "a" / "b" / "f").write_bytes(b"x" * 8192)
(root / "c").mkdir()
(root / "c" / "g").touch()
os.chmod(root / "a" / "b", 0)
os.chmod(root / "a", 0o100)
os.chmod(root / "c", 0o500)
try:
    os.listdir(root / "a")
    raise SystemExit("the coordinator reads past modes: not unprivileged")
except PermissionError:
    pass
print(measure_tree(root))
remove_tree(root)
print(os.path.lexists(root))
"""


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="util-linux setpriv is not installed")
def test_an_unprivileged_remover_gets_into_folders_the_kernel_locked(tmp_path):
    """Without CAP_DAC_OVERRIDE, folders made unreadable or read-only are measured and removed."""
    done = run_unprivileged(UNREADABLE, tmp_path)
    assert done.returncode == 0, done.stderr
    measured, left = done.stdout.splitlines()
    assert measured.endswith(", 5)") and left == "False"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not ROOT, reason="mounting a tmpfs needs root (CAP_SYS_ADMIN)")
def test_the_mounts_of_a_killed_coordinator_are_removed_by_the_next(tmp_path):
    killed = (
        "import os, sys\nfrom autograder.executors.job_folder import JobFolder\n"
        "f = JobFolder.create(dir=sys.argv[1], size_bytes=1 << 20, inodes=16)\n"
        "(f.path / 'left').write_text('x')\nos.kill(os.getpid(), 9)\n"
    )
    repo = Path(__file__).parent.parent
    done = subprocess.run([sys.executable, "-c", killed, str(tmp_path)], cwd=repo, timeout=60)
    assert done.returncode == -9
    [left] = [p for p in tmp_path.iterdir()]
    assert len(mounts_under(left)) == 1
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)], cwd=repo, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "left by a coordinator that died" in done.stderr
    assert mounts_under(left) == [] and not left.exists()
    assert list(tmp_path.iterdir()) == [] and mounts_under(tmp_path) == []  # the second child's: unmounted at exit


# ---------------------------------------------------------------------------- real kernels


class HostWatch:
    """Samples the host while a batch runs: the disk's use, the job folders made in `parent`
    and the mounts on them."""

    def __init__(self, parent: Path):
        self.parent, self.disk = parent, shutil.disk_usage(parent).used
        self.most_disk, self.folders, self.mounts = 0, set(), {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HostWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.most_disk = max(self.most_disk, shutil.disk_usage(self.parent).used - self.disk)
            self.folders.update(p.name for p in self.parent.iterdir())
            for line in mounts_under(self.parent):
                fields = line.split()
                self.mounts[fields[4]] = " ".join(fields[fields.index("-") + 1 :])
            time.sleep(0.05)


def left_on_host(parent: Path) -> dict:
    return {
        "folders": sorted(p.name for p in parent.iterdir()),
        "mounts": mounts_under(parent),
        "our mounts": job_folder.our_mounts(os.getpid()),
    }


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = new_course(tmp_path_factory.mktemp("job-folder-course"))
    # fresh kernels: their job folders are tmpfs mounts the host can watch; a forked kernel's
    # lies in its zygote's mount namespace, out of the host's mount table
    course.config.Grading.kernel_start = "fresh"
    write_lab(course.root, LAB, mean_square_lab())
    build_lab(course, LAB)
    return course


@pytest.fixture
def job_parent(monkeypatch):
    """The folder this test's job folders are made in (tempfile's own, as TMPDIR would set it):
    a short one in /tmp, so that what is left there is this test's alone."""
    parent = Path(tempfile.mkdtemp(prefix="agjf-", dir="/tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(parent))
    yield parent
    monkeypatch.undo()
    remove_tree(parent)


def canary(tmp_path: Path) -> Path:
    folder = tmp_path / "canary"
    folder.mkdir()
    (folder / "keep").write_text("keep")
    (folder / "sub").mkdir()
    (folder / "sub" / "keep").write_text("keep")
    return folder


def grade(course, students):
    for student in students:
        make_submission(course, LAB, student)
    return {r.student: r for r in grade_lab(course, LAB, [s.name for s in students], force=True, workers=2)}


@sandbox_only
@pytest.mark.skipif(not ROOT, reason="mounting a tmpfs needs root (CAP_SYS_ADMIN)")
def test_filling_the_job_folder_fails_that_submission_and_the_host_keeps_nothing(course, job_parent, tmp_path):
    host_canary = canary(tmp_path)
    students = [
        DemoStudent("honest", "correct answers"),
        DemoStudent("writer", "writes 2,000 MiB into its job folder", extra_cell=BIG_WRITER.format(mib_per_file=100)),
        DemoStudent("filer", "makes 100,000 files in its job folder", extra_cell=MANY_FILES),
        DemoStudent(
            "nester",
            "3,000 nested folders with links to the host's files, correct answers",
            extra_cell=DEEP.format(canary=str(host_canary), canary_file=str(host_canary / "keep")),
        ),
    ]
    with HostWatch(job_parent) as watch:
        results = grade(course, students)

    honest, writer, filer, nester = (results[s.name] for s in students)
    assert (honest.status, honest.score, honest.reason) == ("graded", 3.0, None)
    assert cell_scores(honest) == FULL
    assert (writer.status, writer.reason) == (
        "failed",
        "the job folder is full: 64 MiB written, its cap (c.Grading.job_folder_mib)",
    )
    assert (filer.status, filer.reason) == (
        "failed",
        "the job folder is full: 4096 files and folders, its cap (c.Grading.job_folder_inodes)",
    )
    assert (nester.status, nester.score, nester.reason) == ("graded", 3.0, None)  # within the caps: graded
    for result in results.values():
        assert result.sandboxed and not any("job folder" in w for w in result.warnings), result.warnings

    # The host: every job folder was a tmpfs of its caps, the disk took none of the 2,000 MiB,
    # nothing is left (folders, mounts), and the links the nester left were not followed.
    assert len(watch.mounts) >= 4, watch.mounts
    assert all(
        m.startswith("tmpfs autograder-job-") and "size=65536k" in m and "nr_inodes=4096" in m
        for m in watch.mounts.values()
    ), watch.mounts
    assert watch.most_disk < 1024 * MiB, f"the disk took {watch.most_disk / MiB:.0f} MiB while the batch ran"
    assert left_on_host(job_parent) == {"folders": [], "mounts": [], "our mounts": []}
    assert intact(host_canary)


@sandbox_only
def test_where_mounting_is_refused_the_disk_folder_is_measured_and_removed_however_deep(
    course, job_parent, tmp_path, monkeypatch
):
    """The unprivileged coordinator's fallback (mount(2) refused with EPERM): said in every result,
    the usage measured after the run, the 100,000 files and 3,000 nested folders removed."""
    monkeypatch.setattr(job_folder, "_mount_tmpfs", lambda *a: OSError(errno.EPERM, "Operation not permitted"))
    monkeypatch.setattr(job_folder, "_refused", None)
    host_canary = canary(tmp_path)
    students = [
        DemoStudent("honest", "correct answers"),
        DemoStudent(
            "writer", "writes 200 MiB into its job folder (on disk here)", extra_cell=BIG_WRITER.format(mib_per_file=10)
        ),
        DemoStudent("filer", "makes 100,000 files in its job folder", extra_cell=MANY_FILES),
        DemoStudent(
            "nester",
            "3,000 nested folders with links to the host's files, correct answers",
            extra_cell=DEEP.format(canary=str(host_canary), canary_file=str(host_canary / "keep")),
        ),
    ]
    with HostWatch(job_parent) as watch:
        results = grade(course, students)

    honest, writer, filer, nester = (results[s.name] for s in students)
    assert (honest.status, honest.score, honest.reason) == ("graded", 3.0, None)
    assert (writer.status, writer.reason) == (
        "failed",
        "the job folder is over its cap: more than 64 MiB written (c.Grading.job_folder_mib), measured after the run",
    )
    assert (filer.status, filer.reason) == (
        "failed",
        "the job folder is over its cap: more than 4096 files and "
        "folders (c.Grading.job_folder_inodes), measured after the run",
    )
    assert (nester.status, nester.score, nester.reason) == ("graded", 3.0, None)
    for result in results.values():
        assert any(
            w.startswith(
                "the job folder is on disk, not bounded while the kernel runs: cannot mount a tmpfs "
                "(Operation not permitted"
            )
            for w in result.warnings
        ), result.warnings
    assert watch.mounts == {}
    assert left_on_host(job_parent) == {"folders": [], "mounts": [], "our mounts": []}
    assert intact(host_canary)


@sandbox_only
@pytest.mark.skipif(not ROOT, reason="mounting a tmpfs needs root (CAP_SYS_ADMIN)")
def test_a_folder_too_small_for_the_sockets_fails_the_start_with_the_reason_not_a_hang(job_parent):
    """Five sockets do not fit in 4 files and folders: the kernel cannot bind them and dies."""
    spec = JobSpec(
        limits=default_limits(cell_timeout=20, notebook_timeout=60, job_folder_inodes=4), env={}, sandbox=True
    )
    nb = new_notebook(cells=[new_code_cell("print('never')")])

    async def start_and_run():
        session = await start_kernel(spec, Slot(0))
        return await run_session(session, Slot(0), nb, None)

    began = time.monotonic()
    result = asyncio.run(start_and_run())
    assert time.monotonic() - began < 60
    assert result.status == "failed"
    assert result.reason.startswith(
        "the job folder is full: 4 files and folders, its cap (c.Grading.job_folder_inodes); kernel did not start"
    ), result.reason
    assert left_on_host(job_parent) == {"folders": [], "mounts": [], "our mounts": []}


@sandbox_only
def test_a_callers_job_folder_on_disk_is_measured_after_the_run(tmp_path):
    """execute_notebook's job_dir is the caller's disk folder: over its caps, the run fails."""
    from autograder.executors.session import execute_notebook

    writer = FIND_JOB + "open(os.path.join(job, 'big'), 'wb').write(b'x' * (3 << 20))\n"
    result = execute_notebook(
        new_notebook(cells=[new_code_cell(writer)]),
        job_dir=tmp_path / "job",
        sandbox=True,
        limits=default_limits(cell_timeout=20, notebook_timeout=60, job_folder_bytes=2 * MiB),
    )
    assert (result.status, result.reason) == (
        "failed",
        "the job folder is over its cap: more than 2 MiB written (c.Grading.job_folder_mib), measured after the run",
    )
    assert result.cell_errors == {}


@sandbox_only
@pytest.mark.skipif(not ROOT, reason="mounting a tmpfs needs root (CAP_SYS_ADMIN)")
def test_the_short_sockets_folder_of_a_long_job_path_is_bounded_too(tmp_path):
    """Where the job folder's path is too long for a socket address, the sockets go to a short
    /tmp/agk-* folder, also writable in the sandbox: a small tmpfs (1 MiB, 64 files), removed after."""
    from autograder.executors.session import execute_notebook

    job = tmp_path / ("long" * 20) / "job"
    writer = (
        "import os, sys\nsockets = os.path.dirname(os.path.abspath(sys.argv[sys.argv.index('-f') + 1]))\n"
        "print(sockets)\ntry:\n    open(os.path.join(sockets, 'big'), 'wb').write(b'x' * (2 << 20))\n"
        "except OSError as err:\n    print(err.errno)\n"
    )
    result = execute_notebook(
        new_notebook(cells=[new_code_cell(writer)]),
        job_dir=job,
        sandbox=True,
        limits=default_limits(cell_timeout=20, notebook_timeout=60),
    )
    sockets, error = result.notebook.cells[0].outputs[0]["text"].split()
    assert sockets.startswith("/tmp/agk-") and error == str(errno.ENOSPC)
    assert (result.status, result.reason) == (
        "failed",
        "the job folder is full: 1 MiB written, its cap (c.Grading.job_folder_mib)",
    )
    assert not os.path.lexists(sockets) and mounts_under(Path(sockets)) == []

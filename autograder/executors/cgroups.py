"""The process limit of one job: a pids cgroup (pids.max) that the kernel joins before it starts.

The kernel counts threads as tasks there, so pids.max bounds threads and processes together.
Where no pids cgroup can be created (no cgroup hierarchy, none writable) a job runs without
one, and the reason is said. A coordinator killed before it removed its cgroups leaves them
behind: the next one empties and removes those of its pid namespace.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .limits import Limits
from .processes import pid_namespace

log = logging.getLogger(__name__)


@dataclass
class ProcessLimit:
    """A pids cgroup for one job, or a no-op with the reason why there is none.

    wrap(argv) makes the launched process join the cgroup itself before it execs argv, so
    everything it starts is counted from the first instruction on, with no race against a
    pid written in later.
    """

    path: Path | None
    reason: str | None = None  # why there is no limit (None when active)

    def wrap(self, argv: Sequence[str]) -> list[str]:
        if self.path is None:
            return list(argv)
        # $0 is the cgroup.procs file; "$@" the command. `exec` keeps the pid that joined.
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"), *argv]

    def pids(self) -> list[int]:
        if self.path is None:
            return []
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def signal_all(self, pids: list[int] | None = None) -> None:
        """SIGKILL every process in the cgroup once, without waiting (safe on an event loop)."""
        for pid in self.pids() if pids is None else pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def kill_all(self, timeout: float = 10.0) -> bool:
        """SIGKILL every process in the cgroup until it is empty; True when it is."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            if not pids:
                return True
            if time.monotonic() > deadline:
                return False
            self.signal_all(pids)
            time.sleep(0.05)

    def remove(self) -> None:
        if self.path is None:
            return
        emptied = self.kill_all()
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)  # exiting tasks leave the cgroup a little after SIGKILL
        log.warning("could not remove cgroup %s (%s)", self.path, "busy" if emptied else "processes left")


@contextmanager
def process_limit(job_name: str, limits: Limits) -> Iterator[ProcessLimit]:
    """A pids cgroup with pids.max = limits.max_processes for one job, removed on exit
    (killing whatever is still in it). Yields a no-op ProcessLimit with .reason set when no
    cgroup can be created here."""
    limit = _create_pids_cgroup(job_name, limits.max_processes)
    try:
        yield limit
    finally:
        limit.remove()


def _create_pids_cgroup(job_name: str, max_processes: int) -> ProcessLimit:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", job_name)[:80] + f"-{pid_namespace()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        parent = _pids_parent()
    except OSError as err:
        return ProcessLimit(None, f"no writable pids cgroup ({err})")
    if isinstance(parent, str):
        return ProcessLimit(None, parent)
    _reap_stale_cgroups(parent)
    path = parent / name
    try:
        path.mkdir()
    except OSError as err:
        return ProcessLimit(None, f"cannot create a pids cgroup in {parent}: {err.strerror or err}")
    try:
        (path / "pids.max").write_text(str(max_processes))
        return ProcessLimit(path)
    except OSError as err:
        path.rmdir()
        return ProcessLimit(None, f"cannot set pids.max in {path}: {err.strerror or err}")


def _reap_stale_cgroups(parent: Path) -> None:
    """Empty and remove the job cgroups of coordinators that died (named
    <job>-<pid namespace>-<pid>-<random>): what a SIGKILLed coordinator leaves, in case
    anything of its sandboxes outlived it. Only those of our pid namespace: another
    container's pids mean nothing here."""
    for path in parent.iterdir():
        found = re.search(r"-([0-9a-f]+)-(\d+)-[0-9a-f]{8}$", path.name)
        if not (found and path.is_dir() and found.group(1) == pid_namespace()):
            continue
        try:
            os.kill(int(found.group(2)), 0)
        except ProcessLookupError:
            log.warning("removing the cgroup %s left by a coordinator that died", path)
            ProcessLimit(path).remove()
        except PermissionError:
            pass


def _pids_parent() -> Path | str:
    """The folder job cgroups go in: <our own pids cgroup>/autograder, v1 or v2; or why not."""
    v1 = Path("/sys/fs/cgroup/pids")
    if (v1 / "cgroup.procs").exists():
        parent = _own_cgroup(v1, lambda controllers: "pids" in controllers.split(",")) / "autograder"
        parent.mkdir(exist_ok=True)
        return parent
    v2 = Path("/sys/fs/cgroup")
    if (v2 / "cgroup.controllers").exists():
        if "pids" not in (v2 / "cgroup.controllers").read_text().split():
            return "the cgroup v2 hierarchy has no pids controller"
        # v2 allows controllers only in cgroups without processes of their own ("no internal
        # processes"): use a subtree of the root, whose exemption makes this possible.
        parent = v2 / "autograder"
        parent.mkdir(exist_ok=True)
        for level in (v2, parent):
            if "pids" not in (level / "cgroup.subtree_control").read_text().split():
                (level / "cgroup.subtree_control").write_text("+pids")
        return parent
    return "no pids cgroup hierarchy is mounted at /sys/fs/cgroup"


def _own_cgroup(mount: Path, matches) -> Path:
    """Our own cgroup under a v1 mount (so delegated sub-hierarchies work), else the mount."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if matches(controllers) and (mount / path.lstrip("/")).is_dir():
                return mount / path.lstrip("/")
    except (OSError, ValueError):
        pass
    return mount

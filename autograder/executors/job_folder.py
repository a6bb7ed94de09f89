"""Job folders: the one place on the host a sandboxed kernel can write, bounded in size and files.

Each kernel's job folder (its connection file and ZeroMQ sockets, bound read-write into the
sandbox at its own path) is a tmpfs of its own, mounted by the coordinator with
`size=` and `nr_inodes=` caps: the kernel meets ENOSPC at the cap, the host's disk is never
used, and clean-up is one lazy unmount (MNT_DETACH) that drops the whole tree, however deep.
Mounting needs CAP_SYS_ADMIN (a root coordinator, as here and in CI). Where the mount is
refused (an unprivileged coordinator, a container without the capability) the folder stays a
plain folder on disk: that is logged once and each result carries a warning, and the folder's
usage is measured after the run against the same caps.

What this module does, and nothing else: create a bounded folder (mounts.py mounts it),
tell whether it is full (statvfs of the tmpfs; a measured walk of a disk folder), and remove
it (unmounted; what is left removed however deep by trees.py's remover, which never follows
a symlink).
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .mounts import job_mounts, reap_stale_mounts, source, umount
from .mounts import mount_tmpfs as _mount_tmpfs
from .processes import pid_namespace
from .trees import measure_tree, remove_tree

log = logging.getLogger(__name__)

MiB = 2**20
SIZE_SETTING, INODES_SETTING = "c.Grading.job_folder_mib", "c.Grading.job_folder_inodes"

_lock = threading.Lock()
_refused: str | None = None  # why mounting is impossible in this process (found once)
_mounted: set[str] = set()  # this process's live mounts (unmounted at exit)


@dataclass
class JobFolder:
    """A job folder and its caps.

    bounded: a tmpfs of our own (the caps hold while the kernel runs); False: a disk folder
    whose usage is only measured after the run. problem: why a folder meant to be bounded is
    not (None when bounded, or when the caller chose a plain folder).
    """

    path: Path
    size_bytes: int
    inodes: int
    bounded: bool = False
    problem: str | None = None
    _device: int | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ create

    @classmethod
    def create(
        cls,
        *,
        prefix: str = "autograder-",
        dir: str | os.PathLike | None = None,
        size_bytes: int,
        inodes: int,
        bound: bool = True,
    ) -> JobFolder:
        """A fresh folder (mkdtemp in `dir`, default the temporary folder), a tmpfs with these
        caps when `bound` and this process may mount; else a plain folder with `problem` set."""
        _check_caps(size_bytes, inodes)
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=dir)).resolve()
        folder = cls(path, size_bytes, inodes)
        if bound:
            folder._mount()
        return folder

    @classmethod
    def given(cls, path: str | os.PathLike, *, size_bytes: int, inodes: int) -> JobFolder:
        """The caller's own folder (created if missing), plain: measured after the run, and
        removed by the caller."""
        path = Path(path).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return cls(path, size_bytes, inodes)

    def _mount(self) -> None:
        global _refused
        reap_stale_mounts()
        with _lock:
            refused = _refused
        if refused is None:
            options = f"size={self.size_bytes},nr_inodes={self.inodes},mode=0700"
            error = _mount_tmpfs(self.path, source(), options)  # by this module's name: a test refuses it here
            if error is None:
                self.bounded, self._device = True, os.stat(self.path).st_dev
                with _lock:
                    _mounted.add(str(self.path))
                return
            if error.errno not in (errno.EPERM, errno.EACCES, errno.ENOSYS):
                # not "may not mount here" but something about this mount: try again next time
                self.problem = (
                    f"the job folder is on disk, not bounded while the kernel runs: mounting a tmpfs "
                    f"at {self.path} failed ({error.strerror})"
                )
                log.warning("%s", self.problem)
                return
            with _lock:
                first = _refused is None
                _refused = refused = f"{error.strerror}: the coordinator may not mount (no CAP_SYS_ADMIN)"
            if first:
                log.warning(
                    "job folders are on disk, not bounded while kernels run: mounting a tmpfs was "
                    "refused (%s); each folder's usage is checked after its run instead",
                    refused,
                )
        self.problem = (
            f"the job folder is on disk, not bounded while the kernel runs: cannot mount a tmpfs "
            f"({refused}); its usage is checked after the run against its caps "
            f"({_mib(self.size_bytes)}, {self.inodes} files and folders)"
        )

    # ------------------------------------------------------------------ measure

    def usage(self, stop_over: bool = False) -> tuple[int, int]:
        """(bytes, files and folders) in the folder, itself excluded. A bounded folder says it
        at once (statvfs); a disk folder is walked (blocks allocated, symlinks not followed),
        stopping once over a cap when stop_over."""
        if self.bounded:
            st = os.statvfs(self.path)
            return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_files - st.f_ffree - 1
        return measure_tree(
            self.path, max_bytes=self.size_bytes if stop_over else None, max_entries=self.inodes if stop_over else None
        )

    def full(self) -> str | None:
        """Why the folder is over its caps (a bounded one: full, the kernel hit the cap), or None."""
        try:
            if self.bounded:
                if os.stat(self.path).st_dev != self._device:
                    return "the job folder is no longer its own tmpfs (unmounted under the coordinator)"
                st = os.statvfs(self.path)
                size_full, inodes_full = st.f_bavail == 0, st.f_favail == 0
            else:
                size_bytes, entries = self.usage(stop_over=True)
                size_full, inodes_full = size_bytes > self.size_bytes, entries + 1 > self.inodes
        except OSError as err:
            return f"the job folder could not be measured: {err.strerror or err}"
        if not (size_full or inodes_full):
            return None
        what = f"{_mib(self.size_bytes)} written" if size_full else f"{self.inodes} files and folders"
        setting = SIZE_SETTING if size_full else INODES_SETTING
        if self.bounded:
            return f"the job folder is full: {what}, its cap ({setting})"
        return f"the job folder is over its cap: more than {what} ({setting}), measured after the run"

    # ------------------------------------------------------------------ remove

    def release(self) -> None:
        """Unmount a bounded folder (its whole tree goes at once); the empty mount point stays."""
        if not self.bounded:
            return
        self.bounded = False
        with _lock:
            _mounted.discard(str(self.path))
        error = umount(self.path)
        if error is not None:
            log.error("could not unmount the job folder %s: %s", self.path, error.strerror)

    def remove(self) -> None:
        """Unmount, then remove the folder and whatever is left in it."""
        self.release()
        try:
            remove_tree(self.path)
        except OSError:
            log.exception("could not remove the job folder %s", self.path)


def _check_caps(size_bytes: int, inodes: int) -> None:
    # tmpfs reads 0 as "no limit": never let a zero through
    if size_bytes < MiB:
        raise ValueError(f"{SIZE_SETTING} must be at least 1 (MiB), not {size_bytes / MiB:g}")
    if inodes < 1:
        raise ValueError(f"{INODES_SETTING} must be at least 1, not {inodes}")


def _mib(size: int) -> str:
    return f"{size // MiB} MiB" if size % MiB == 0 else f"{size / MiB:.1f} MiB"


def our_mounts(pid: int | None = None) -> list[str]:
    """Mount points of job folders in this mount namespace: those of coordinator `pid` (of our
    pid namespace), or all."""
    namespace = pid_namespace()
    return [point for point, ns, owner in job_mounts() if pid is None or (ns == namespace and owner == pid)]


@atexit.register
def _unmount_all() -> None:
    """What this process still has mounted when it exits (a batch that stopped on an exception)."""
    with _lock:
        left = list(_mounted)
        _mounted.clear()
    for path in left:
        umount(path)
        try:
            os.rmdir(path)
        except OSError:
            pass

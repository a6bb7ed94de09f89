"""Job folders: the one place on the host a sandboxed kernel can write, bounded in size and files.

Each kernel's job folder (its connection file and ZeroMQ sockets, bound read-write into the
sandbox at its own path) is a tmpfs of its own, mounted by the coordinator with
`size=` and `nr_inodes=` caps: the kernel meets ENOSPC at the cap, the host's disk is never
used, and clean-up is one lazy unmount (MNT_DETACH) that drops the whole tree, however deep.
Mounting needs CAP_SYS_ADMIN (a root coordinator, as here and in CI). Where the mount is
refused (an unprivileged coordinator, a container without the capability) the folder stays a
plain folder on disk: that is logged once and each result carries a warning, and the folder's
usage is measured after the run against the same caps.

What this module does, and nothing else: create a bounded folder, tell whether it is full
(statvfs of the tmpfs; a measured walk of a disk folder), and remove it and any tree, however
deep, with an iterative, fd-based remover that never follows a symlink.
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import logging
import os
import re
import stat
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

MiB = 2**20
# mount(2) flags (linux/mount.h) and umount2's MNT_DETACH
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MNT_DETACH = 2
# The mount's source names its coordinator, so that a later one can find what a killed one left:
# autograder-job-<pid namespace>-<pid>.
SOURCE_PREFIX = "autograder-job"
SIZE_SETTING, INODES_SETTING = "c.Grading.job_folder_mib", "c.Grading.job_folder_inodes"

_lock = threading.Lock()
_refused: str | None = None          # why mounting is impossible in this process (found once)
_reaped = False                      # stale mounts of dead coordinators looked for
_mounted: set[str] = set()           # this process's live mounts (unmounted at exit)


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
    def create(cls, *, prefix: str = "autograder-", dir: str | os.PathLike | None = None,
               size_bytes: int, inodes: int, bound: bool = True) -> "JobFolder":
        """A fresh folder (mkdtemp in `dir`, default the temporary folder), a tmpfs with these
        caps when `bound` and this process may mount; else a plain folder with `problem` set."""
        _check_caps(size_bytes, inodes)
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=dir)).resolve()
        folder = cls(path, size_bytes, inodes)
        if bound:
            folder._mount()
        return folder

    @classmethod
    def given(cls, path: str | os.PathLike, *, size_bytes: int, inodes: int) -> "JobFolder":
        """The caller's own folder (created if missing), plain: measured after the run, and
        removed by the caller."""
        path = Path(path).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return cls(path, size_bytes, inodes)

    def _mount(self) -> None:
        global _refused
        with _lock:
            _reap_stale_mounts()
            refused = _refused
        if refused is None:
            options = f"size={self.size_bytes},nr_inodes={self.inodes},mode=0700"
            error = _mount_tmpfs(self.path, _source(), options)
            if error is None:
                self.bounded, self._device = True, os.stat(self.path).st_dev
                with _lock:
                    _mounted.add(str(self.path))
                return
            if error.errno not in (errno.EPERM, errno.EACCES, errno.ENOSYS):
                # not "may not mount here" but something about this mount: try again next time
                self.problem = (f"the job folder is on disk, not bounded while the kernel runs: mounting a tmpfs "
                                f"at {self.path} failed ({error.strerror})")
                log.warning("%s", self.problem)
                return
            with _lock:
                first = _refused is None
                _refused = refused = f"{error.strerror}: the coordinator may not mount (no CAP_SYS_ADMIN)"
            if first:
                log.warning("job folders are on disk, not bounded while kernels run: mounting a tmpfs was "
                            "refused (%s); each folder's usage is checked after its run instead", refused)
        self.problem = (f"the job folder is on disk, not bounded while the kernel runs: cannot mount a tmpfs "
                        f"({refused}); its usage is checked after the run against its caps "
                        f"({_mib(self.size_bytes)}, {self.inodes} files and folders)")

    # ------------------------------------------------------------------ measure

    def usage(self, stop_over: bool = False) -> tuple[int, int]:
        """(bytes, files and folders) in the folder, itself excluded. A bounded folder says it
        at once (statvfs); a disk folder is walked (blocks allocated, symlinks not followed),
        stopping once over a cap when stop_over."""
        if self.bounded:
            st = os.statvfs(self.path)
            return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_files - st.f_ffree - 1
        return measure_tree(self.path, max_bytes=self.size_bytes if stop_over else None,
                            max_entries=self.inodes if stop_over else None)

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
        what = (f"{_mib(self.size_bytes)} written" if size_full else f"{self.inodes} files and folders")
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
        error = _umount(self.path)
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


# ---------------------------------------------------------------------------- mounts

_libc = None


def _libc_handle():
    global _libc
    if _libc is None:
        libc = ctypes.CDLL(None, use_errno=True)   # the C library this interpreter runs on
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        _libc = libc
    return _libc


def _mount_tmpfs(path: Path, source: str, options: str) -> OSError | None:
    """mount(2) a tmpfs at path (nosuid, nodev, noexec); None, or the error."""
    try:
        libc = _libc_handle()
    except (OSError, AttributeError) as err:
        return OSError(errno.ENOSYS, f"no mount(2) through libc: {err}")
    if libc.mount(source.encode(), os.fsencode(path), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  options.encode()) == 0:
        return None
    code = ctypes.get_errno()
    return OSError(code, os.strerror(code))


def _umount(path: str | Path) -> OSError | None:
    """umount2(path, MNT_DETACH); None, or the error."""
    if _libc_handle().umount2(os.fsencode(path), MNT_DETACH) == 0:
        return None
    code = ctypes.get_errno()
    return OSError(code, os.strerror(code))


def _source() -> str:
    return f"{SOURCE_PREFIX}-{_pid_namespace()}-{os.getpid()}"


def _pid_namespace() -> str:
    try:
        return f"{os.stat('/proc/self/ns/pid').st_ino:x}"
    except OSError:
        return "0"


def our_mounts(pid: int | None = None) -> list[str]:
    """Mount points of job folders in this mount namespace: those of coordinator `pid` (of our
    pid namespace), or all."""
    namespace = _pid_namespace()
    return [point for point, ns, owner in _job_mounts() if pid is None or (ns == namespace and owner == pid)]


def _job_mounts() -> list[tuple[str, str, int]]:
    """(mount point, pid namespace, coordinator pid) of every job folder tmpfs mounted here."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        before, dash, after = line.partition(" - ")
        fields, fs = before.split(), after.split()
        if not dash or len(fields) < 5 or len(fs) < 2 or fs[0] != "tmpfs":
            continue
        owner = re.fullmatch(rf"{SOURCE_PREFIX}-([0-9a-f]+)-(\d+)", fs[1])
        if owner:
            found.append((_unescape(fields[4]), owner.group(1), int(owner.group(2))))
    return found


def _reap_stale_mounts() -> None:
    """Once per process: unmount and remove the job folders of coordinators (of our pid namespace)
    that died without cleaning up (SIGKILL)."""
    global _reaped
    if _reaped:
        return
    _reaped = True
    namespace = _pid_namespace()
    for mount_point, ns, pid in _job_mounts():
        if ns != namespace or pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        log.warning("removing the job folder %s left by a coordinator that died", mount_point)
        if _umount(mount_point) is None:
            try:
                remove_tree(mount_point)
            except OSError:
                pass


def _unescape(text: str) -> str:
    """mountinfo's octal escapes (\\040 for a space...)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


@atexit.register
def _unmount_all() -> None:
    """What this process still has mounted when it exits (a batch that stopped on an exception)."""
    with _lock:
        left = list(_mounted)
        _mounted.clear()
    for path in left:
        _umount(path)
        try:
            os.rmdir(path)
        except OSError:
            pass


# ---------------------------------------------------------------------------- trees

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(path: str | os.PathLike) -> None:
    """Remove `path` and everything under it, however deep or wide, without following any
    symlink (a link is removed, never what it points to) and without crossing into another
    file system (a mount point inside is left, and so is its parent). A symlink given as `path`
    is removed itself. Iterative, with a handful of descriptors open whatever the depth, so
    that neither recursion nor the descriptor limit bounds it; a folder the kernel made
    unreadable (mode 0) is made ours (0700) first. A missing path is no error; other
    failures raise OSError once the rest is removed."""
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path.rstrip("/") or "/")
    parent_fd = os.open(parent or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            st = os.lstat(name, dir_fd=parent_fd)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=parent_fd)
            return
        errors = _walk(parent_fd, name, _remove_entry, _remove_folder)
        if errors:
            raise errors[0]
    finally:
        os.close(parent_fd)


def measure_tree(path: str | os.PathLike, *, max_bytes: int | None = None,
                 max_entries: int | None = None) -> tuple[int, int]:
    """(bytes allocated, files and folders) under `path`, itself excluded; symlinks counted,
    not followed; folders made unreadable are made ours (0700) first, so nothing hides from
    it. Stops early once over max_bytes or max_entries (the result is then over)."""
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path.rstrip("/") or "/")
    total = [0, 0]

    class _Over(Exception):
        pass

    def count(st: os.stat_result) -> None:
        total[0] += st.st_blocks * 512
        total[1] += 1
        if (max_bytes is not None and total[0] > max_bytes) or (max_entries is not None and total[1] > max_entries):
            raise _Over()

    def on_entry(dir_fd: int, entry: os.DirEntry) -> None:
        count(entry.stat(follow_symlinks=False))

    def on_folder(parent_fd: int, folder: str, st: os.stat_result, root: bool) -> None:
        if not root:
            count(st)

    parent_fd = os.open(parent or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _walk(parent_fd, name, on_entry, on_folder)
    except _Over:
        pass
    finally:
        os.close(parent_fd)
    return total[0], total[1]


def _remove_entry(dir_fd: int, entry: os.DirEntry) -> None:
    try:
        os.unlink(entry.name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _remove_folder(parent_fd: int, name: str, st: os.stat_result, root: bool) -> None:
    try:
        os.rmdir(name, dir_fd=parent_fd)
    except FileNotFoundError:
        pass


@dataclass
class _Level:
    name: str                 # this folder's name in its parent
    identity: tuple[int, int]  # (st_dev, st_ino): checked when climbing back through ".."
    stat: os.stat_result
    pending: list[str]        # subfolders still to visit
    scanned: bool = False


def _walk(top_fd: int, name: str, on_entry, on_folder) -> list[OSError]:
    """Depth-first, post-order walk of folder `name` in top_fd: on_entry(dir_fd, entry) for
    every non-folder (symlinks included), on_folder(parent_fd, name, stat, root) for every
    folder once its content is done. One folder's descriptor is open at a time: a subfolder is
    opened from its parent (O_NOFOLLOW), the parent again through "..", checked to be the
    same folder. Returns the errors met (the walk goes on past each)."""
    errors: list[OSError] = []
    fd, st = _open_folder(top_fd, name)
    if fd is None:
        return [st] if isinstance(st, OSError) else []
    device = st.st_dev
    stack = [_Level(name, (st.st_dev, st.st_ino), st, [])]
    try:
        while True:
            level = stack[-1]
            if not level.scanned:
                level.pending, level.scanned = _scan(fd, on_entry, errors), True
            if level.pending:
                child = level.pending.pop()
                child_fd, child_st = _open_folder(fd, child)
                if child_fd is None:
                    if isinstance(child_st, OSError):
                        errors.append(child_st)
                    continue
                if child_st.st_dev != device:   # a mount point inside: not ours to walk
                    os.close(child_fd)
                    errors.append(OSError(errno.EXDEV, "another file system inside the tree", child))
                    continue
                os.close(fd)
                fd = child_fd
                stack.append(_Level(child, (child_st.st_dev, child_st.st_ino), child_st, []))
                continue
            # this folder is done: leave it, and remove or count it from its parent
            stack.pop()
            if not stack:
                os.close(fd)
                fd = None
                _call(on_folder, errors, top_fd, level.name, level.stat, True)
                return errors
            up = os.open("..", _DIR_FLAGS, dir_fd=fd)
            up_st = os.fstat(up)
            os.close(fd)
            fd = up
            if (up_st.st_dev, up_st.st_ino) != stack[-1].identity:
                raise OSError(errno.ESTALE, "a folder moved while its tree was walked", level.name)
            _call(on_folder, errors, fd, level.name, level.stat, False)
    finally:
        if fd is not None:
            os.close(fd)


def _scan(fd: int, on_entry, errors: list[OSError]) -> list[str]:
    """Handle every non-folder in the folder at fd; return its subfolders' names."""
    folders = []
    with os.scandir(fd) as entries:
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.name)
                else:
                    on_entry(fd, entry)
            except OSError as err:
                if not isinstance(err, FileNotFoundError):
                    errors.append(err)
    return folders


def _call(function, errors: list[OSError], *args) -> None:
    try:
        function(*args)
    except OSError as err:
        errors.append(err)


def _open_folder(dir_fd: int, name: str) -> tuple[int | None, os.stat_result | OSError | None]:
    """(fd, stat) of subfolder `name`, never through a symlink; a folder the kernel made
    unreadable (mode 0) is made ours again first. (None, error) when it cannot be opened,
    (None, None) when it is gone or not a folder any more."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    except OSError as err:
        if err.errno == errno.ELOOP:   # a symlink now: not ours to follow
            return None, None
        if err.errno != errno.EACCES:
            return None, err
        try:
            _make_searchable(dir_fd, name)
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError as again:
            return None, again
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode):
        os.close(fd)
        return None, None
    if st.st_mode & 0o700 != 0o700:   # so that its entries can be removed (an unprivileged coordinator)
        try:
            os.chmod(fd, 0o700)
        except OSError:
            pass
    return fd, st


def _make_searchable(dir_fd: int, name: str) -> None:
    """chmod 0700 the folder `name`, through an O_PATH descriptor (never a symlink's target)."""
    handle = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if not stat.S_ISDIR(os.fstat(handle).st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", name)
        os.chmod(f"/proc/self/fd/{handle}", 0o700)
    finally:
        os.close(handle)

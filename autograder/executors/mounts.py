"""The tmpfs mounts of job folders: mount(2) and umount2(2) through libc, and what dead coordinators left.

Each mount's source names its coordinator (autograder-job-<pid namespace>-<pid>), so that the
mounts of job folders can be found in /proc/self/mountinfo, and the first mount of a later
coordinator unmounts and removes those whose coordinator died (SIGKILL) before it could.
job_folder.py decides when a folder is mounted and what happens where mounting is refused.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import re
import threading
from pathlib import Path

from .processes import pid_namespace
from .trees import remove_tree

log = logging.getLogger(__name__)

# mount(2) flags (linux/mount.h) and umount2's MNT_DETACH
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MS_BIND, MS_SHARED = 4096, 1 << 20
MNT_DETACH = 2
# The mount's source names its coordinator, so that a later one can find what a killed one left:
# autograder-job-<pid namespace>-<pid>.
SOURCE_PREFIX = "autograder-job"

_reap_lock = threading.Lock()
_reaped = False  # stale mounts of dead coordinators looked for
_libc = None


def _libc_handle():
    global _libc
    if _libc is None:
        libc = ctypes.CDLL(None, use_errno=True)  # the C library this interpreter runs on
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        _libc = libc
    return _libc


def mount_tmpfs(path: Path, source: str, options: str) -> OSError | None:
    """mount(2) a tmpfs at path (nosuid, nodev, noexec); None, or the error."""
    try:
        libc = _libc_handle()
    except (OSError, AttributeError) as err:
        return OSError(errno.ENOSYS, f"no mount(2) through libc: {err}")
    if (
        libc.mount(source.encode(), os.fsencode(path), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options.encode())
        == 0
    ):
        return None
    code = ctypes.get_errno()
    return OSError(code, os.strerror(code))


def bind_shared(path: str | Path) -> OSError | None:
    """Bind `path` onto itself and make it a shared mount: what is mounted under it later shows
    in sandboxes that bound it earlier (a kernel factory's jobs folder, zygote.py). None, or
    the error (no CAP_SYS_ADMIN: its folders are then plain and show without propagation)."""
    try:
        libc = _libc_handle()
    except (OSError, AttributeError) as err:
        return OSError(errno.ENOSYS, f"no mount(2) through libc: {err}")
    target = os.fsencode(path)
    if libc.mount(target, target, None, MS_BIND, None) != 0:
        code = ctypes.get_errno()
        return OSError(code, os.strerror(code))
    if libc.mount(None, target, None, MS_SHARED, None) != 0:
        code = ctypes.get_errno()
        libc.umount2(target, MNT_DETACH)
        return OSError(code, os.strerror(code))
    return None


def umount(path: str | Path) -> OSError | None:
    """umount2(path, MNT_DETACH); None, or the error."""
    if _libc_handle().umount2(os.fsencode(path), MNT_DETACH) == 0:
        return None
    code = ctypes.get_errno()
    return OSError(code, os.strerror(code))


def source() -> str:
    """The source of this coordinator's mounts: autograder-job-<pid namespace>-<pid>."""
    return f"{SOURCE_PREFIX}-{pid_namespace()}-{os.getpid()}"


def job_mounts() -> list[tuple[str, str, int]]:
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


def reap_stale_mounts() -> None:
    """Once per process: unmount and remove the job folders of coordinators (of our pid namespace)
    that died without cleaning up (SIGKILL)."""
    global _reaped
    with _reap_lock:
        if _reaped:
            return
        _reaped = True
        namespace = pid_namespace()
        for mount_point, ns, pid in job_mounts():
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
            if umount(mount_point) is None:
                try:
                    remove_tree(mount_point)
                except OSError:
                    pass


def _unescape(text: str) -> str:
    """mountinfo's octal escapes (\\040 for a space...)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)

"""The sandbox a student's kernel runs in: bubblewrap's command line, and whether it works here.

sandbox_argv() wraps a kernel's command in bwrap (namespaces, the host's allow-list from
host_system.py, the binds) under prlimit (limits.py); the pids cgroup around it is
cgroups.py's. probe() runs `true` under that same command line to tell whether this machine
can sandbox at all.

Only the kernel process goes inside; the coordinator (nbclient) stays outside and talks to
it over ZeroMQ `ipc` sockets in the job directory, the one writable host folder the sandbox
sees, bound at the same absolute path on both sides. There is no network namespace to
reach: the sandbox has its own, empty one.

What the kernel sees: of the host's system, an allow-list, read-only (host_system.py: the
programs of /usr/bin, the folders of the shared libraries with their subfolders masked
empty, the loader, glibc's C.UTF-8 locale, fontconfig and the fonts); then the Python
installation and the virtualenv (read-only), the caller's read-only binds, the job
directory, a private sized /tmp (holding HOME and the working directory) and /dev/shm, and
a minimal /dev without GPUs unless some are given. Everything else of the host is absent:
the rest of /usr (/usr/share/datasets, where Debian's dataset-fashion-mnist installs the
test labels; /usr/lib/python3), /root, /work, /home, /sys and the rest of /etc.
tests/test_sandbox_visibility.py proves it by hashing everything a kernel can read. All
capabilities are dropped: the coordinator runs as root and bwrap would otherwise leave the
sandbox's root with a full set inside its user namespace, enough to remount the read-only
binds writable.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .host_system import SYSTEM_PROGRAM_PATH, system_flags, tool
from .limits import PROBE_LIMITS, Limits, rlimit_argv

SANDBOX_TMP = "/tmp"
SANDBOX_HOME = "/tmp/home"
SANDBOX_WORKDIR = "/tmp/work"
GPU_SHARED_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")
# Pid 2 of the sandbox: a subshell waits for EOF on the lifeline fd (the coordinator's write
# end closes when it exits, even by SIGKILL), then kills every process of the sandbox; the
# shell itself execs the command. bwrap's --die-with-parent alone leaks the sandbox when the
# coordinator dies in the first milliseconds, before bwrap's processes have set PDEATHSIG.
# `kill -1` is safe only inside the sandbox's own pid namespace. The pipe is read through
# /proc/self/fd: dash (Debian's /bin/sh) redirects only fds 0-9, and a coordinator with many
# files open holds a higher one (`<&12` is a syntax error that silently ended the watcher).
# Reopening an anonymous pipe there never waits for a writer: EOF at once if none is left.
LIFELINE_SCRIPT = 'fd=$1; shift; (read _ < "/proc/self/fd/$fd"; kill -KILL -1) & exec "$@"'


@dataclass(frozen=True)
class SandboxStatus:
    available: bool
    reason: str


# ---------------------------------------------------------------------------- command line


def sandbox_argv(
    inner_argv: Sequence[str],
    *,
    job_dir: Path,
    read_only: Sequence[tuple[Path, str]] = (),
    env: dict[str, str],
    limits: Limits,
    gpu_devices: Sequence[str] = (),
    writable: Sequence[Path] = (),
    lifeline_fd: int | None = None,
    capabilities: Sequence[str] = (),
) -> list[str]:
    """The full command that runs inner_argv in the sandbox: prlimit, then bwrap.

    job_dir (and any `writable` folder) is bound read-write at its own path; read_only
    holds (host path, path inside) pairs. env is the sandbox's whole environment on top of
    PATH and HOME: nothing is inherited. gpu_devices: nodes such as "/dev/nvidia0" to expose.
    lifeline_fd: the read end of a pipe whose write end only the caller holds (pass it with
    Popen's pass_fds); the sandbox kills itself when that pipe closes.
    capabilities: kept inside the sandbox's user namespace (all others dropped): only for a
    kernel factory (zygote.py), which never runs student code; a kernel gets none.
    """
    if gpu_devices and limits.memory_bytes is not None:
        raise ValueError("GPU jobs need Limits(memory_bytes=None): RLIMIT_AS breaks CUDA initialisation")
    job_dir = Path(job_dir)
    if not job_dir.is_absolute():
        raise ValueError(f"job_dir must be absolute (it is bound at the same path inside): {job_dir}")
    bwrap = [
        tool("bwrap"),
        *_namespace_flags(capabilities),
        *system_flags(),
        "--proc",
        "/proc",
        "--dev",
        "/dev",  # the host's allow-list (host_system.py)
        *_scratch_flags(limits),
        *_python_flags(),
        *_gpu_flags(gpu_devices),
        *_bind_flags([job_dir, *map(Path, writable)], read_only),
        *_environment_flags(env),
        *_finish_flags(),
        "--",
        *_lifeline(inner_argv, lifeline_fd),
    ]
    return rlimit_argv(bwrap, limits)


def sandbox_environment(env: dict[str, str] | None = None, *, home: str = SANDBOX_HOME) -> dict[str, str]:
    """PATH (virtualenv first) and HOME, overridden by the caller's env."""
    path = f"{sys.prefix}/bin:/usr/local/bin:/usr/bin:/bin"
    return {"PATH": path, "HOME": home, **(env or {})}


def _namespace_flags(capabilities: Sequence[str] = ()) -> list[str]:
    # --new-session: no TIOCSTI into the coordinator's terminal. --cap-drop ALL: see module doc.
    kept = [flag for cap in capabilities for flag in ("--cap-add", cap)]
    return ["--unshare-all", "--die-with-parent", "--new-session", "--clearenv", "--cap-drop", "ALL", *kept]


def _python_flags() -> list[str]:
    """The interpreter's installation and the virtualenv, read-only, at their own paths.

    Only these prefixes, not their parents: here the installation lives under /root/.pyenv,
    and the rest of /root stays invisible. An interpreter installed in /usr (Debian's
    python3) brings its own folders only (stdlib, lib-dynload, its site-packages as sysconfig
    names them), never all of /usr; its program is in /usr/bin.
    """
    import sysconfig

    paths = []
    for prefix in (os.path.realpath(sys.base_prefix), sys.base_prefix, sys.prefix):
        if prefix == "/usr" or prefix.startswith("/usr/"):
            folders = sysconfig.get_paths()
            paths += [folders[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")]
        else:
            paths.append(prefix)
    flags = []
    for path in dict.fromkeys(paths):
        if os.path.isdir(path):
            flags += ["--ro-bind", path, path]
    return flags


def _scratch_flags(limits: Limits) -> list[str]:
    """Sized tmpfs for /tmp (with HOME and the working dir) and /dev/shm (multiprocessing,
    DataLoader workers). Mounted before any bind, since the job directory (or even the
    virtualenv) may lie under /tmp: a tmpfs mounted later would hide it."""
    size = str(limits.tmpfs_bytes)
    return [
        "--size",
        size,
        "--tmpfs",
        SANDBOX_TMP,
        "--dir",
        SANDBOX_HOME,
        "--dir",
        SANDBOX_WORKDIR,
        "--size",
        size,
        "--tmpfs",
        "/dev/shm",
    ]


def _gpu_flags(gpu_devices: Sequence[str]) -> list[str]:
    """The given GPU nodes plus NVIDIA's shared control nodes; nothing when none are given
    (--dev /dev creates a minimal /dev without any /dev/nvidia*)."""
    if not gpu_devices:
        return []
    nodes = list(dict.fromkeys([*map(str, gpu_devices), *(n for n in GPU_SHARED_NODES if os.path.exists(n))]))
    flags = []
    for node in nodes:
        if not os.path.exists(node):
            raise ValueError(f"GPU device node {node} does not exist")
        flags += ["--dev-bind", node, node]
    return flags


def _bind_flags(writable: Sequence[Path], read_only: Sequence[tuple[Path, str]]) -> list[str]:
    flags = []
    for host, inside in read_only:
        if not os.path.exists(host):
            raise FileNotFoundError(f"read-only bind source {host} does not exist")
        flags += ["--ro-bind", str(host), str(inside)]
    for folder in writable:
        flags += ["--bind", str(folder), str(folder)]
    return flags


def _environment_flags(env: dict[str, str]) -> list[str]:
    flags = []
    for key, value in sandbox_environment(env).items():
        flags += ["--setenv", key, value]
    return flags


def _finish_flags() -> list[str]:
    """Last: the root and /dev tmpfs that bwrap built read-only (non-recursive, so /tmp,
    /dev/shm and the binds keep their own modes), and start in the working dir."""
    return ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", SANDBOX_WORKDIR]


def _lifeline(argv: Sequence[str], fd: int | None) -> list[str]:
    return list(argv) if fd is None else ["/bin/sh", "-c", LIFELINE_SCRIPT, "sh", str(fd), *argv]


# ---------------------------------------------------------------------------- probe


@functools.lru_cache(maxsize=1)
def probe() -> SandboxStatus:
    """Whether the sandbox works here: runs `true` under the same command the kernels get."""
    for name, package in (("bwrap", "bubblewrap"), ("prlimit", "util-linux")):
        if shutil.which(name, path=SYSTEM_PROGRAM_PATH) is None:
            return SandboxStatus(
                False, f"{name} is not installed: install Debian's {package} (apt-get install {package})"
            )
    with tempfile.TemporaryDirectory(prefix="autograder-probe-") as job_dir:
        try:
            argv = sandbox_argv(["/usr/bin/true"], job_dir=Path(job_dir).resolve(), env={}, limits=PROBE_LIMITS)
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=30,
                env={"PATH": "/usr/bin:/bin"},
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            return SandboxStatus(False, f"bubblewrap could not be run: {err}")
    if done.returncode == 0:
        return SandboxStatus(True, "bubblewrap works")
    return SandboxStatus(False, _explain_failure(done.stderr.strip() or f"exit code {done.returncode}"))


def _explain_failure(error: str) -> str:
    if re.search(r"namespace|uid map|unshare|Operation not permitted|No permissions", error, re.I):
        if "proc" in error:
            return (
                f"bubblewrap cannot mount /proc ({error}): the container masks /proc; run it with "
                "`--security-opt systempaths=unconfined` or grade outside the container"
            )
        hint = (
            "user namespaces are blocked: inside Docker's default seccomp profile run the container with "
            "`--security-opt seccomp=unconfined` (or a profile allowing unshare/clone with CLONE_NEWUSER); "
            "on a host, enable them (sysctl user.max_user_namespaces > 0, "
            "kernel.unprivileged_userns_clone=1, or on Ubuntu 24.04 "
            "kernel.apparmor_restrict_unprivileged_userns=0)"
        )
        return f"bubblewrap cannot create its namespaces ({error}): {hint}"
    return f"bubblewrap failed: {error}"

"""How a session launches its kernel: the kernel's command line, environment, folders and log.

A sandboxed kernel starts under bubblewrap (sandbox.py) with a lifeline, or is forked from its
slot's kernel factory (zygote.py) through a connector that stands for it here; an unsandboxed one
(the trusted build, or no bubblewrap here) as a plain process under the rlimits, the sandbox's
layout emulated in its job folder. Either way it joins its pids cgroup (cgroups.py) first, and
its connection file and ipc sockets go where a Unix socket address can reach them.
KernelRequest is what the session was given, as the launch reads it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .cgroups import ProcessLimit
from .job_folder import JobFolder
from .limits import Limits, rlimit_argv
from .sandbox import sandbox_argv, sandbox_environment
from .zygote import Zygote

# Longest path a Unix socket address may have (sun_path is 108 bytes with the final NUL).
MAX_SOCKET_PATH = 107
# Caps of the short sockets folder used where the job folder's path is too long for a socket
# address (the job folder's own caps when smaller): a connection file and five sockets.
SOCKET_FOLDER_BYTES, SOCKET_FOLDER_INODES = 1 * 2**20, 64


@dataclass(frozen=True)
class KernelRequest:
    """What a session was given (KernelSession's arguments): the kernel's job folder, limits,
    whole environment, read-only binds, GPU device nodes, sandbox choice and working folder."""

    job_folder: JobFolder
    limits: Limits
    env: dict[str, str]
    read_only: list[tuple[Path, str]]
    gpu_devices: list[str]
    sandbox: bool | None
    cwd: Path | None
    zygote: Zygote | None = None  # fork the kernel from this slot's factory (zygote.py), sandboxed only

    @property
    def job_dir(self) -> Path:
        return self.job_folder.path


def launch_arguments(
    request: KernelRequest,
    *,
    sandboxed: bool,
    processes: ProcessLimit,
    sockets: Path,
    lifeline: tuple[int, ...],
    log_file: IO[bytes],
) -> tuple[Callable[[list[str]], list[str]], dict]:
    """(wrap, arguments): what wraps the kernel's command line (the sandbox, or the rlimits
    alone, inside the process cgroup) and the kernel manager's launch arguments (its log,
    environment, working folder and, sandboxed, the lifeline's read end)."""
    launch: dict[str, Any] = {"stdout": log_file, "stderr": log_file}
    if sandboxed:
        writable = [] if sockets.is_relative_to(request.job_dir) else [sockets]
        lifeline_fd = lifeline[0]

        zygote = request.zygote

        def wrap(argv: list[str]) -> list[str]:
            if zygote is not None:  # the forked kernel's connector, in the job's cgroup
                procs = processes.path / "cgroup.procs" if processes.path is not None else None
                connector = zygote.kernel_argv(argv, job_dir=request.job_dir, procs=procs, lifeline_fd=lifeline_fd)
                return processes.wrap(connector)
            return processes.wrap(
                sandbox_argv(
                    argv,
                    job_dir=request.job_dir,
                    read_only=request.read_only,
                    env=request.env,
                    limits=request.limits,
                    gpu_devices=request.gpu_devices,
                    writable=writable,
                    lifeline_fd=lifeline_fd,
                )
            )

        popen_env, cwd = {"PATH": "/usr/bin:/bin"}, request.job_dir  # bwrap clears it anyway
        launch["pass_fds"] = (lifeline_fd,)
    else:
        # No lifeline: `kill -1` would reach the whole host. The kernel itself exits when
        # this process does (ipykernel polls JPY_PARENT_PID, which jupyter_client sets).
        def wrap(argv: list[str]) -> list[str]:
            return processes.wrap(rlimit_argv(argv, request.limits))

        popen_env = unsandboxed_environment(request.job_dir, request.env, request.read_only)
        cwd = Path(request.cwd) if request.cwd else request.job_dir / "work"
        cwd.mkdir(parents=True, exist_ok=True)
    return wrap, {**launch, "env": popen_env, "cwd": str(cwd)}


def socket_dir(job_folder: JobFolder, bound: bool) -> tuple[Path, JobFolder | None]:
    """Where the connection file and ipc sockets go: job_dir/kernel, or a short folder of our
    own where that path is too long for a Unix socket address, bounded as the job folder is
    (when `bound`: a small tmpfs where this process may mount). Returns (folder, ours or None)."""
    folder = job_folder.path / "kernel"
    if len(str(folder / "ipc-99999")) <= MAX_SOCKET_PATH:
        folder.mkdir(exist_ok=True)
        return folder, None
    own = JobFolder.create(
        prefix="agk-",
        dir="/tmp",
        size_bytes=min(job_folder.size_bytes, SOCKET_FOLDER_BYTES),
        inodes=min(job_folder.inodes, SOCKET_FOLDER_INODES),
        bound=bound,
    )
    return own.path, own


def unsandboxed_environment(job_dir: Path, env: dict[str, str], read_only) -> dict[str, str]:
    """The environment of a kernel without sandbox, the sandbox's layout emulated in job_dir/root.

    Each read_only bind becomes a symlink job_dir/root/<inside path> → host path, and each
    env value part (split on ':') naming a path of that view is rewritten into it, so that
    PYTHONPATH=/opt/lib still finds the bound packages.
    """
    root = job_dir / "root"
    for host, inside in read_only:
        link = root / str(inside).lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(Path(host).resolve())

    def rewrite(value: str) -> str:
        return ":".join(
            str(root / part.lstrip("/"))
            if part.startswith("/") and part.strip("/") and (root / part.lstrip("/")).exists()
            else part
            for part in value.split(":")
        )

    home = job_dir / "home"
    home.mkdir(exist_ok=True)
    if read_only:
        env = {key: rewrite(value) for key, value in env.items()}
    return sandbox_environment(env, home=str(home))


def log_tail(log_file, lines: int = 12, limit: int = 2000) -> str:
    """The end of the kernel's stdout/stderr (bwrap's and Python's start-up errors land there)."""
    try:
        log_file.seek(0, os.SEEK_END)
        log_file.seek(max(0, log_file.tell() - limit))
        text = log_file.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return ""
    tail = "\n".join(text.strip().splitlines()[-lines:])
    return f"\n{tail}" if tail else ""

"""Kernels forked from a per-slot factory ("zygote"): the coordinator's side.

One Zygote per slot: a Python process inside that slot's bubblewrap sandbox (the same command
line, limits, binds and GPU node as a fresh kernel's, plus CAP_SYS_ADMIN and CAP_NET_ADMIN kept
in the sandbox's own user namespace) that has imported what the lab's source notebooks import,
never runs student code and never initialises CUDA. A kernel for a job is one fork of it, which
enters namespaces of its own before it becomes the ipykernel (zygote_main.py says how; the
README's sandbox section says why that is as strong as a fresh sandbox).

jupyter_client launches and watches the job's connector (zygote_connect.py), a host process of a
few milliseconds that lives exactly as long as the forked kernel, so the session's kernel
handling (kill, exit status, pids cgroup, output cap, timeouts) is the same for both ways.
Zygote.start() ends with a probe job that goes through every step but the kernel: where the
machine cannot nest namespaces (or anything else fails) it says why, and the executor starts
fresh kernels instead, saying so in every result.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from .cgroups import process_limit
from .limits import Limits
from .mounts import bind_shared, umount
from .processes import pid_namespace
from .sandbox import sandbox_argv
from .trees import remove_tree

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
ZYGOTE_PROGRAM = HERE / "zygote_main.py"
CONNECTOR_PROGRAM = HERE / "zygote_connect.py"
ZYGOTE_INSIDE = "/opt/autograder-zygote/zygote_main.py"
ZYGOTE_CAPABILITIES = ("CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SETFCAP")  # in its own user namespace only
# What every kernel imports at start-up, imported once in the zygote too (no threads, no state):
# ipykernel's modules, and what its initialisation imports late (its debugger, IPython's
# inspector and completer, the history's sqlite3): ~0.06-0.2 s of every forked kernel's start.
KERNEL_MODULES = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "jupyter_client.session",
    "ipykernel.debugger",
    "IPython.core.completerlib",
    "IPython.core.debugger",
    "IPython.core.oinspect",
    "sqlite3",
    "tornado.gen",
    "tornado.locks",
    "tornado.queues",
)
SCM_CREDENTIALS, SO_PASSCRED = 2, 16


FOLDER_PREFIX = "agz-"  # /tmp/agz-<pid namespace>-<coordinator pid>-XXXXXXXX


def reap_stale_folders() -> None:
    """Unmount and remove the zygote folders of coordinators (of our pid namespace) that died
    without cleaning up (SIGKILL): their sandboxes died with them, their folders did not."""
    namespace = pid_namespace()
    for folder in Path("/tmp").glob(f"{FOLDER_PREFIX}{namespace}-*-*"):
        try:
            os.kill(int(folder.name.split("-")[2]), 0)
            continue
        except ProcessLookupError:
            pass
        except (PermissionError, ValueError, IndexError):
            continue
        log.warning("removing the zygote folder %s left by a coordinator that died", folder)
        umount(folder / "jobs")
        try:
            remove_tree(folder)
        except OSError:
            pass


class Zygote:
    """A slot's kernel factory: start() once, kernel_argv() per job, close() at the end.

    Its folder (/tmp/agz-XXXX) holds ctl/ (the zygote's socket, bound into its sandbox only)
    and jobs/ (where the slot's job folders are made; a shared mount where this process may
    mount, so that a job folder's tmpfs mounted later appears in the zygote's sandbox too).
    """

    def __init__(
        self,
        *,
        limits: Limits,
        env: dict[str, str],
        read_only: Sequence[tuple[Path, str]],
        gpu_devices: Sequence[str],
        modules: Sequence[str],
        name: str = "zygote",
    ):
        self.limits, self.env, self.read_only = limits, dict(env), list(read_only)
        self.gpu_devices, self.name = list(gpu_devices), name
        self.modules = list(dict.fromkeys([*KERNEL_MODULES, *modules]))
        reap_stale_folders()
        prefix = f"{FOLDER_PREFIX}{pid_namespace()}-{os.getpid()}-"
        self.folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")).resolve()
        self.ctl, self.jobs = self.folder / "ctl", self.folder / "jobs"
        self.ctl.mkdir()
        self.jobs.mkdir()
        self.socket_path = self.ctl / "zygote.sock"
        self.shared = False
        self.process: subprocess.Popen | None = None
        self.log_file: IO[bytes] | None = None
        self._lifeline: tuple[int, int] | None = None
        self.start_seconds = 0.0
        self.import_errors: list[str] = []

    # ------------------------------------------------------------------ start

    async def start(self) -> str | None:
        """Start the zygote and run a probe job through it. None, or why it cannot fork kernels."""
        began = time.monotonic()
        try:
            return await asyncio.to_thread(self._start)
        finally:
            self.start_seconds = round(time.monotonic() - began, 3)

    def _start(self) -> str | None:
        self.shared = bind_shared(self.jobs) is None
        self.log_file = tempfile.TemporaryFile()
        self._lifeline = os.pipe()
        argv = sandbox_argv(
            [sys.executable, ZYGOTE_INSIDE, str(self.socket_path), json.dumps(self.modules)],
            job_dir=self.ctl,
            read_only=[*self.read_only, (ZYGOTE_PROGRAM, ZYGOTE_INSIDE)],
            env=self.env,
            limits=self.limits,
            gpu_devices=self.gpu_devices,
            writable=[self.jobs],
            lifeline_fd=self._lifeline[0],
            capabilities=ZYGOTE_CAPABILITIES,
        )
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self.log_file,
                env={"PATH": "/usr/bin:/bin"},
                pass_fds=(self._lifeline[0],),
                start_new_session=True,
            )
        except OSError as err:
            return f"the zygote could not be started: {err}"
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # bounded by the zygote's own limits and die-with-parent
        try:
            said = json.loads(line)
        except ValueError:
            return f"the zygote did not start{self._log_tail()}"
        if "error" in said:
            return f"the zygote cannot fork kernels: {said['error']}"
        self.import_errors = list(said.get("import_errors", []))
        return self._probe()

    def _probe(self) -> str | None:
        """A job that sets up its namespaces, mounts and privileges, then ends without a kernel;
        its pid 1 joins a pids cgroup on the way, as a kernel's does (where there are cgroups)."""
        job = Path(tempfile.mkdtemp(prefix="probe-", dir=self.jobs))
        try:
            with (
                process_limit(f"zygote-probe-{self.folder.name}", self.limits) as processes,
                socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn,
            ):
                conn.settimeout(60)
                conn.setsockopt(socket.SOL_SOCKET, SO_PASSCRED, 1)
                conn.connect(str(self.socket_path))
                conn.sendall((json.dumps({**self.request(job), "probe": True}) + "\n").encode())
                first, ancillary, _, _ = conn.recvmsg(1, socket.CMSG_SPACE(12))
                if first == b"P":
                    creds = [d for _, kind, d in ancillary if kind == SCM_CREDENTIALS]
                    pid = struct.unpack("iII", creds[0][:12])[0] if creds else 0
                    if processes.path is not None:
                        try:
                            (processes.path / "cgroup.procs").write_text(str(pid))
                        except OSError as err:
                            return f"a forked kernel cannot join its pids cgroup: {err}"
                    conn.sendall(b"go\n")
                data = first
                while True:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            text = data.decode("utf-8", "replace")
            lines = [line for line in text.lstrip("P").splitlines() if line]
            if lines == ["exit 0"]:
                return None
            errors = [line[2:] for line in lines if line.startswith("E ")]
            return "a forked kernel cannot get namespaces of its own here: " + (
                "; ".join(errors) or text.strip() or "the probe job ended without a word"
            )
        except OSError as err:
            return f"the zygote did not answer its probe job: {err}{self._log_tail()}"
        finally:
            remove_tree(job)

    # ------------------------------------------------------------------ per job

    def request(self, job_dir: Path) -> dict:
        """What a job's forked kernel is told (besides the kernel's arguments)."""
        return {
            "job_dir": str(job_dir),
            "hide": [str(self.folder)],
            "tmpfs_bytes": self.limits.tmpfs_bytes,
            "cwd": "/tmp/work",
        }

    def kernel_argv(self, argv: Sequence[str], *, job_dir: Path, procs: Path | None, lifeline_fd: int) -> list[str]:
        """The connector's command line standing for `argv` (the kernel's `python -m ipykernel_launcher ...`)."""
        return [
            sys.executable,
            "-I",
            "-S",
            str(CONNECTOR_PROGRAM),
            str(self.socket_path),
            str(procs) if procs is not None else "-",
            str(lifeline_fd),
            json.dumps(self.request(job_dir)),
            "--",
            *argv,
        ]

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # ------------------------------------------------------------------ close

    def close(self) -> None:
        """Kill the zygote's sandbox (and with it every job it forked), remove its folder."""
        if self._lifeline is not None:
            for fd in self._lifeline:
                os.close(fd)
            self._lifeline = None
        if self.process is not None:
            try:
                os.killpg(self.process.pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log.error("the zygote %s survived SIGKILL", self.name)
            if self.process.stdout is not None:
                self.process.stdout.close()
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None
        if self.shared:
            umount(self.jobs)
            self.shared = False
        try:
            remove_tree(self.folder)
        except OSError:
            log.exception("could not remove the zygote's folder %s", self.folder)

    def _log_tail(self) -> str:
        if self.log_file is None:
            return ""
        try:
            self.log_file.seek(0)
            text = self.log_file.read()[-2000:].decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return f"\n{text}" if text else ""

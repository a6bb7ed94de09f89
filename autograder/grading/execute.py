"""Run one notebook: nbclient here, the ipykernel inside the sandbox, limits around both.

The coordinator side (this module, nbclient, jupyter_client) is trusted and never enters the
sandbox; only the kernel process does. They speak ZeroMQ over `ipc` sockets in the job
directory, bound into the sandbox at the same path. Whatever the notebook's code does
(raise, loop, ignore SIGINT, kill itself, flood the output, fork) ends as an
ExecutionResult, never as an exception here; and when execute_notebook returns, the kernel
and everything it started are dead.
"""

from __future__ import annotations

import asyncio
import atexit
import copy
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import zmq
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from .sandbox import Limits, ProcessLimit, process_limit, probe, rlimit_argv, sandbox_argv, sandbox_environment

log = logging.getLogger(__name__)

KERNEL_ARGV = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
# Longest path a Unix socket address may have (sun_path is 108 bytes with the final NUL).
MAX_SOCKET_PATH = 107
# iopub messages that are not output: neither counted nor capped.
NOT_OUTPUT = {"status", "execute_input", "clear_output"}


@dataclass
class ExecutionResult:
    """What running a notebook gave.

    notebook:    the executed copy, outputs included (cells after a stop have none).
    status:      "completed" (every cell ran; some may have raised) or "failed".
    reason:      why it failed, for people ("timeout: cell 7 ran longer than 300 s").
    sandboxed:   whether the kernel ran inside bubblewrap.
    cell_errors: cell index (position in notebook.cells) → "ename: evalue" for cells that raised.
    warnings:    what the caller should report though the run went on (no sandbox, no
                 process limit).
    """

    notebook: Any
    status: str
    reason: str | None
    sandboxed: bool
    cell_errors: dict[int, str] = field(default_factory=dict)
    wall_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def execute_notebook(nb, *, job_dir: Path, limits: Limits, env: dict[str, str] | None = None,
                     read_only: Sequence[tuple[Path, str]] = (), sandbox: bool | None = None,
                     gpu_devices: Sequence[str] = (), cwd: Path | None = None) -> ExecutionResult:
    """Execute a copy of `nb` in a fresh kernel and return it with its outcome.

    job_dir:   a folder for this job alone (connection file, sockets), created if missing;
               the sandbox can write to it. The caller removes it.
    env:       the kernel's whole environment besides PATH, HOME and PYTHONDONTWRITEBYTECODE=1
               (which env may override); nothing comes from this process's environment.
    read_only: (host path, path inside) binds for the sandbox. An unsandboxed kernel sees
               them through symlinks in job_dir/root, and env values naming an inside path
               are rewritten to point there.
    sandbox:   None: bubblewrap where it works, else unsandboxed with a loud warning.
               True: required (a failed result where unavailable). False: a plain process
               with a cleared environment (the trusted build of instructor notebooks).
    cwd:       the kernel's working folder when unsandboxed (default job_dir/work); a
               sandboxed kernel always starts in its private /tmp/work.
    """
    start = time.monotonic()
    job_dir = Path(job_dir).resolve()
    job_dir.mkdir(parents=True, exist_ok=True)
    nb = copy.deepcopy(nb)
    for cell in nb.cells:   # only outputs of this run may come back
        if cell.get("cell_type") == "code":
            cell.outputs, cell.execution_count = [], None

    notes: list[str] = []
    sandboxed = False
    if sandbox is not False:
        status = probe()
        sandboxed = status.available
        if not sandboxed and sandbox:
            return ExecutionResult(nb, "failed", f"sandbox unavailable: {status.reason}", False,
                                   wall_seconds=round(time.monotonic() - start, 3))
        if not sandboxed:
            message = f"student code runs UNSANDBOXED: {status.reason}"
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            log.warning(message)
            notes.append(message)

    job = _Job(nb, job_dir, limits, dict(env or {}), list(read_only), sandboxed, list(gpu_devices), cwd)
    with process_limit(job_dir.name, limits) as processes:
        if processes.reason:
            log.warning("no process limit for %s: %s", job_dir.name, processes.reason)
            notes.append(f"no process limit: {processes.reason}")
        _run_coroutine(job.run(processes))
    return ExecutionResult(nb, job.status, job.reason, sandboxed, job.cell_errors,
                           round(time.monotonic() - start, 3), notes)


class _KernelManager(AsyncKernelManager):
    """ipykernel started through `wrap` (sandbox and limits), interrupted by message.

    Interrupts go over the control channel: a signal would reach bwrap, not the kernel in
    its own session and pid namespace.
    """

    def __init__(self, wrap: Callable[[list[str]], list[str]], max_message_bytes: int, **kw):
        super().__init__(**kw)
        self._wrap = wrap
        self._max_message_bytes = max_message_bytes
        self._spec = KernelSpec(argv=KERNEL_ARGV, display_name="Python 3", language="python",
                                interrupt_mode="message")
        self.process: subprocess.Popen | None = None

    @property
    def kernel_spec(self) -> KernelSpec:
        return self._spec   # ours, whatever kernelspec the notebook names

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        return self._wrap(super().format_kernel_cmd(extra_arguments))

    def client(self, **kw):
        """A client whose sockets cut the connection on any message over the output cap
        (ZMQ_MAXMSGSIZE), so no single message has to fit in the coordinator's memory."""
        kc = super().client(**kw)
        kc.context.setsockopt(zmq.MAXMSGSIZE, self._max_message_bytes)
        return kc

    async def start_kernel(self, **kw) -> None:
        await super().start_kernel(**kw)
        self.process = self.provisioner.process   # kept: the provisioner forgets it at shutdown

    def kernel_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class _OutputOverflow(Exception):
    pass


class _Client(NotebookClient):
    """nbclient that stops the run once the output it accepted passes max_output_bytes.

    Counted as messages arrive, not after the cell, so a cell printing forever cannot fill
    the coordinator's memory before its timeout. A single message over the cap never
    arrives: ZeroMQ cuts the iopub connection instead, which a monitor socket reports.
    """

    def __init__(self, nb, *, manager: _KernelManager, max_output_bytes: int, **kw):
        super().__init__(nb, km=manager, **kw)
        self.manager = manager   # nbclient may drop self.km when the start fails
        self.max_output_bytes = max_output_bytes
        self.output_bytes = 0
        self.output_overflow = False
        self.iopub_monitor = None

    async def async_start_new_kernel_client(self):
        kc = await super().async_start_new_kernel_client()
        self.iopub_monitor = kc.iopub_channel.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        return kc

    def process_message(self, msg: dict, cell, cell_index: int):
        if msg.get("msg_type") not in NOT_OUTPUT:
            self.output_bytes += _json_size(msg.get("content"))
            self.output_bytes += sum(len(b) for b in msg.get("buffers") or ())
            if self.output_bytes > self.max_output_bytes:
                self.stop_for_overflow()
                return None
        return super().process_message(msg, cell, cell_index)

    def check_overflow(self) -> bool:
        """Over the cap: counted, or the iopub connection cut while the kernel lives (its
        death cuts it too). The monitor only reports disconnects, so readable means cut."""
        if not self.output_overflow and self.iopub_monitor is not None:
            if self.iopub_monitor.getsockopt(zmq.EVENTS) & zmq.POLLIN and self.manager.kernel_alive():
                self.stop_for_overflow()
        return self.output_overflow

    def stop_for_overflow(self) -> None:
        if not self.output_overflow and self.task_poll_for_reply is not None:
            self.task_poll_for_reply.cancel()   # nbclient turns this into DeadKernelError
        self.output_overflow = True


class _Job:
    """One execution: the kernel manager, the client and what happened."""

    def __init__(self, nb, job_dir: Path, limits: Limits, env: dict[str, str],
                 read_only: list[tuple[Path, str]], sandboxed: bool, gpu_devices: list[str], cwd: Path | None):
        self.nb, self.job_dir, self.limits, self.sandboxed = nb, job_dir, limits, sandboxed
        self.read_only, self.gpu_devices, self.cwd = read_only, gpu_devices, cwd
        self.env = {"PYTHONDONTWRITEBYTECODE": "1", **env}
        self.status, self.reason = "completed", None
        self.cell_errors: dict[int, str] = {}
        self.current_cell: int | None = None
        self.km: _KernelManager | None = None
        self.client: _Client | None = None

    async def run(self, processes: ProcessLimit) -> None:
        sockets, own_sockets = _socket_dir(self.job_dir)
        log_file = tempfile.TemporaryFile()   # kernel stdout/stderr: unnamed, out of the sandbox's reach
        # The sandbox lives while this process holds the pipe's write end (see LIFELINE_SCRIPT).
        lifeline = os.pipe() if self.sandboxed else ()
        try:
            launch = self._prepare(processes, sockets, log_file, lifeline[0] if lifeline else None)
            await self._execute(launch, log_file)
        finally:
            try:
                await self._shutdown()
            finally:
                for fd in lifeline:
                    os.close(fd)
                log_file.close()
                if own_sockets:
                    shutil.rmtree(sockets, ignore_errors=True)

    def _prepare(self, processes: ProcessLimit, sockets: Path, log_file, lifeline: int | None) -> dict:
        """Create the kernel manager and the client; return the kernel's launch arguments."""
        launch = {"stdout": log_file, "stderr": log_file}
        if self.sandboxed:
            writable = [] if sockets.is_relative_to(self.job_dir) else [sockets]

            def wrap(argv: list[str]) -> list[str]:
                return processes.wrap(sandbox_argv(argv, job_dir=self.job_dir, read_only=self.read_only,
                                                   env=self.env, limits=self.limits, gpu_devices=self.gpu_devices,
                                                   writable=writable, lifeline_fd=lifeline))
            popen_env, cwd = {"PATH": "/usr/bin:/bin"}, self.job_dir   # bwrap clears it anyway
            launch["pass_fds"] = (lifeline,)
        else:
            # No lifeline: `kill -1` would reach the whole host. The kernel itself exits when
            # this process does (ipykernel polls JPY_PARENT_PID, which jupyter_client sets).
            def wrap(argv: list[str]) -> list[str]:
                return processes.wrap(rlimit_argv(argv, self.limits))
            popen_env = _unsandboxed_environment(self.job_dir, self.env, self.read_only)
            cwd = Path(self.cwd) if self.cwd else self.job_dir / "work"
            cwd.mkdir(parents=True, exist_ok=True)

        self.km = _KernelManager(wrap, max_message_bytes=self.limits.max_output_bytes + 2**16,
                                 transport="ipc", ip=str(sockets / "ipc"),
                                 connection_file=str(sockets / "kernel.json"))
        self.client = _Client(
            self.nb, manager=self.km, max_output_bytes=self.limits.max_output_bytes,
            timeout=self.limits.cell_timeout, startup_timeout=min(60, self.limits.notebook_timeout),
            allow_errors=True,
            # A timed-out cell fails the notebook and the kernel is killed, not interrupted:
            # the cell may ignore SIGINT (or sit in C code), and its state is unknown anyway.
            interrupt_on_timeout=False,
            on_cell_execute=self._on_cell_execute, on_cell_error=self._on_cell_error,
            on_cell_executed=self._on_cell_executed)
        return {**launch, "env": popen_env, "cwd": str(cwd)}

    async def _execute(self, launch: dict, log_file) -> None:
        """Run every cell within the notebook's wall clock, then say how it ended."""
        task = asyncio.ensure_future(self.client.async_execute(**launch))
        watch = asyncio.ensure_future(self._watch_iopub())
        try:
            done, _ = await asyncio.wait({task}, timeout=self.limits.notebook_timeout)
        finally:
            watch.cancel()
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        error = task.exception() if task.done() and not task.cancelled() else None

        if self.client.check_overflow():
            self._fail(f"output over {_size_text(self.limits.max_output_bytes)}")
        elif not done:
            self._fail(f"timeout: the notebook ran longer than {self.limits.notebook_timeout} s")
        elif task.cancelled():   # not by us: nbclient's own SIGINT/SIGTERM handler, say
            self._fail("execution was cancelled")
        elif error is None:
            return
        elif isinstance(error, CellTimeoutError):
            self._fail(f"timeout: cell {self.current_cell} ran longer than {self.limits.cell_timeout} s")
        elif isinstance(error, DeadKernelError) and self.current_cell is not None:
            self._fail(f"kernel died while running cell {self.current_cell} ({self._exit_text()})")
        elif self.current_cell is None:
            self._fail(f"kernel did not start: {error}{_log_tail(log_file)}")
        else:
            # The kernel is the student's process and may speak malformed protocol: what breaks
            # while talking to it is this notebook's failure, logged for us to look at.
            log.error("execution in %s failed", self.job_dir, exc_info=error)
            self._fail(f"execution failed at cell {self.current_cell}: {type(error).__name__}: {error}")

    async def _watch_iopub(self) -> None:
        """Notice a cut iopub connection from the outside: when every message is over the cap
        (a tight print loop: ipykernel sends each 0.2 s batch as one message), no message
        arrives to be counted."""
        while True:
            await asyncio.sleep(0.5)
            self.client.check_overflow()

    def _fail(self, reason: str) -> None:
        self.status, self.reason = "failed", reason

    # nbclient hooks

    def _on_cell_execute(self, cell, cell_index: int) -> None:
        self.current_cell = cell_index
        if self.client.check_overflow():   # cut between two cells
            raise _OutputOverflow()

    def _on_cell_error(self, cell, cell_index: int, execute_reply: dict) -> None:
        content = execute_reply.get("content", {})
        self.cell_errors[cell_index] = f"{content.get('ename', 'Error')}: {content.get('evalue', '')}"

    def _on_cell_executed(self, cell, cell_index: int, execute_reply) -> None:
        if self.client.check_overflow():   # over the cap on the cell's last message
            raise _OutputOverflow()

    # the end

    async def _shutdown(self) -> None:
        """Stop the channels, kill the kernel's process group, remove the connection files.

        No polite shutdown request: the notebook is done, and a kernel that ignores it would
        only cost the wait. nbclient may have cleaned up already (when the start failed).
        """
        client, km = self.client, self.km
        try:
            if client is not None:
                atexit.unregister(client._cleanup_kernel)   # nbclient leaves it when the start fails
                if client.kc is not None:
                    client.kc.stop_channels()
        finally:
            if km is not None and km.process is not None:
                if km.kernel_alive():
                    _kill_group(km.process.pid)
                try:
                    km.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    log.error("kernel process %d of %s survived SIGKILL", km.process.pid, self.job_dir)
            if km is not None:
                try:
                    await km.cleanup_resources()
                except Exception:
                    log.exception("cleaning up the kernel of %s", self.job_dir)

    def _exit_text(self) -> str:
        code = self.km.process.poll() if self.km.process is not None else None
        if code is None:
            return "it stopped answering"
        # bwrap reports a child killed by signal N as exit code 128 + N, as shells do.
        number = -code if code < 0 else code - 128 if self.sandboxed and code > 128 else None
        if number is None:
            return f"exited with code {code}"
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown signal"
        hint = {signal.SIGKILL: "; out of memory or process limit?",
                signal.SIGXCPU: f"; CPU time limit of {self.limits.cpu_seconds} s"}.get(number, "")
        return f"killed by signal {number} ({name}){hint}"


def _socket_dir(job_dir: Path) -> tuple[Path, bool]:
    """Where the connection file and ipc sockets go: job_dir/kernel, or a short folder of our
    own where that path is too long for a Unix socket address. Returns (folder, ours)."""
    folder = job_dir / "kernel"
    if len(str(folder / "ipc-99999")) <= MAX_SOCKET_PATH:
        folder.mkdir(exist_ok=True)
        return folder, False
    return Path(tempfile.mkdtemp(prefix="agk-", dir="/tmp")), True


def _unsandboxed_environment(job_dir: Path, env: dict[str, str], read_only) -> dict[str, str]:
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
        return ":".join(str(root / part.lstrip("/"))
                        if part.startswith("/") and part.strip("/") and (root / part.lstrip("/")).exists()
                        else part for part in value.split(":"))

    home = job_dir / "home"
    home.mkdir(exist_ok=True)
    if read_only:
        env = {key: rewrite(value) for key, value in env.items()}
    return sandbox_environment(env, home=str(home))


def _json_size(value) -> int:
    """About the JSON size of a parsed message: its strings' lengths plus a little per item,
    walked with a stack and no copy (the content may be huge or deeply nested)."""
    size, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            size += len(item) + 2
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        else:
            size += 8
    return size


def _kill_group(pid: int) -> None:
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
            return
        except (ProcessLookupError, PermissionError):
            continue


def _log_tail(log_file, lines: int = 12, limit: int = 2000) -> str:
    """The end of the kernel's stdout/stderr (bwrap's and Python's start-up errors land there)."""
    try:
        log_file.seek(0, os.SEEK_END)
        log_file.seek(max(0, log_file.tell() - limit))
        text = log_file.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return ""
    tail = "\n".join(text.strip().splitlines()[-lines:])
    return f"\n{tail}" if tail else ""


def _size_text(size: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


def _run_coroutine(coroutine) -> None:
    """asyncio.run here, or in a helper thread where this thread already runs a loop
    (execute_notebook called from a notebook or an async server)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coroutine)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coroutine).result()

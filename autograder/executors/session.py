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
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

import zmq
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import ensure_async

from ..outcomes import FailureKind
from .job_folder import JobFolder
from .sandbox import (
    Limits,
    ProcessLimit,
    probe,
    process_limit,
    rlimit_argv,
    sandbox_argv,
    sandbox_environment,
)

log = logging.getLogger(__name__)

KERNEL_ARGV = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
# Longest path a Unix socket address may have (sun_path is 108 bytes with the final NUL).
MAX_SOCKET_PATH = 107
# Caps of the short sockets folder used where the job folder's path is too long for a socket
# address (the job folder's own caps when smaller): a connection file and five sockets.
SOCKET_FOLDER_BYTES, SOCKET_FOLDER_INODES = 1 * 2**20, 64
# iopub messages that are not output: neither counted nor capped.
NOT_OUTPUT = {"status", "execute_input", "clear_output"}


@dataclass
class ExecutionResult:
    """What running a notebook gave.

    notebook:    the executed copy, outputs included (cells after a stop have none).
    status:      "completed" (every cell ran; some may have raised) or "failed".
    reason:      why it failed, for people ("timeout: cell 7 ran longer than 300 s").
    failure:     why it failed, for programs (FailureKind.TIMEOUT).
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
    wall_seconds: float = 0.0   # from the notebook's hand-over to the end
    warnings: list[str] = field(default_factory=list)
    start_seconds: float = 0.0   # the kernel's start and warm-up (before wall_seconds when prepared)
    prepared: bool = False       # the kernel was started before its notebook was known
    where: str = ""              # which slot, GPU or Ray node ran it (for people)
    wait_seconds: float = 0.0    # from the executor's hand-over until a kernel was ready for it
    failure: FailureKind | None = None   # why it failed, as a type (None when completed)


def cell_seconds(nb) -> float:
    """The notebook's own compute: the sum of its cells' run times as nbclient recorded them
    (cell.metadata.execution, from iopub.execute_input to shell.execute_reply)."""
    total = 0.0
    for cell in nb.cells:
        timing = cell.get("metadata", {}).get("execution", {})
        start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if start and end:
            total += (datetime.fromisoformat(end.replace("Z", "+00:00")) -
                      datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()
    return total


def execute_notebook(nb, *, job_dir: Path, limits: Limits, env: dict[str, str] | None = None,
                     read_only: Sequence[tuple[Path, str]] = (), sandbox: bool | None = None,
                     gpu_devices: Sequence[str] = (), cwd: Path | None = None) -> ExecutionResult:
    """Execute a copy of `nb` in a fresh kernel and return it with its outcome.

    job_dir:   a folder for this job alone (connection file, sockets), created if missing;
               the sandbox can write to it. The caller removes it. It stays the caller's disk
               folder: its usage is checked after the run against limits.job_folder_bytes and
               job_folder_inodes, not bounded while it runs (the grading executors give each
               kernel a bounded folder of its own: executor.start_kernel, job_folder.py).
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

    One-shot: start, run, close. The grading executors (local.py, ray_cluster.py) use KernelSession
    directly, to start kernels before their submission is known.
    """
    session = KernelSession(job_dir=job_dir, limits=limits, env=env, read_only=read_only, sandbox=sandbox,
                            gpu_devices=gpu_devices, cwd=cwd)

    async def start_run_close() -> ExecutionResult:
        try:
            await session.start()
            return await session.run(nb)
        finally:
            await session.close()

    started = time.monotonic()
    result = _run_coroutine(start_run_close())
    result.wall_seconds = round(time.monotonic() - started, 3)   # the kernel's start included
    return result


class KernelSession:
    """One kernel for one notebook, in three steps: start, run, close.

    start() launches the kernel (in the sandbox, under the limits) and may run warm-up code
    (imports) before any notebook is known: this is how executors prepare kernels ahead.
    run(nb) executes one notebook, the per-cell and per-notebook clocks counting from there.
    close() kills the kernel and everything it started. A session runs one notebook, never
    two: student code must never find another submission's state.

    Nothing raises for what the kernel does: a failed start is reported by run() as a failed
    ExecutionResult; kill(reason) (a watchdog's) makes the run fail with that reason.

    job_dir: a JobFolder (bounded: a tmpfs of its own), or a path of the caller's (a disk folder,
    created if missing). Either way a sandboxed run fails when the kernel filled it or (on
    disk) went over limits.job_folder_bytes / job_folder_inodes. The session never removes
    the job folder: its owner does (executor.discard for start_kernel's).
    """

    def __init__(self, *, job_dir: Path | JobFolder, limits: Limits, env: dict[str, str] | None = None,
                 read_only: Sequence[tuple[Path, str]] = (), sandbox: bool | None = None,
                 gpu_devices: Sequence[str] = (), cwd: Path | None = None):
        self.job_folder = job_dir if isinstance(job_dir, JobFolder) else JobFolder.given(
            job_dir, size_bytes=limits.job_folder_bytes, inodes=limits.job_folder_inodes)
        self.job_dir = self.job_folder.path
        self.limits, self.cwd = limits, cwd
        self.env = {"PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
        self.read_only, self.gpu_devices, self.sandbox = list(read_only), list(gpu_devices), sandbox
        self.sandboxed = False
        self.notes: list[str] = []
        self.start_error: str | None = None     # why the kernel could not start (run() reports it)
        self.start_failure: FailureKind | None = None
        self.start_seconds = 0.0                # kernel start and warm-up
        self.kill_reason: str | None = None     # set by kill(): the run fails with it
        self.kill_failure = FailureKind.EXECUTION_FAILED
        # what the run did
        self.status, self.reason, self.failure = "completed", None, None
        self.cell_errors: dict[int, str] = {}
        self.current_cell: int | None = None
        self.km: _KernelManager | None = None
        self.kc = None
        self.client: _Client | None = None
        self._iopub_monitor = None
        self._started = self._ran = self._closed = False
        self._limit_context = None
        self._processes: ProcessLimit | None = None
        self._lifeline: tuple[int, ...] = ()
        self._log_file = None
        self._sockets: Path | None = None
        self._socket_folder: JobFolder | None = None   # ours, where job_dir's path is too long

    # ------------------------------------------------------------------ start

    async def start(self, warm_up: str | None = None, warm_up_timeout: float = 300) -> bool:
        """Launch the kernel and wait until it answers; then run `warm_up` silently (no
        history, no output kept, names it defines are its own business). False when the
        kernel could not start (start_error says why)."""
        if self._started:
            raise RuntimeError("a kernel session starts once")
        self._started = True
        began = time.monotonic()
        try:
            if not self._choose_sandbox():
                return False
            self._limit_context = process_limit(self.job_dir.name, self.limits)
            self._processes = self._limit_context.__enter__()
            if self._processes.reason:
                log.warning("no process limit for %s: %s", self.job_dir.name, self._processes.reason)
                self.notes.append(f"no process limit: {self._processes.reason}")
            if self.sandboxed and self.job_folder.problem:
                self.notes.append(self.job_folder.problem)
            self._sockets, self._socket_folder = _socket_dir(self.job_folder, bound=self.sandboxed)
            self._log_file = tempfile.TemporaryFile()   # kernel stdout/stderr: out of the sandbox's reach
            # The sandbox lives while this process holds the pipe's write end (see LIFELINE_SCRIPT).
            self._lifeline = os.pipe() if self.sandboxed else ()
            launch = self._launch_arguments()
            try:
                # nbclient's own start would add this: no history database in the sandbox's /tmp
                await self.km.start_kernel(extra_arguments=["--HistoryManager.hist_file=:memory:"], **launch)
                self.kc = self.km.client()
                self.kc.allow_stdin = False
                await ensure_async(self.kc.start_channels())
                await ensure_async(self.kc.wait_for_ready(timeout=min(60, self.limits.notebook_timeout)))
                self._iopub_monitor = self.kc.iopub_channel.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            except Exception as err:   # the kernel is the student's side: whatever breaks is a failed start
                self.start_error = f"kernel did not start: {err}{_log_tail(self._log_file)}"
                self.start_failure = FailureKind.KERNEL_DID_NOT_START
                return False
            if warm_up:
                await self._warm_up(warm_up, warm_up_timeout)
            return True
        finally:
            self.start_seconds = round(time.monotonic() - began, 3)

    def _choose_sandbox(self) -> bool:
        if self.sandbox is False:
            return True
        status = probe()
        self.sandboxed = status.available
        if not self.sandboxed and self.sandbox:
            self.start_error = f"sandbox unavailable: {status.reason}"
            self.start_failure = FailureKind.SANDBOX_UNAVAILABLE
            return False
        if not self.sandboxed:
            message = f"student code runs UNSANDBOXED: {status.reason}"
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            log.warning(message)
            self.notes.append(message)
        return True

    def _launch_arguments(self) -> dict:
        """Create the kernel manager; return the kernel's launch arguments."""
        launch = {"stdout": self._log_file, "stderr": self._log_file}
        processes, sockets = self._processes, self._sockets
        if self.sandboxed:
            writable = [] if sockets.is_relative_to(self.job_dir) else [sockets]
            lifeline = self._lifeline[0]

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
        return {**launch, "env": popen_env, "cwd": str(cwd)}

    async def _warm_up(self, code: str, timeout: float) -> None:
        """Run trusted warm-up code (imports) before the notebook; a failure is only noted:
        the notebook then meets the same problem and reports it itself."""
        msg_id = self.kc.execute(code, silent=True, store_history=False, allow_stdin=False)
        deadline = time.monotonic() + timeout
        try:
            while True:
                reply = await ensure_async(self.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic())))
                if reply.get("parent_header", {}).get("msg_id") == msg_id:
                    break
            if reply["content"].get("status") != "ok":
                content = reply["content"]
                self.notes.append(f"warm-up failed: {content.get('ename')}: {content.get('evalue')}")
        except Exception as err:   # queue.Empty on timeout, or a kernel that died
            self.notes.append(f"warm-up did not finish: {type(err).__name__}: {err}")

    # ------------------------------------------------------------------ run

    async def run(self, nb) -> ExecutionResult:
        """Execute a copy of `nb` in this session's kernel (started now if start() was not called)."""
        if self._ran:
            raise RuntimeError("a kernel session runs one notebook: start a new one")
        self._ran = True
        began = time.monotonic()
        nb = copy.deepcopy(nb)
        for cell in nb.cells:   # only outputs of this run may come back
            if cell.get("cell_type") == "code":
                cell.outputs, cell.execution_count = [], None
        if not self._started:
            await self.start()
        if self.start_error is not None:
            self._fail(self.start_error, self.start_failure or FailureKind.KERNEL_DID_NOT_START)
        elif self.kill_reason is not None:
            self._fail(self.kill_reason, self.kill_failure)
        else:
            self.client = _Client(
                nb, manager=self.km, max_output_bytes=self.limits.max_output_bytes,
                timeout=self.limits.cell_timeout, startup_timeout=min(60, self.limits.notebook_timeout),
                allow_errors=True,
                # A timed-out cell fails the notebook and the kernel is killed, not interrupted:
                # the cell may ignore SIGINT (or sit in C code), and its state is unknown anyway.
                interrupt_on_timeout=False,
                on_cell_execute=self._on_cell_execute, on_cell_error=self._on_cell_error,
                on_cell_executed=self._on_cell_executed)
            self.client.kc, self.client.iopub_monitor = self.kc, self._iopub_monitor
            await self._execute()
        if self.sandboxed:
            await self._check_job_folder()
        return ExecutionResult(nb, self.status, self.reason, self.sandboxed, self.cell_errors,
                               round(time.monotonic() - began, 3), list(self.notes), self.start_seconds,
                               failure=self.failure)

    async def _execute(self) -> None:
        """Run every cell within the notebook's wall clock, then say how it ended."""
        task = asyncio.ensure_future(self.client.async_execute())
        watch = asyncio.ensure_future(self._watch_iopub())
        try:
            done, _ = await asyncio.wait({task}, timeout=self.limits.notebook_timeout)
        finally:
            watch.cancel()
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        error = task.exception() if task.done() and not task.cancelled() else None

        if self.kill_reason is not None:
            self._fail(self.kill_reason, self.kill_failure)
        elif self.client.check_overflow():
            self._fail(f"output over {_size_text(self.limits.max_output_bytes)}", FailureKind.OUTPUT_OVER)
        elif not done:
            self._fail(f"timeout: the notebook ran longer than {self.limits.notebook_timeout} s", FailureKind.TIMEOUT)
        elif task.cancelled():   # not by us: nbclient's own SIGINT/SIGTERM handler, say
            self._fail("execution was cancelled", FailureKind.EXECUTION_FAILED)
        elif error is None:
            return
        elif isinstance(error, CellTimeoutError):
            self._fail(f"timeout: cell {self.current_cell} ran longer than {self.limits.cell_timeout} s",
                       FailureKind.TIMEOUT)
        elif isinstance(error, DeadKernelError) and self.current_cell is not None:
            self._fail(f"kernel died while running cell {self.current_cell} ({self._exit_text()})",
                       FailureKind.KERNEL_DIED)
        elif self.current_cell is None:
            self._fail(f"kernel stopped before the first cell: {error}{_log_tail(self._log_file)}",
                       FailureKind.KERNEL_STOPPED)
        else:
            # The kernel is the student's process and may speak malformed protocol: what breaks
            # while talking to it is this notebook's failure, logged for us to look at.
            log.error("execution in %s failed", self.job_dir, exc_info=error)
            self._fail(f"execution failed at cell {self.current_cell}: {type(error).__name__}: {error}",
                       FailureKind.EXECUTION_FAILED)

    async def _watch_iopub(self) -> None:
        """Notice a cut iopub connection from the outside: when every message is over the cap
        (a tight print loop: ipykernel sends each 0.2 s batch as one message), no message
        arrives to be counted."""
        while True:
            await asyncio.sleep(0.5)
            self.client.check_overflow()

    def _fail(self, reason: str, failure: FailureKind) -> None:
        self.status, self.reason, self.failure = "failed", reason, failure

    async def _check_job_folder(self) -> None:
        """Fail the run when the kernel filled its job folder (or the sockets folder): the
        cap's reason first, what else went wrong after it (often a consequence: ENOSPC)."""
        folders = [folder for folder in (self.job_folder, self._socket_folder) if folder is not None]
        for folder in folders:
            full = await asyncio.to_thread(folder.full)
            if full is not None:
                self._fail(full if self.status != "failed" else f"{full}; {self.reason}", FailureKind.JOB_FOLDER_FULL)
                return

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

    # ------------------------------------------------------------------ from outside

    def pids(self) -> list[int]:
        """Host pids of the kernel and everything it started (for a watchdog)."""
        if self._processes is not None and self._processes.path is not None:
            return self._processes.pids()
        if self.km is not None and self.km.process is not None:
            return process_tree(self.km.process.pid)
        return []

    def kill(self, reason: str, failure: FailureKind = FailureKind.EXECUTION_FAILED) -> None:
        """Kill the kernel now (a watchdog's verdict); the run fails with `reason` and `failure`."""
        if self.kill_reason is None:
            self.kill_reason, self.kill_failure = reason, failure
        if self.km is not None and self.km.kernel_alive():
            _kill_group(self.km.process.pid)
        if self._processes is not None:
            self._processes.signal_all()

    # ------------------------------------------------------------------ close

    async def close(self) -> None:
        """Stop the channels, kill the kernel's process group, remove the connection files,
        the sockets folder and the process cgroup. Safe to call more than once.

        No polite shutdown request: the notebook is done, and a kernel that ignores it would
        only cost the wait. nbclient may have cleaned up already (when the start failed).
        """
        if self._closed:
            return
        self._closed = True
        km = self.km
        try:
            if self.client is not None:
                atexit.unregister(self.client._cleanup_kernel)   # nbclient leaves it when the start fails
            if self.kc is not None:
                self.kc.stop_channels()
            if self._iopub_monitor is not None:
                self._iopub_monitor.close(linger=0)
        finally:
            try:
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
            finally:
                for fd in self._lifeline:
                    os.close(fd)
                self._lifeline = ()
                if self._log_file is not None:
                    self._log_file.close()
                if self._socket_folder is not None:
                    self._socket_folder.remove()
                if self._limit_context is not None:
                    self._limit_context.__exit__(None, None, None)

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


def _socket_dir(job_folder: JobFolder, bound: bool) -> tuple[Path, JobFolder | None]:
    """Where the connection file and ipc sockets go: job_dir/kernel, or a short folder of our
    own where that path is too long for a Unix socket address, bounded as the job folder is
    (when `bound`: a small tmpfs where this process may mount). Returns (folder, ours or None)."""
    folder = job_folder.path / "kernel"
    if len(str(folder / "ipc-99999")) <= MAX_SOCKET_PATH:
        folder.mkdir(exist_ok=True)
        return folder, None
    own = JobFolder.create(prefix="agk-", dir="/tmp", size_bytes=min(job_folder.size_bytes, SOCKET_FOLDER_BYTES),
                           inodes=min(job_folder.inodes, SOCKET_FOLDER_INODES), bound=bound)
    return own.path, own


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


def process_tree(root: int) -> list[int]:
    """`root` and its descendants, from /proc (where no cgroup lists them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # the command name (field 2) may hold spaces and parentheses: split after its last ')'
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


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


def _run_coroutine(coroutine):
    """asyncio.run here, or in a helper thread where this thread already runs a loop
    (execute_notebook called from a notebook or an async server). Returns its result."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()

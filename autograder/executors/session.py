"""Run one notebook: nbclient here, the ipykernel inside the sandbox, limits around both.

The coordinator side (this module, nbclient, jupyter_client) is trusted and never enters the
sandbox; only the kernel process does. They speak ZeroMQ over `ipc` sockets in the job
directory, bound into the sandbox at the same path. Whatever the notebook's code does
(raise, loop, ignore SIGINT, kill itself, flood the output, fork) ends as an
ExecutionResult, never as an exception here; and when execute_notebook returns, the kernel
and everything it started are dead.

This module is the session's life: start, run, close, and how a run ended. What the kernel
holds is kernel.py's (launched as launch.py says), the output-capped client client.py's.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from nbclient.exceptions import CellTimeoutError, DeadKernelError

from ..outcomes import FailureKind
from .client import OutputCappedClient, size_text
from .job_folder import JobFolder
from .kernel import Kernel
from .launch import KernelRequest, log_tail
from .limits import Limits
from .sandbox import probe
from .spec import ExecutionResult
from .zygote import Zygote

log = logging.getLogger(__name__)


def cell_seconds(nb) -> float:
    """The notebook's own compute: the sum of its cells' run times as nbclient recorded them
    (cell.metadata.execution, from iopub.execute_input to shell.execute_reply)."""
    total = 0.0
    for cell in nb.cells:
        timing = cell.get("metadata", {}).get("execution", {})
        start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if start and end:
            total += (
                datetime.fromisoformat(end.replace("Z", "+00:00"))
                - datetime.fromisoformat(start.replace("Z", "+00:00"))
            ).total_seconds()
    return total


def execute_notebook(
    nb,
    *,
    job_dir: Path,
    limits: Limits,
    env: dict[str, str] | None = None,
    read_only: Sequence[tuple[Path, str]] = (),
    sandbox: bool | None = None,
    gpu_devices: Sequence[str] = (),
    cwd: Path | None = None,
) -> ExecutionResult:
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
    session = KernelSession(
        job_dir=job_dir, limits=limits, env=env, read_only=read_only, sandbox=sandbox, gpu_devices=gpu_devices, cwd=cwd
    )

    async def start_run_close() -> ExecutionResult:
        try:
            await session.start()
            return await session.run(nb)
        finally:
            await session.close()

    started = time.monotonic()
    result = _run_coroutine(start_run_close())
    result.wall_seconds = round(time.monotonic() - started, 3)  # the kernel's start included
    return result


@dataclass
class _Outcome:
    """What starting and running did: run() reports it as the ExecutionResult."""

    sandboxed: bool = False
    notes: list[str] = field(default_factory=list)
    start_error: str | None = None  # why the kernel could not start (run() reports it)
    start_failure: FailureKind | None = None
    start_seconds: float = 0.0  # kernel start and warm-up
    kill_reason: str | None = None  # set by kill(): the run fails with it
    kill_failure: FailureKind = FailureKind.EXECUTION_FAILED
    # how the run ended (which cell ran and which raised: the client's)
    status: str = "completed"
    reason: str | None = None
    failure: FailureKind | None = None


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

    Its state is in three parts: `given` (what it was given), `outcome` (what starting and
    running did) and `kernel` (the resources it holds, all released by close()).
    """

    def __init__(
        self,
        *,
        job_dir: Path | JobFolder,
        limits: Limits,
        env: dict[str, str] | None = None,
        read_only: Sequence[tuple[Path, str]] = (),
        sandbox: bool | None = None,
        gpu_devices: Sequence[str] = (),
        cwd: Path | None = None,
        zygote: Zygote | None = None,
    ):
        job_folder = (
            job_dir
            if isinstance(job_dir, JobFolder)
            else JobFolder.given(job_dir, size_bytes=limits.job_folder_bytes, inodes=limits.job_folder_inodes)
        )
        self.given = KernelRequest(
            job_folder,
            limits,
            {"PYTHONDONTWRITEBYTECODE": "1", **(env or {})},
            list(read_only),
            list(gpu_devices),
            sandbox,
            cwd,
            zygote,
        )
        self.outcome = _Outcome()
        self.kernel = Kernel()
        self._started = self._ran = self._closed = False

    @property
    def job_folder(self) -> JobFolder:
        return self.given.job_folder

    @property
    def job_dir(self) -> Path:
        return self.given.job_dir

    @property
    def notes(self) -> list[str]:
        """What the result will warn about (no sandbox, no process limit, a watchdog's note)."""
        return self.outcome.notes

    # ------------------------------------------------------------------ start

    async def start(self, warm_up: str | None = None, warm_up_timeout: float = 300) -> bool:
        """Launch the kernel and wait until it answers; then run `warm_up` silently (no
        history, no output kept, names it defines are its own business). False when the
        kernel could not start (outcome.start_error says why)."""
        if self._started:
            raise RuntimeError("a kernel session starts once")
        self._started = True
        outcome = self.outcome
        began = time.monotonic()
        try:
            if not self._choose_sandbox():
                return False
            error = await self.kernel.launch(self.given, sandboxed=outcome.sandboxed, notes=outcome.notes)
            if error is not None:
                outcome.start_error, outcome.start_failure = error, FailureKind.KERNEL_DID_NOT_START
                return False
            if warm_up:
                note = await self.kernel.warm_up(warm_up, warm_up_timeout)
                if note is not None:
                    outcome.notes.append(note)
            return True
        finally:
            outcome.start_seconds = round(time.monotonic() - began, 3)

    def _choose_sandbox(self) -> bool:
        if self.given.sandbox is False:
            if self.given.zygote is not None:
                raise ValueError("a forked kernel is sandboxed: no zygote with sandbox=False")
            return True
        status = probe()
        self.outcome.sandboxed = status.available
        if not self.outcome.sandboxed and self.given.sandbox:
            self.outcome.start_error = f"sandbox unavailable: {status.reason}"
            self.outcome.start_failure = FailureKind.SANDBOX_UNAVAILABLE
            return False
        if not self.outcome.sandboxed:
            message = f"student code runs UNSANDBOXED: {status.reason}"
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            log.warning(message)
            self.outcome.notes.append(message)
        return True

    # ------------------------------------------------------------------ run

    async def run(self, nb) -> ExecutionResult:
        """Execute a copy of `nb` in this session's kernel (started now if start() was not called)."""
        if self._ran:
            raise RuntimeError("a kernel session runs one notebook: start a new one")
        self._ran = True
        began = time.monotonic()
        nb = copy.deepcopy(nb)
        for cell in nb.cells:  # only outputs of this run may come back
            if cell.get("cell_type") == "code":
                cell.outputs, cell.execution_count = [], None
        if not self._started:
            await self.start()
        limits, outcome = self.given.limits, self.outcome
        if outcome.start_error is not None:
            self._fail(outcome.start_error, outcome.start_failure or FailureKind.KERNEL_DID_NOT_START)
        elif outcome.kill_reason is not None:
            self._fail(outcome.kill_reason, outcome.kill_failure)
        else:
            assert self.kernel.km is not None  # started without an error: the kernel has its manager
            client = OutputCappedClient(
                nb,
                manager=self.kernel.km,
                max_output_bytes=limits.max_output_bytes,
                timeout=limits.cell_timeout,
                startup_timeout=min(60, limits.notebook_timeout),
                allow_errors=True,
                # A timed-out cell fails the notebook and the kernel is killed, not interrupted:
                # the cell may ignore SIGINT (or sit in C code), and its state is unknown anyway.
                interrupt_on_timeout=False,
            )
            self.kernel.attach(client)
            await self._execute(client)
        if outcome.sandboxed:
            await self._check_job_folder()
        cell_errors = self.kernel.client.cell_errors if self.kernel.client is not None else {}
        return ExecutionResult(
            nb,
            outcome.status,
            outcome.reason,
            outcome.sandboxed,
            cell_errors,
            round(time.monotonic() - began, 3),
            list(outcome.notes),
            outcome.start_seconds,
            failure=outcome.failure,
        )

    async def _execute(self, client: OutputCappedClient) -> None:
        """Run every cell within the notebook's wall clock, then say how it ended."""
        limits, outcome = self.given.limits, self.outcome
        task = asyncio.ensure_future(client.async_execute())
        watch = asyncio.ensure_future(client.watch_iopub())
        try:
            done, _ = await asyncio.wait({task}, timeout=limits.notebook_timeout)
        finally:
            watch.cancel()
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        error = task.exception() if task.done() and not task.cancelled() else None

        cell = client.current_cell
        if outcome.kill_reason is not None:
            self._fail(outcome.kill_reason, outcome.kill_failure)
        elif client.check_overflow():
            self._fail(f"output over {size_text(limits.max_output_bytes)}", FailureKind.OUTPUT_OVER)
        elif not done:
            self._fail(f"timeout: the notebook ran longer than {limits.notebook_timeout} s", FailureKind.TIMEOUT)
        elif task.cancelled():  # not by us: nbclient's own SIGINT/SIGTERM handler, say
            self._fail("execution was cancelled", FailureKind.EXECUTION_FAILED)
        elif error is None:
            return
        elif isinstance(error, CellTimeoutError):
            self._fail(f"timeout: cell {cell} ran longer than {limits.cell_timeout} s", FailureKind.TIMEOUT)
        elif isinstance(error, DeadKernelError) and cell is not None:
            exit_text = self.kernel.exit_text(sandboxed=outcome.sandboxed, cpu_seconds=limits.cpu_seconds)
            self._fail(f"kernel died while running cell {cell} ({exit_text})", FailureKind.KERNEL_DIED)
        elif cell is None:
            self._fail(
                f"kernel stopped before the first cell: {error}{log_tail(self.kernel.log_file)}",
                FailureKind.KERNEL_STOPPED,
            )
        else:
            # The kernel is the student's process and may speak malformed protocol: what breaks
            # while talking to it is this notebook's failure, logged for us to look at.
            log.error("execution in %s failed", self.job_dir, exc_info=error)
            self._fail(
                f"execution failed at cell {cell}: {type(error).__name__}: {error}", FailureKind.EXECUTION_FAILED
            )

    def _fail(self, reason: str, failure: FailureKind) -> None:
        self.outcome.status, self.outcome.reason, self.outcome.failure = "failed", reason, failure

    async def _check_job_folder(self) -> None:
        """Fail the run when the kernel filled its job folder (or the sockets folder): the
        cap's reason first, what else went wrong after it (often a consequence: ENOSPC)."""
        folders = [folder for folder in (self.job_folder, self.kernel.socket_folder) if folder is not None]
        for folder in folders:
            full = await asyncio.to_thread(folder.full)
            if full is not None:
                self._fail(
                    full if self.outcome.status != "failed" else f"{full}; {self.outcome.reason}",
                    FailureKind.JOB_FOLDER_FULL,
                )
                return

    # ------------------------------------------------------------------ from outside

    def pids(self) -> list[int]:
        """Host pids of the kernel and everything it started (for a watchdog)."""
        return self.kernel.pids()

    def kill(self, reason: str, failure: FailureKind = FailureKind.EXECUTION_FAILED) -> None:
        """Kill the kernel now (a watchdog's verdict); the run fails with `reason` and `failure`."""
        if self.outcome.kill_reason is None:
            self.outcome.kill_reason, self.outcome.kill_failure = reason, failure
        self.kernel.kill()

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
        await self.kernel.close()


def _run_coroutine(coroutine):
    """asyncio.run here, or in a helper thread where this thread already runs a loop
    (execute_notebook called from a notebook or an async server). Returns its result."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()

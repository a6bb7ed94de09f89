"""A session's kernel once launched: everything it holds, taken in order, released in one unwinding.

Launching takes, in this order: the pids cgroup (cgroups.py), a short sockets folder where the
job folder's path is too long for a socket address, the log file, the lifeline pipe (when
sandboxed), the kernel manager and its process, the channels and iopub's monitor; the run
adds its client. Each goes on one AsyncExitStack, with the step that releases it, as it is
taken: close() releases exactly what was taken, in the reverse order, and cannot forget a step.
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import IO, Any

import zmq
from nbclient.util import ensure_async

from .cgroups import ProcessLimit, process_limit
from .client import KernelManager, OutputCappedClient
from .job_folder import JobFolder
from .launch import KernelRequest, launch_arguments, log_tail, socket_dir
from .processes import exit_text, kill_group, process_tree

log = logging.getLogger(__name__)
IOPUB_SILENCE = 0.2  # seconds without an iopub message before kernel_info is asked again


async def wait_until_ready(kc: Any, timeout: float) -> None:
    """Until the kernel answers kernel_info on shell and its iopub is connected: jupyter_client's
    wait_for_ready without its last step, which waits for iopub to stay silent for 0.2 s, as long
    again as all the rest of a forked kernel's start. A request's cycle is complete when iopub
    brings its `idle` status; whatever iopub holds then is drained without waiting (nbclient
    reads only messages whose parent is a cell's request, so a later one is never misread).
    RuntimeError when the kernel dies or says nothing within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        msg_id = kc.kernel_info()
        if await _reply_on_shell(kc, msg_id, deadline) and await _iopub_after(kc, msg_id) == "idle":
            break
        if not await ensure_async(kc.is_alive()):
            raise RuntimeError("Kernel died before replying to kernel_info")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")
    while True:
        try:
            await ensure_async(kc.iopub_channel.get_msg(timeout=0))
        except Empty:
            return


async def _reply_on_shell(kc: Any, msg_id: str, deadline: float) -> bool:
    """The kernel_info reply to `msg_id`, read within a second (or by the deadline); False: none."""
    end = time.monotonic() + min(1.0, max(0.0, deadline - time.monotonic()))
    while True:
        try:
            reply = await ensure_async(kc.shell_channel.get_msg(timeout=max(0.0, end - time.monotonic())))
        except Empty:
            return False
        if reply.get("parent_header", {}).get("msg_id") == msg_id and reply["msg_type"] == "kernel_info_reply":
            kc._handle_kernel_info_reply(reply)  # the protocol version, as wait_for_ready sets it
            return True


async def _iopub_after(kc: Any, msg_id: str) -> str:
    """ "idle": iopub brought `msg_id`'s idle status; "welcome": iopub has just connected (the
    kernel's welcome to a new subscriber), so that status may have gone before: ask again;
    "silent": nothing for IOPUB_SILENCE seconds."""
    while True:
        try:
            msg = await ensure_async(kc.iopub_channel.get_msg(timeout=IOPUB_SILENCE))
        except Empty:
            return "silent"
        if msg["msg_type"] == "iopub_welcome":
            return "welcome"
        if (
            msg["msg_type"] == "status"
            and msg.get("parent_header", {}).get("msg_id") == msg_id
            and msg.get("content", {}).get("execution_state") == "idle"
        ):
            return "idle"


@dataclass
class Kernel:
    """The resources of one kernel; `stack` holds the step that releases each."""

    stack: AsyncExitStack = field(default_factory=AsyncExitStack)
    processes: ProcessLimit | None = None
    log_file: IO[bytes] | None = None
    lifeline: tuple[int, ...] = ()
    sockets: Path | None = None
    socket_folder: JobFolder | None = None  # ours, where job_dir's path is too long
    km: KernelManager | None = None
    kc: Any = None
    iopub_monitor: Any = None
    client: OutputCappedClient | None = None

    async def launch(self, request: KernelRequest, *, sandboxed: bool, notes: list[str]) -> str | None:
        """Launch the kernel and wait until it answers. None, or why it did not start (with the end of
        its log); what the result should warn about is added to `notes`."""
        stack, job_dir = self.stack, request.job_dir
        self.processes = stack.enter_context(process_limit(job_dir.name, request.limits))
        if self.processes.reason:
            log.warning("no process limit for %s: %s", job_dir.name, self.processes.reason)
            notes.append(f"no process limit: {self.processes.reason}")
        if sandboxed and request.job_folder.problem:
            notes.append(request.job_folder.problem)
        self.sockets, self.socket_folder = socket_dir(request.job_folder, bound=sandboxed)
        if self.socket_folder is not None:
            stack.callback(self.socket_folder.remove)
        # kernel stdout/stderr: out of the sandbox's reach
        self.log_file = stack.enter_context(tempfile.TemporaryFile())
        if sandboxed:
            # The sandbox lives while this process holds the pipe's write end (see LIFELINE_SCRIPT).
            self.lifeline = os.pipe()
            stack.callback(_close_all, self.lifeline)
        wrap, launch = launch_arguments(
            request,
            sandboxed=sandboxed,
            processes=self.processes,
            sockets=self.sockets,
            lifeline=self.lifeline,
            log_file=self.log_file,
        )
        self.km = KernelManager(
            wrap,
            max_message_bytes=request.limits.max_output_bytes + 2**16,
            transport="ipc",
            ip=str(self.sockets / "ipc"),
            connection_file=str(self.sockets / "kernel.json"),
        )
        stack.push_async_callback(self._stop_kernel, self.km, job_dir)
        try:
            # nbclient's own start would add this: no history database in the sandbox's /tmp
            await self.km.start_kernel(extra_arguments=["--HistoryManager.hist_file=:memory:"], **launch)
            self.kc = self.km.client()
            stack.callback(self._stop_channels)
            self.kc.allow_stdin = False
            await ensure_async(self.kc.start_channels())
            await wait_until_ready(self.kc, timeout=min(60, request.limits.notebook_timeout))
            self.iopub_monitor = self.kc.iopub_channel.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        except Exception as err:  # the kernel is the student's side: whatever breaks is a failed start
            return f"kernel did not start: {err}{log_tail(self.log_file)}"
        return None

    async def warm_up(self, code: str, timeout: float) -> str | None:
        """Run trusted warm-up code (imports) before the notebook. None, or a note saying how it
        failed: only noted, since the notebook then meets the same problem and reports it itself."""
        msg_id = self.kc.execute(code, silent=True, store_history=False, allow_stdin=False)
        deadline = time.monotonic() + timeout
        try:
            while True:
                reply = await ensure_async(self.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic())))
                if reply.get("parent_header", {}).get("msg_id") == msg_id:
                    break
            if reply["content"].get("status") != "ok":
                content = reply["content"]
                return f"warm-up failed: {content.get('ename')}: {content.get('evalue')}"
        except Exception as err:  # queue.Empty on timeout, or a kernel that died
            return f"warm-up did not finish: {type(err).__name__}: {err}"
        return None

    def attach(self, client: OutputCappedClient) -> None:
        """Give the notebook's client this kernel's channels; its exit hook goes at close."""
        client.kc, client.iopub_monitor = self.kc, self.iopub_monitor
        self.stack.callback(atexit.unregister, client._cleanup_kernel)  # nbclient leaves it when the start fails
        self.client = client

    # ------------------------------------------------------------------ from outside

    def pids(self) -> list[int]:
        """Host pids of the kernel and everything it started (for a watchdog)."""
        if self.processes is not None and self.processes.path is not None:
            return self.processes.pids()
        if self.km is not None and self.km.process is not None:
            return process_tree(self.km.process.pid)
        return []

    def kill(self) -> None:
        """SIGKILL the kernel's process group and everything in its cgroup, without waiting."""
        km = self.km
        if km is not None and km.process is not None and km.kernel_alive():
            kill_group(km.process.pid)
        if self.processes is not None:
            self.processes.signal_all()

    def exit_text(self, *, sandboxed: bool, cpu_seconds: int) -> str:
        """How the kernel's process ended, in words (processes.exit_text)."""
        process = self.km.process if self.km is not None else None
        return exit_text(process.poll() if process is not None else None, sandboxed=sandboxed, cpu_seconds=cpu_seconds)

    # ------------------------------------------------------------------ close

    async def close(self) -> None:
        """Release what was taken, last first: the client's exit hook, the channels, the kernel's
        process group (killed, waited for) and connection files, the lifeline, the log, the
        sockets folder, the process cgroup (emptied, removed)."""
        await self.stack.aclose()

    def _stop_channels(self) -> None:
        self.kc.stop_channels()
        if self.iopub_monitor is not None:
            self.iopub_monitor.close(linger=0)

    async def _stop_kernel(self, km: KernelManager, job_dir: Path) -> None:
        """Kill the kernel's process group and wait for it; clean up the manager's files."""
        if km.process is not None:
            if km.kernel_alive():
                kill_group(km.process.pid)
            try:
                km.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log.error("kernel process %d of %s survived SIGKILL", km.process.pid, job_dir)
        try:
            await km.cleanup_resources()
        except Exception:
            log.exception("cleaning up the kernel of %s", job_dir)


def _close_all(fds: tuple[int, ...]) -> None:
    for fd in fds:
        os.close(fd)

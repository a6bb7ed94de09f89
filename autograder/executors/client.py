"""The coordinator's side of a kernel: jupyter_client's manager and nbclient's client, with the output cap.

KernelManager starts ipykernel through the sandbox's command line (launch.py makes the
wrapper) and caps every message its clients accept (ZMQ_MAXMSGSIZE); OutputCappedClient runs
the notebook's cells, notes which cell runs and which raised, and stops the run once the
output it accepted passes the cap. Both are trusted code: they run here, never in the sandbox.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable

import zmq
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner
from nbclient import NotebookClient

KERNEL_ARGV = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
# iopub messages that are not output: neither counted nor capped.
NOT_OUTPUT = {"status", "execute_input", "clear_output"}
# The client connects before the kernel has bound its sockets, and ZeroMQ retries every
# RECONNECT_IVL (100 ms by default): a forked kernel that is ready in 0.2 s would wait it out.
RECONNECT_MS, RECONNECT_MAX_MS = 10, 1000


class KernelManager(AsyncKernelManager):
    """ipykernel started through `wrap` (sandbox and limits), interrupted by message.

    Interrupts go over the control channel: a signal would reach bwrap, not the kernel in
    its own session and pid namespace.
    """

    def __init__(self, wrap: Callable[[list[str]], list[str]], max_message_bytes: int, **kw):
        super().__init__(**kw)
        self._wrap = wrap
        self._max_message_bytes = max_message_bytes
        self._spec = KernelSpec(argv=KERNEL_ARGV, display_name="Python 3", language="python", interrupt_mode="message")
        self.process: subprocess.Popen | None = None

    @property
    def kernel_spec(self) -> KernelSpec:
        return self._spec  # ours, whatever kernelspec the notebook names

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        return self._wrap(super().format_kernel_cmd(extra_arguments))

    def client(self, **kw):
        """A client whose sockets cut the connection on any message over the output cap
        (ZMQ_MAXMSGSIZE), so no single message has to fit in the coordinator's memory."""
        kc = super().client(**kw)
        kc.context.setsockopt(zmq.MAXMSGSIZE, self._max_message_bytes)
        kc.context.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
        kc.context.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_MAX_MS)  # backs off: a dead kernel costs nothing
        return kc

    # jupyter_client declares AsyncKernelManager.start_kernel as an awaitable callable over its sync base's
    # signature (with its own type: ignore), so an async override reads as incompatible with the base's.
    async def start_kernel(self, **kw) -> None:  # type: ignore[override]
        await super().start_kernel(**kw)
        assert isinstance(self.provisioner, LocalProvisioner)  # what our kernel spec gets
        self.process = self.provisioner.process  # kept: the provisioner forgets it at shutdown

    def kernel_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class OutputOverflow(Exception):
    pass


class OutputCappedClient(NotebookClient):
    """nbclient that stops the run once the output it accepted passes max_output_bytes.

    Counted as messages arrive, not after the cell, so a cell printing forever cannot fill
    the coordinator's memory before its timeout. A single message over the cap never
    arrives: ZeroMQ cuts the iopub connection instead, which a monitor socket reports.
    """

    def __init__(self, nb, *, manager: KernelManager, max_output_bytes: int, **kw):
        super().__init__(
            nb,
            km=manager,
            on_cell_execute=self._on_cell_execute,
            on_cell_error=self._on_cell_error,
            on_cell_executed=self._on_cell_executed,
            **kw,
        )
        self.manager = manager  # nbclient may drop self.km when the start fails
        self.max_output_bytes = max_output_bytes
        self.output_bytes = 0
        self.output_overflow = False
        self.iopub_monitor = None
        self.current_cell: int | None = None  # the cell running (or the last that ran); None before the first
        self.cell_errors: dict[int, str] = {}  # cell index → "ename: evalue" for cells that raised

    def process_message(self, msg: dict, cell, cell_index: int):
        if msg.get("msg_type") not in NOT_OUTPUT:
            self.output_bytes += json_size(msg.get("content"))
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
            self.task_poll_for_reply.cancel()  # nbclient turns this into DeadKernelError
        self.output_overflow = True

    # nbclient hooks

    def _on_cell_execute(self, cell, cell_index: int) -> None:
        self.current_cell = cell_index
        if self.check_overflow():  # cut between two cells
            raise OutputOverflow()

    def _on_cell_error(self, cell, cell_index: int, execute_reply: dict) -> None:
        content = execute_reply.get("content", {})
        self.cell_errors[cell_index] = f"{content.get('ename', 'Error')}: {content.get('evalue', '')}"

    def _on_cell_executed(self, cell, cell_index: int, execute_reply) -> None:
        if self.check_overflow():  # over the cap on the cell's last message
            raise OutputOverflow()

    async def watch_iopub(self) -> None:
        """Notice a cut iopub connection from the outside: when every message is over the cap
        (a tight print loop: ipykernel sends each 0.2 s batch as one message), no message
        arrives to be counted."""
        while True:
            await asyncio.sleep(0.5)
            self.check_overflow()


def json_size(value) -> int:
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


def size_text(size: int) -> str:
    """A size for people: "64 MiB" where it is a whole number of a unit, else in bytes."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"

"""The local executor, the embedded default: this machine's slots (slots.py), each keeping a
kernel prepared ahead, with a GPU memory watchdog on GPU slots.

It takes a JobSpec (spec.py: how kernels of this batch start, whatever the slot) and runs one
notebook per fresh kernel: a kernel is never given a second submission. ray_cluster.py runs
the same kernels on a Ray cluster: with kernel_start "fork" each of its actors owns a one-slot
LocalExecutor, with "fresh" a Ray task starts one kernel by start_kernel and run_session below.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path

from ..outcomes import FailureKind
from . import gpu_watchdog
from .cgroups import process_limit
from .job_folder import JobFolder
from .sandbox import probe
from .session import KernelSession
from .slots import Slot, SlotPool
from .spec import ExecutionResult, JobSpec
from .zygote import Zygote

log = logging.getLogger(__name__)


class LocalExecutor:
    """Sandboxed kernels on this machine, one slot per running submission.

    Kernels are prepared ahead: each slot keeps `prepare_ahead` kernels started (sandbox,
    limits, its GPU or none, warm-up imports, CUDA initialisation) before a submission needs
    them; a submission takes its slot's oldest prepared kernel, and the slot starts another
    while this one runs, as long as submissions are left to use it. Every kernel runs one
    submission and is then killed. prepare_ahead=0 starts each kernel when its submission
    comes. More than one ahead pays where a kernel starts slower than a notebook runs (CUDA
    initialisation under contention) and cores or GPU time are idle meanwhile; each prepared
    kernel holds its memory (and, on a GPU slot, a CUDA context) while it waits.

    All kernels live on one asyncio loop in a helper thread; execute() is called from the
    runner's threads (one per slot), blocks for a free slot, and waits for its result there.

    jobs: how many submissions the batch has (None: unknown), so that no more kernels are
    prepared than will be used.
    """

    def __init__(
        self,
        spec: JobSpec,
        slots: SlotPool,
        *,
        jobs: int | None = None,
        prepare_ahead: int = 1,
        gpu_memory: gpu_watchdog.MemoryReader | None = None,
        watchdog_interval: float = 0.5,
    ):
        self.spec, self.slots, self.prepare_ahead = spec, slots, int(prepare_ahead)
        self.capacity = len(slots)
        self._unstarted = jobs
        self._spares: dict[int, deque[asyncio.Future]] = {slot.index: deque() for slot in slots.slots}
        self._zygotes: dict[int, asyncio.Future] = {}  # slot → its kernel factory (kernel_start="fork")
        self._fork_problems: dict[int, str] = {}  # slot → why its kernels start fresh after all
        self._retired: list[Zygote] = []  # zygotes that died, replaced
        self._closing = False
        self._watchdog_interval = watchdog_interval
        self._gpu_memory, self._gpu_memory_problem = self._open_gpu_memory(gpu_memory)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="autograder-kernels", daemon=True)
        self._thread.start()
        # First round: one kernel per slot, then the second for each slot, ... up to the batch's size.
        first = [slot for _ in range(self.prepare_ahead) for slot in slots.slots]
        for slot in first if jobs is None else first[: max(0, jobs)]:
            self._submit(self._prepare_spare(slot))

    # ------------------------------------------------------------------ API

    def execute(self, nb, label: str = "job") -> ExecutionResult:
        if self._closing:
            raise RuntimeError("this executor is closed")
        called = time.monotonic()
        with self.slots.acquire() as slot:
            return self._submit(self._run(slot, nb, label, called)).result()

    def close(self) -> None:
        """Kill the prepared kernels nobody took and stop the loop."""
        if self._closing:
            return
        self._closing = True
        try:
            self._submit(self._close_spares()).result(timeout=60)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._loop.is_running():
                self._loop.close()

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ on the loop

    def _submit(self, coroutine) -> Future:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def _prepare_spare(self, slot: Slot) -> None:
        self._spares[slot.index].append(asyncio.ensure_future(self._start(slot)))

    def _spare_count(self) -> int:
        return sum(len(queue) for queue in self._spares.values())

    async def _start(self, slot: Slot) -> KernelSession:
        zygote = await self._zygote(slot) if self.spec.kernel_start == "fork" else None
        return await start_kernel(self.spec, slot, prefix=f"autograder-slot{slot.index}-", zygote=zygote)

    async def _zygote(self, slot: Slot) -> Zygote | None:
        """The slot's kernel factory, started on first use; None (and the reason kept) where it
        cannot fork kernels here: that slot's kernels then start fresh."""
        known = self._zygotes.get(slot.index)
        if known is not None and known.done() and known.result() is not None and not known.result().alive():
            log.error("slot %d: its zygote died; starting another", slot.index)
            self._retired.append(known.result())  # closed at the end: kernels it prepared still hold folders in it
            known = None
        if known is None:
            known = self._zygotes[slot.index] = asyncio.ensure_future(self._start_zygote(slot))
        return await known

    async def _start_zygote(self, slot: Slot) -> Zygote | None:
        problem = fork_unavailable(self.spec, slot)
        zygote = None
        if problem is None:
            zygote = new_zygote(self.spec, slot, name=f"slot {slot.index}")
            try:
                problem = await zygote.start()
            except Exception as err:  # a bind that does not exist...: the fresh kernel reports it too
                problem = f"the zygote could not be started: {type(err).__name__}: {err}"
            if problem is not None:
                await asyncio.to_thread(zygote.close)
                zygote = None
        if problem is not None:
            self._fork_problems[slot.index] = fresh_instead(problem)
            log.warning("slot %d: %s", slot.index, self._fork_problems[slot.index])
        return zygote

    async def _run(self, slot: Slot, nb, label: str, called: float) -> ExecutionResult:
        queue = self._spares[slot.index]
        spare = queue.popleft() if queue else None
        if self._unstarted is not None:
            self._unstarted -= 1
        session = await spare if spare is not None else await self._start(slot)
        waited = time.monotonic() - called
        if (
            self.prepare_ahead
            and not self._closing
            and (self._unstarted is None or self._unstarted > self._spare_count())
        ):
            await self._prepare_spare(slot)
        result = await run_session(session, slot, nb, self._gpu_memory, self._watchdog_interval)
        result.prepared, result.wait_seconds = spare is not None, round(waited, 3)
        result.where = f"slot {slot.index}" + (f", GPU {slot.gpu}" if slot.gpu is not None else ", CPU")
        if slot.gpu is not None and self._gpu_memory_problem:
            result.warnings.append(f"no GPU memory limit: {self._gpu_memory_problem}")
        if slot.index in self._fork_problems:
            result.warnings.append(self._fork_problems[slot.index])
        elif session.given.zygote is not None:
            result.where += ", forked"
        log.debug("%s ran on slot %d (%s kernel)", label, slot.index, "prepared" if spare else "cold")
        return result

    async def _close_spares(self) -> None:
        spares = [spare for queue in self._spares.values() for spare in queue]
        for queue in self._spares.values():
            queue.clear()
        for spare in spares:
            try:
                session = await spare
            except Exception:
                log.exception("a prepared kernel failed to start")
                continue
            await discard(session)
        for future in list(self._zygotes.values()):
            zygote = await future
            if zygote is not None:
                await asyncio.to_thread(zygote.close)
        for zygote in self._retired:
            await asyncio.to_thread(zygote.close)
        self._zygotes.clear()
        self._retired.clear()

    def _open_gpu_memory(self, given):
        if given is not None or not any(slot.gpu is not None for slot in self.slots.slots):
            return given, None
        return open_gpu_memory()


# ---------------------------------------------------------------------------- shared by the executors


async def start_kernel(
    spec: JobSpec, slot: Slot, prefix: str = "autograder-", zygote: Zygote | None = None
) -> KernelSession:
    """A kernel for `slot`, started and warmed up (a failed start is kept in the session):
    a fresh sandbox, or forked from the slot's `zygote`.

    Its job folder is bounded (job_folder.py: a tmpfs of its own, limits.job_folder_bytes /
    job_folder_inodes) when the kernel will be sandboxed; an unsandboxed kernel can write
    anywhere, and its working folder is in there, so it keeps a plain one. A forked kernel's
    job folder is made in its zygote's jobs folder, which the zygote's sandbox sees."""
    limits = spec.limits_for(slot)
    bound = spec.sandbox is not False and probe().available
    job_folder = JobFolder.create(
        prefix=prefix,
        dir=zygote.jobs if zygote is not None else None,
        size_bytes=limits.job_folder_bytes,
        inodes=limits.job_folder_inodes,
        bound=bound,
    )
    session = KernelSession(
        job_dir=job_folder,
        limits=limits,
        env=spec.env_for(slot),
        read_only=[(Path(host), inside) for host, inside in spec.read_only],
        sandbox=spec.sandbox,
        gpu_devices=slot.device_nodes,
        zygote=zygote,
    )
    await session.start(warm_up=spec.warm_up_code(cuda=slot.gpu is not None))
    return session


async def run_session(
    session: KernelSession, slot: Slot, nb, gpu_memory: gpu_watchdog.MemoryReader | None, interval: float = 0.5
) -> ExecutionResult:
    """Run `nb` in `session` under the GPU memory watchdog of its slot (when it has a GPU and NVML
    is there), then close the session and remove its job folder."""
    guard = _guard(slot, session, gpu_memory, interval)
    try:
        return await session.run(nb)
    finally:
        if guard is not None:
            guard.cancel()
        await discard(session)


async def discard(session: KernelSession) -> None:
    """Kill the session's kernel and remove the job folder start_kernel made for it: unmounted
    (the whole tree goes at once), or on disk removed however deep, off the event loop."""
    await session.close()
    await asyncio.to_thread(session.job_folder.remove)


def _guard(slot: Slot, session: KernelSession, gpu_memory, interval: float):
    if slot.gpu is None or gpu_memory is None:
        return None
    try:
        total = gpu_memory.total(slot.gpu)
    except Exception as err:
        session.notes.append(f"no GPU memory limit: NVML does not know GPU {slot.gpu} ({err})")
        return None
    limit = gpu_watchdog.MemoryLimit(
        slot.gpu, int(total * slot.gpu_share), exclusive=slot.gpu_share >= 1, total_bytes=total
    )
    kill = lambda reason: session.kill(reason, FailureKind.GPU_MEMORY)  # noqa: E731
    return asyncio.ensure_future(
        gpu_watchdog.watch(gpu_memory, limit, session.pids, kill, session.notes.append, interval)
    )


def fork_unavailable(spec: JobSpec, slot: Slot) -> str | None:
    """Why kernels of this spec cannot be forked from a zygote on `slot` (None: try one)."""
    if spec.sandbox is False:
        return "kernels run unsandboxed"
    status = probe()
    if not status.available:
        return f"no sandbox: {status.reason}"
    if slot.gpu is not None:
        # A forked kernel is no descendant of its connector: the GPU memory watchdog finds its
        # processes through the job's pids cgroup only.
        with process_limit(f"autograder-probe-slot{slot.index}", spec.limits_for(slot)) as limit:
            if limit.reason:
                return f"a forked GPU kernel is watched through its pids cgroup, and there is none ({limit.reason})"
    return None


def fresh_instead(problem: str) -> str:
    """The warning every result of a slot carries whose kernels could not be forked."""
    return f"c.Grading.kernel_start = 'fork' is not possible here, kernels start fresh (slower): {problem}"


def new_zygote(spec: JobSpec, slot: Slot, name: str = "zygote") -> Zygote:
    """A kernel factory for `slot`: its limits, environment, binds, GPU node and imports."""
    return Zygote(
        limits=spec.limits_for(slot),
        env={"PYTHONDONTWRITEBYTECODE": "1", **spec.env_for(slot)},  # a kernel session's (session.py)
        read_only=[(Path(host), inside) for host, inside in spec.read_only],
        gpu_devices=slot.device_nodes,
        modules=list(spec.warm_up_modules),
        name=name,
    )


def open_gpu_memory() -> tuple[gpu_watchdog.GpuMemory | None, str | None]:
    """(NVML, None), or (None, why GPU jobs will run without a memory limit)."""
    opened = gpu_watchdog.GpuMemory.open()
    if isinstance(opened, str):
        log.warning("GPU jobs run without a memory limit: %s", opened)
        return None, opened
    return opened, None

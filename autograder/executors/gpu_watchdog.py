"""GPU memory shares, enforced from outside the kernel: an NVML watchdog that kills a job over its share.

A limit set inside the job (`torch.cuda.set_per_process_memory_fraction`) is undone by the
job itself, and RLIMIT_AS breaks CUDA initialisation, so the executor watches each GPU job
from the coordinator instead: every `interval` seconds it asks NVML how much memory the
job's processes hold on its GPU and, over the limit, kills the job and records why.

Which processes belong to a job: the host pids of its cgroup (or process tree). NVML
reports host pids; where it reports pids this machine's /proc does not know (NVML inside
a container without the host's pid namespace), a job alone on its GPU is charged the
device's whole used memory instead, and a job sharing a GPU cannot be told apart: the
watchdog says so once in the job's notes rather than guessing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

GiB = 2**30


class MemoryReader(Protocol):
    """What the executors need from NVML (GpuMemory below; a test can pass its own)."""

    def total(self, minor: int) -> int: ...
    def used(self, minor: int) -> int: ...
    def used_by_process(self, minor: int) -> dict[int, int]: ...


class GpuMemory:
    """NVML through nvidia-ml-py, GPUs addressed by their minor number (/dev/nvidiaN)."""

    _lock = threading.Lock()

    def __init__(self, nvml):
        self._nvml = nvml
        self._handles = {}
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            self._handles[int(nvml.nvmlDeviceGetMinorNumber(handle))] = handle

    @classmethod
    def open(cls) -> GpuMemory | str:
        """NVML, or the reason it is not available here (no driver, no package)."""
        try:
            import pynvml
        except ImportError:
            return "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
        try:
            with cls._lock:
                pynvml.nvmlInit()
            return cls(pynvml)
        except Exception as err:  # NVMLError_LibraryNotFound, DriverNotLoaded...
            return f"NVML is not available: {err}"

    def minors(self) -> list[int]:
        return sorted(self._handles)

    def uuid(self, minor: int) -> str:
        value = self._nvml.nvmlDeviceGetUUID(self._handles[minor])
        return value.decode() if isinstance(value, bytes) else value

    def total(self, minor: int) -> int:
        return int(self._nvml.nvmlDeviceGetMemoryInfo(self._handles[minor]).total)

    def used(self, minor: int) -> int:
        return int(self._nvml.nvmlDeviceGetMemoryInfo(self._handles[minor]).used)

    def used_by_process(self, minor: int) -> dict[int, int]:
        processes = self._nvml.nvmlDeviceGetComputeRunningProcesses(self._handles[minor])
        # usedGpuMemory is None where the driver does not say (some vGPU / MIG set-ups)
        return {int(p.pid): int(p.usedGpuMemory or 0) for p in processes}


@dataclass
class MemoryLimit:
    """One job's share of one GPU."""

    minor: int  # the GPU (/dev/nvidiaN)
    limit_bytes: int
    exclusive: bool  # the job is alone on this GPU (jobs_per_gpu = 1)
    total_bytes: int  # the GPU's memory (the limit is a share of it)

    def describe(self, used: int) -> str:
        total = self.total_bytes
        share = f" ({self.limit_bytes / total:.0%} of {total / GiB:.1f} GiB)" if total else ""
        return (
            f"GPU memory over its share: {used / GiB:.2f} GiB in use on GPU {self.minor}, "
            f"limit {self.limit_bytes / GiB:.2f} GiB{share}"
        )


def job_usage(
    reader: MemoryReader, limit: MemoryLimit, pids: set[int], proc: Path = Path("/proc")
) -> tuple[int | None, str | None]:
    """(bytes the job holds on its GPU, or None when that cannot be told; a note when not)."""
    by_process = reader.used_by_process(limit.minor)
    mine = sum(used for pid, used in by_process.items() if pid in pids)
    if mine or not by_process:
        return mine, None
    strangers = [pid for pid in by_process if not (proc / str(pid)).exists()]
    if not strangers:
        return 0, None  # the GPU's processes are other jobs' (or nobody's): this one holds nothing yet
    if limit.exclusive:
        return reader.used(limit.minor), None
    return None, (
        f"GPU {limit.minor}: NVML reports pids this machine does not know (another pid namespace), "
        "so a shared GPU's memory cannot be charged to one job: its share is not enforced"
    )


async def watch(
    reader: MemoryReader,
    limit: MemoryLimit,
    pids: Callable[[], list[int]],
    kill: Callable[[str], None],
    note: Callable[[str], None] = lambda text: None,
    interval: float = 0.5,
) -> None:
    """Poll until cancelled; kill the job (once) with the reason when it is over its limit."""
    noted = False
    while True:
        try:
            used, why_unknown = job_usage(reader, limit, set(pids()))
        except Exception as err:  # NVML hiccups must not kill honest jobs, nor the executor
            log.warning("GPU watchdog on GPU %d: %s", limit.minor, err)
            used, why_unknown = None, None
        if why_unknown and not noted:
            note(why_unknown)
            noted = True
        if used is not None and used > limit.limit_bytes:
            kill(limit.describe(used))
            return
        await asyncio.sleep(interval)

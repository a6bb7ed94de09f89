"""Execution slots: how many submissions run at once, and which GPU each one may see.

A machine with G GPUs gets `jobs_per_gpu` slots on each GPU; a machine without GPUs gets
CPU slots only. A GPU slot exposes exactly one device node in the sandbox and sets
CUDA_VISIBLE_DEVICES to that GPU's UUID (its CUDA index inside the sandbox is 0, whatever
N its node has); a CPU slot exposes no GPU node at all, so a CPU job cannot reach a GPU
whatever it sets inside. Slots are handed out under a lock and returned when
the job ends, so no slot is ever held by two jobs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .gpus import gpu_uuids, visible_gpus


@dataclass(frozen=True)
class Slot:
    index: int
    gpu: int | None = None  # the GPU's index as the driver numbers it (nvidia-smi)
    gpu_share: float = 1.0  # the fraction of that GPU's memory this slot may use
    gpu_uuid: str | None = None  # "GPU-..." from the driver; None where it cannot be read

    @property
    def device_nodes(self) -> list[str]:
        return [] if self.gpu is None else [f"/dev/nvidia{self.gpu}"]

    @property
    def environment(self) -> dict[str, str]:
        # An empty CUDA_VISIBLE_DEVICES hides every GPU from CUDA even before the missing nodes do.
        # Without a UUID, index 0: the sandbox shows CUDA this one GPU only.
        if self.gpu is None:
            return {"CUDA_VISIBLE_DEVICES": ""}
        return {"CUDA_VISIBLE_DEVICES": self.gpu_uuid or "0"}


@dataclass
class SlotPool:
    """A fixed set of slots; acquire() blocks until one is free."""

    slots: list[Slot]
    _free: list[Slot] = field(init=False)
    _lock: threading.Condition = field(init=False, default_factory=threading.Condition)

    def __post_init__(self):
        self._free = list(self.slots)

    @classmethod
    def for_machine(
        cls,
        gpus: list[int] | None = None,
        jobs_per_gpu: int = 1,
        cpu_jobs: int | None = None,
        uuids: dict[int, str] | None = None,
    ) -> SlotPool:
        """GPU slots when there are GPUs (jobs_per_gpu each), else cpu_jobs CPU slots (the coordinator
        counts them from c.Grading: grading/kernel_policy.py `cpu_jobs`).

        gpus: minor numbers (default: every /dev/nvidiaN); uuids: minor → UUID (default: the driver's).
        """
        gpus = visible_gpus() if gpus is None else gpus
        if gpus:
            uuids = gpu_uuids() if uuids is None else uuids
            slots = [
                Slot(i, gpu, 1.0 / jobs_per_gpu, uuids.get(gpu))
                for i, (gpu, _) in enumerate((g, k) for g in gpus for k in range(jobs_per_gpu))
            ]
        else:
            if not cpu_jobs:
                raise ValueError(
                    "a CPU-only SlotPool needs cpu_jobs (grading/kernel_policy.cpu_jobs counts them from c.Grading)"
                )
            slots = [Slot(i) for i in range(cpu_jobs)]
        return cls(slots)

    def __len__(self) -> int:
        return len(self.slots)

    @contextmanager
    def acquire(self) -> Iterator[Slot]:
        with self._lock:
            while not self._free:
                self._lock.wait()
            slot = self._free.pop(0)
        try:
            yield slot
        finally:
            with self._lock:
                self._free.append(slot)
                self._lock.notify()

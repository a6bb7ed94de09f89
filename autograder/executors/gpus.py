"""Which GPUs this machine has: their device nodes and the driver's UUIDs, read without NVML.

slots.py makes a slot per GPU (and share) from these; the memory watchdog (gpu_watchdog.py)
is the one that needs NVML.
"""

from __future__ import annotations

import re
from pathlib import Path


def visible_gpus(dev: Path = Path("/dev")) -> list[int]:
    """GPU indices from the device nodes (/dev/nvidia0, /dev/nvidia1, ...)."""
    return sorted(int(m.group(1)) for p in dev.glob("nvidia*") if (m := re.fullmatch(r"nvidia(\d+)", p.name)))


def gpu_uuids(proc: Path = Path("/proc/driver/nvidia/gpus")) -> dict[int, str]:
    """Minor number (/dev/nvidiaN) → GPU UUID, from the driver's procfs files (no NVML needed).

    CUDA_VISIBLE_DEVICES takes a UUID, which names the same GPU whatever CUDA's enumeration
    order, and whether or not the other GPUs' device nodes are visible (in the sandbox only
    the job's own node is, so its CUDA index is 0, not N).
    """
    found: dict[int, str] = {}
    if not proc.is_dir():
        return found
    for info in proc.glob("*/information"):
        try:
            text = info.read_text()
        except OSError:
            continue
        minor = re.search(r"^Device Minor:\s*(\d+)", text, re.M)
        uuid = re.search(r"^GPU UUID:\s*(\S+)", text, re.M)
        if minor and uuid:
            found[int(minor.group(1))] = uuid.group(1)
    return found

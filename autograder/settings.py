"""Grading settings, configured in the course's nbgrader_config.py under `c.Grading`."""

from __future__ import annotations

from traitlets import Bool, Float, Int
from traitlets.config import Configurable


class Grading(Configurable):
    """Limits and choices for grading runs (all overridable in nbgrader_config.py)."""

    cell_timeout = Int(300, help="Wall-clock seconds one cell may run.").tag(config=True)
    notebook_timeout = Int(1200, help="Wall-clock seconds the whole notebook may run.").tag(config=True)
    cpu_seconds = Int(3600, help="CPU seconds of the kernel process (RLIMIT_CPU).").tag(config=True)
    memory_gib = Float(8.0, help="Address-space limit of CPU-only kernels (RLIMIT_AS); 0: none.").tag(config=True)
    max_processes = Int(256, help="Processes a kernel may have (cgroup pids.max).").tag(config=True)
    tmpfs_mib = Int(1024, help="Size of the sandbox's private /tmp.").tag(config=True)
    threads_per_job = Int(1, help="OMP/MKL/torch threads per kernel.").tag(config=True)
    workers = Int(0, help="Submissions graded at once on a CPU-only machine; 0: one per two cores.").tag(config=True)
    jobs_per_gpu = Int(1, help="Submissions sharing one GPU at once (each sees only its GPU).").tag(config=True)
    require_sandbox = Bool(False, help="Refuse to grade (status failed) where bubblewrap cannot run.").tag(config=True)

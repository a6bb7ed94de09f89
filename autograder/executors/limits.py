"""The resource limits of one job: Limits, and the rlimits prlimit sets before the kernel starts.

The limits that are not rlimits are applied elsewhere: the wall clocks and the output cap by
the session (session.py, client.py), /tmp's size by the sandbox (sandbox.py), the process
limit by a pids cgroup (cgroups.py), the job folder's caps by its tmpfs (job_folder.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .host_system import tool

MiB = 2**20
GiB = 2**30


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Resource limits of one job. No defaults here: the coordinator makes every Limits from
    c.Grading (grading/kernel_policy.py `limits_from`), so each default lives in settings.py alone.

    memory_bytes is RLIMIT_AS (address space, not resident memory). It must be None for GPU
    jobs: CUDA reserves huge virtual ranges at initialisation and fails under RLIMIT_AS.
    max_processes is the pids cgroup's pids.max; the kernel counts threads as tasks there,
    so it bounds threads and processes together. tmpfs_bytes sizes /tmp and /dev/shm each.
    job_folder_bytes and job_folder_inodes cap the job folder, the one host folder the kernel
    can write (job_folder.py: a tmpfs of its own where the coordinator may mount).
    """

    cell_timeout: int  # wall-clock seconds per cell
    notebook_timeout: int  # wall-clock seconds for the whole notebook
    cpu_seconds: int  # RLIMIT_CPU of each process
    memory_bytes: int | None  # RLIMIT_AS; None for GPU jobs
    file_size_bytes: int  # RLIMIT_FSIZE
    tmpfs_bytes: int  # the sandbox's /tmp (and /dev/shm)
    max_processes: int  # pids.max where a pids cgroup can be created
    max_output_bytes: int  # total JSON size of outputs the client accepts
    job_folder_bytes: int  # the job folder's size (sockets, connection file)
    job_folder_inodes: int  # ... and the files and folders it may hold


# What probe() runs `true` under: small, and not the course's (the executors never read settings).
PROBE_LIMITS = Limits(
    cell_timeout=30,
    notebook_timeout=30,
    cpu_seconds=10,
    memory_bytes=None,
    file_size_bytes=MiB,
    tmpfs_bytes=MiB,
    max_processes=16,
    max_output_bytes=MiB,
    job_folder_bytes=MiB,
    job_folder_inodes=64,
)


def rlimit_argv(argv: Sequence[str], limits: Limits) -> list[str]:
    """argv under prlimit (which sets the limits on itself, then execs argv).

    The CPU hard limit is a little above the soft one so that the usual end is SIGXCPU,
    which the reason can name, rather than a SIGKILL that looks like running out of memory.
    """
    flags = [f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + 5}", f"--fsize={limits.file_size_bytes}", "--core=0"]
    if limits.memory_bytes is not None:
        flags.append(f"--as={limits.memory_bytes}")
    return [tool("prlimit"), *flags, "--", *argv]

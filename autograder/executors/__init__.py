"""The execution side: sandboxed kernels that run sanitized notebooks. Untrusted territory.

An executor runs a notebook to a JobSpec (spec.py) in a fresh sandboxed kernel and hands
back the executed notebook (ExecutionResult). It never judges, never reads references or
held-out labels and never touches the gradebook; the coordinator (autograder/grading/)
reaches it only through the names below (tests/test_import_rules.py pins that).

- spec.py         JobSpec, ExecutionResult and the Executor protocol: the interface
- local.py        LocalExecutor: this machine's slots, kernels prepared ahead
- ray_cluster.py  RayExecutor (the `ray` extra): Ray actors as slots, each a one-slot
                  LocalExecutor (kernel_start "fork"), or one Ray task per submission ("fresh");
                  ray_address.py checks a cluster's address before joining it
- session.py      KernelSession: one kernel's start, run and close; execute_notebook
- kernel.py       what a launched kernel holds, released in one unwinding; launch.py how
                  it is launched; client.py the output-capped nbclient client and manager
- processes.py    process groups, trees, pid namespace, how a process ended
- sandbox.py      the bubblewrap command line and probe(); host_system.py the host's
                  allow-list; limits.py Limits and the rlimits; cgroups.py the pids cgroup
- job_folder.py   the bounded host folder a kernel may write (its sockets); mounts.py its
                  tmpfs mounts; trees.py removes and measures folder trees of any depth
- zygote.py       kernels forked from a per-slot factory (c.Grading.kernel_start = "fork"):
                  zygote_main.py runs inside the slot's sandbox, zygote_connect.py stands
                  for a forked kernel on the host
- slots.py        CPU and GPU slots; gpus.py the machine's GPUs; gpu_watchdog.py the GPU
                  memory share
"""

from .gpus import visible_gpus
from .limits import Limits
from .local import LocalExecutor
from .ray_cluster import RayExecutor  # imports ray only when one is made (the `ray` extra)
from .sandbox import SandboxStatus, probe
from .session import cell_seconds, execute_notebook
from .slots import Slot, SlotPool
from .spec import ExecutionResult, Executor, JobSpec

__all__ = [
    "Executor",
    "ExecutionResult",
    "JobSpec",
    "Limits",
    "LocalExecutor",
    "RayExecutor",
    "SandboxStatus",
    "Slot",
    "SlotPool",
    "cell_seconds",
    "execute_notebook",
    "probe",
    "visible_gpus",
]

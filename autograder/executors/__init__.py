"""The execution side: sandboxed kernels that run sanitized notebooks. Untrusted territory.

An executor runs a notebook to a JobSpec (spec.py) in a fresh sandboxed kernel and hands
back the executed notebook (ExecutionResult). It never judges, never reads references or
held-out labels and never touches the gradebook; the coordinator (autograder/grading/)
reaches it only through the names below (tests/test_import_rules.py pins that).

- spec.py         JobSpec and the Executor protocol: the interface
- local.py        LocalExecutor: this machine's slots, kernels prepared ahead
- ray_cluster.py  RayExecutor: one Ray task per submission (the `ray` extra)
- session.py      KernelSession: one kernel's start, run, output cap and clean-up
- sandbox.py      the bubblewrap command line, rlimits, the pids cgroup
- job_folder.py   the bounded host folder a kernel may write (its sockets)
- slots.py        CPU and GPU slots; gpu_watchdog.py the GPU memory share
"""

from .local import LocalExecutor
from .sandbox import Limits, SandboxStatus, probe
from .session import ExecutionResult, cell_seconds, execute_notebook
from .slots import Slot, SlotPool, visible_gpus
from .spec import Executor, JobSpec

__all__ = ["Executor", "ExecutionResult", "JobSpec", "Limits", "LocalExecutor", "SandboxStatus", "Slot", "SlotPool",
           "cell_seconds", "execute_notebook", "probe", "visible_gpus"]

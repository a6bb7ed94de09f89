"""The interface between the coordinator and the executors: a JobSpec in, an ExecutionResult out.

The coordinator (grading/kernel_policy.py) writes one JobSpec per batch: how every kernel
starts, what it may see. An executor runs sanitized notebooks to that spec, one per fresh
kernel, hands back an ExecutionResult for each (the executed notebook and how the run
ended), and never judges or touches the gradebook.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..outcomes import FailureKind
from .limits import Limits
from .slots import Slot


@dataclass(frozen=True)
class JobSpec:
    """How every kernel of one batch starts (the slot adds its GPU).

    limits:    for CPU jobs; GPU jobs drop RLIMIT_AS (it breaks CUDA initialisation).
    env:       the kernel's environment (the slot's CUDA_VISIBLE_DEVICES is added).
    read_only: (host path, path inside) binds: the checks package and the public data.
    sandbox:   as execute_notebook's (None: where it works; True: required).
    warm_up_modules: imported in each kernel before it gets its notebook (and CUDA initialised
               on a GPU slot), so that a prepared kernel has the heavy start-up behind it.
    kernel_start: "fresh": a new sandbox and Python per kernel; "fork": kernels forked from a
               per-slot factory that imported warm_up_modules once (zygote.py), falling back
               to fresh, with a warning in every result, where that is not possible.
    """

    limits: Limits
    env: dict[str, str]
    read_only: tuple[tuple[str, str], ...] = ()
    sandbox: bool | None = None
    warm_up_modules: tuple[str, ...] = ()
    kernel_start: str = "fresh"  # "fork": from a per-slot zygote (zygote.py), where it works here

    def limits_for(self, slot: Slot | None) -> Limits:
        if slot is not None and slot.gpu is not None:
            return dataclasses.replace(self.limits, memory_bytes=None)
        return self.limits

    def env_for(self, slot: Slot | None) -> dict[str, str]:
        return {**self.env, **(slot.environment if slot is not None else {})}

    def warm_up_code(self, cuda: bool) -> str | None:
        """Trusted code run silently in a fresh kernel: imports only, in a function so that the
        notebook's namespace stays empty (a notebook that forgets `import torch` must fail here
        as it fails at home)."""
        if not self.warm_up_modules and not cuda:
            return None
        lines = [
            "def _autograder_warm_up():",
            "    import importlib",
            f"    for name in {list(self.warm_up_modules)!r}:",
            "        try:",
            "            importlib.import_module(name)",
            "        except Exception:",
            "            pass   # the notebook meets the same error and reports it",
        ]
        if cuda:
            lines += ["    import torch", "    if torch.cuda.is_available():", "        torch.cuda.init()"]
        lines += ["_autograder_warm_up()", "del _autograder_warm_up"]
        return "\n".join(lines)


@dataclass
class ExecutionResult:
    """What running a notebook gave.

    notebook:    the executed copy, outputs included (cells after a stop have none).
    status:      "completed" (every cell ran; some may have raised) or "failed".
    reason:      why it failed, for people ("timeout: cell 7 ran longer than 300 s").
    failure:     why it failed, for programs (FailureKind.TIMEOUT).
    sandboxed:   whether the kernel ran inside bubblewrap.
    cell_errors: cell index (position in notebook.cells) → "ename: evalue" for cells that raised.
    warnings:    what the caller should report though the run went on (no sandbox, no
                 process limit).
    """

    notebook: Any
    status: str
    reason: str | None
    sandboxed: bool
    cell_errors: dict[int, str] = field(default_factory=dict)
    wall_seconds: float = 0.0  # from the notebook's hand-over to the end
    warnings: list[str] = field(default_factory=list)
    start_seconds: float = 0.0  # the kernel's start and warm-up (before wall_seconds when prepared)
    prepared: bool = False  # the kernel was started before its notebook was known
    where: str = ""  # which slot, GPU or Ray node ran it (for people)
    wait_seconds: float = 0.0  # from the executor's hand-over until a kernel was ready for it
    failure: FailureKind | None = None  # why it failed, as a type (None when completed)


class Executor(Protocol):
    """What the coordinator needs of an executor."""

    capacity: int  # submissions it runs at once (the batch sizes its thread pool from it)

    def execute(self, nb, label: str) -> ExecutionResult: ...  # blocking; thread-safe
    def close(self) -> None: ...

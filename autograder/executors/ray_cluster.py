"""The Ray executor (`--executor ray`, the optional `ray` extra): one Ray task per submission.

The coordinator stays where it is (sanitize, verdicts, the gradebook's single writer); each
submission's sanitized notebook goes to a Ray task that runs it in the same sandbox as the
local executor, on whichever node Ray picks, and sends back the executed notebook as JSON.

- A fresh worker per task (`max_calls=1`): no Python state survives from one submission to
  the next on the executor's side either.
- No retries (`max_retries=0`): student code that kills its worker is a failed result, not
  three more runs.
- Force-cancel on timeout: a task that outlives the notebook's own limits by a margin is
  cancelled with `force=True` (its worker is killed; the sandbox dies with it by the lifeline).
- Fractional GPUs: each task asks for `gpus_per_job` GPUs (default 1 / jobs_per_gpu where the
  cluster has GPUs). Ray chooses the GPU and sets CUDA_VISIBLE_DEVICES; the task exposes that
  GPU's device node alone in the sandbox and watches its memory share with NVML, as locally.

Cluster contract: every node has the course's virtualenv and the course folder (data/ and
the checks package are bound read-only into each sandbox) at the same paths, as with a shared
file system; a task that does not find them fails with that reason.

Joining a running cluster, its address is checked first (ray_address.py), so that a wrong
address, a missing token or a version mismatch is one plain sentence, not minutes of retries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import TYPE_CHECKING

from ..outcomes import FailureKind
from .ray_address import check_cluster, first_line

if TYPE_CHECKING:  # imported where used: the kernel side where a Ray worker runs its task
    from .slots import Slot
    from .spec import ExecutionResult, JobSpec

log = logging.getLogger(__name__)

# Seconds a task may run beyond the notebook's own wall clock (kernel start, imports, transfer).
TIMEOUT_MARGIN = 180


class RayExecutor:
    """Submits each notebook as a Ray task; execute() blocks until its result (or the timeout).

    address: a running cluster ("HOST:6379", the head's GCS; "auto"; "ray://host:10001"),
    checked first by check_cluster, or None to start a local Ray (or use the one this process
    already initialised, as tests do). max_concurrent: tasks in flight
    at once (default: what the cluster's CPUs, and GPUs when tasks need them, allow).
    task_timeout: seconds before a task is force-cancelled (default: the notebook's wall clock
    plus TIMEOUT_MARGIN, so that the kernel's own limits normally speak first).
    """

    def __init__(
        self,
        spec: JobSpec,
        *,
        address: str | None = None,
        gpus_per_job: float = 0.0,
        jobs_per_gpu: int = 1,
        max_concurrent: int | None = None,
        task_timeout: float | None = None,
        init_kwargs: dict | None = None,
    ):
        try:
            import ray
        except ImportError:
            raise RuntimeError("the Ray executor needs the `ray` extra: pip install -e '.[ray]'") from None
        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            joining = address or os.environ.get("RAY_ADDRESS") or None  # ray.init(None) honours RAY_ADDRESS
            if joining and joining != "local":
                check_cluster(joining)
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, **(init_kwargs or {}))
            except Exception as err:  # ConnectionError, a version mismatch Ray found, ...
                if not joining:
                    raise
                raise RuntimeError(
                    f"cannot join the Ray cluster at {joining}: {type(err).__name__}: {first_line(err)}"
                ) from None
        resources = ray.cluster_resources()
        cpus_per_job = max(1, int(spec.env.get("OMP_NUM_THREADS", "1") or 1))
        if gpus_per_job <= 0 and resources.get("GPU", 0) > 0:
            gpus_per_job = 1.0 / max(1, jobs_per_gpu)
        self.spec, self.gpus_per_job, self.cpus_per_job = spec, gpus_per_job, cpus_per_job
        fits = int(resources.get("CPU", 1) // cpus_per_job)
        if gpus_per_job > 0:
            fits = min(fits, int(resources.get("GPU", 0) / gpus_per_job + 1e-9))
        self.capacity = max(1, max_concurrent or fits)
        self._task = ray.remote(max_calls=1, max_retries=0)(execute_in_worker).options(
            num_cpus=cpus_per_job, num_gpus=gpus_per_job or 0
        )
        self._timeout = task_timeout or spec.limits.notebook_timeout + TIMEOUT_MARGIN

    def execute(self, nb, label: str = "job") -> ExecutionResult:
        import nbformat

        ray = self._ray
        started = time.monotonic()
        ref = self._task.remote(nbformat.writes(nb), self.spec, self.gpus_per_job, label)
        ready, _ = ray.wait([ref], timeout=self._timeout)
        if not ready:
            ray.cancel(ref, force=True)
            return _failed(
                nb,
                f"timeout: the Ray task ran longer than {self._timeout} s and was cancelled",
                started,
                FailureKind.TIMEOUT,
            )
        try:
            payload = ray.get(ref)
        except Exception as err:  # the worker died (killed, out of memory), or our code failed there
            return _failed(
                nb,
                f"the Ray worker failed: {type(err).__name__}: {first_line(err)}",
                started,
                FailureKind.RAY_WORKER_FAILED,
            )
        result = _from_payload(payload, nb, started)
        # queueing in Ray, the worker's start and the kernel's: everything but the notebook's run
        result.wait_seconds = round(max(0.0, time.monotonic() - started - result.wall_seconds), 3)
        return result

    def close(self) -> None:
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def execute_in_worker(nb_json: str, spec: JobSpec, gpu_share: float, label: str) -> str:
    """In a Ray worker: one sandboxed kernel for one notebook. Returns JSON text (data only)."""
    import nbformat
    import ray

    from .local import fresh_instead, open_gpu_memory, run_session, start_kernel

    missing = [host for host, _ in spec.read_only if not os.path.exists(host)]
    if missing:
        return json.dumps(
            {
                "status": "failed",
                "failure": FailureKind.RAY_WORKER_FAILED.value,
                "reason": f"course files missing on this Ray node: {', '.join(missing)}",
            }
        )
    slot, notes = _slot_from_ray([str(g) for g in ray.get_gpu_ids()], gpu_share)
    gpu_memory, problem = open_gpu_memory() if slot.gpu is not None else (None, None)
    if problem:
        notes.append(f"no GPU memory limit: {problem}")
    if spec.kernel_start == "fork":
        notes.append(fresh_instead("the Ray executor starts one fresh kernel per task (no zygote per node yet)"))

    async def start_and_run():
        session = await start_kernel(spec, slot, prefix="autograder-ray-")
        return await run_session(session, slot, nbformat.reads(nb_json, as_version=4), gpu_memory)

    result = asyncio.run(start_and_run())
    return json.dumps(
        {
            "notebook": nbformat.writes(result.notebook),
            "status": result.status,
            "reason": result.reason,
            "sandboxed": result.sandboxed,
            "failure": result.failure.value if result.failure else None,
            "cell_errors": {str(k): v for k, v in result.cell_errors.items()},
            "wall_seconds": result.wall_seconds,
            "start_seconds": result.start_seconds,
            "warnings": result.warnings + notes,
            "where": f"Ray node {ray.get_runtime_context().get_node_id()[:12]}"
            + (f", Ray GPU {','.join(map(str, ray.get_gpu_ids()))}" if ray.get_gpu_ids() else ""),
        }
    )


def _slot_from_ray(gpu_ids: list[str], share: float) -> tuple[Slot, list[str]]:
    """The slot of the GPU Ray gave this task: its device node when this node has it (found by
    NVML index or UUID), else no GPU device at all (with a note saying so)."""
    from .slots import Slot

    if not gpu_ids:
        return Slot(0), []
    wanted = gpu_ids[0]
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = (
            pynvml.nvmlDeviceGetHandleByUUID(wanted)
            if wanted.startswith(("GPU-", "MIG-"))
            else pynvml.nvmlDeviceGetHandleByIndex(int(wanted))
        )
        minor = int(pynvml.nvmlDeviceGetMinorNumber(handle))
        uuid = pynvml.nvmlDeviceGetUUID(handle)
        uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
    except Exception as err:  # no driver here: Ray's GPU is a logical resource only
        return Slot(0, gpu_share=share), [
            f"Ray assigned GPU {wanted}, which this node has no device for "
            f"({type(err).__name__}): the kernel runs without a GPU"
        ]
    if not os.path.exists(f"/dev/nvidia{minor}"):
        return Slot(0), [f"Ray assigned GPU {wanted}, but /dev/nvidia{minor} is missing: the kernel runs without a GPU"]
    return Slot(0, minor, min(1.0, share), uuid), []


def _from_payload(payload: str, nb, started: float) -> ExecutionResult:
    """Validate what the worker sent: JSON with a notebook; anything else is a failed result."""
    import nbformat

    from .spec import ExecutionResult

    try:
        data = json.loads(payload)
        if data.get("status") == "failed" and "notebook" not in data:
            return _failed(nb, str(data.get("reason")), started, _failure(data) or FailureKind.RAY_WORKER_FAILED)
        notebook = nbformat.reads(data["notebook"], as_version=4)
        result = ExecutionResult(
            notebook,
            str(data["status"]),
            data.get("reason"),
            bool(data["sandboxed"]),
            {int(k): str(v) for k, v in data.get("cell_errors", {}).items()},
            float(data.get("wall_seconds", 0)),
            [str(w) for w in data.get("warnings", [])],
            float(data.get("start_seconds", 0)),
            failure=_failure(data),
        )
    except (ValueError, KeyError, TypeError) as err:
        return _failed(nb, f"the Ray task sent back something malformed: {err}", started, FailureKind.RAY_WORKER_FAILED)
    result.where = str(data.get("where", ""))
    return result


def _failed(nb, reason: str, started: float, failure: FailureKind) -> ExecutionResult:
    from .spec import ExecutionResult

    return ExecutionResult(
        nb, "failed", reason, False, wall_seconds=round(time.monotonic() - started, 3), failure=failure
    )


def _failure(data: dict) -> FailureKind | None:
    """The worker's failure kind (a value of FailureKind; anything else: the worker failed)."""
    if data.get("status") != "failed":
        return None
    failure = data.get("failure")
    try:
        return FailureKind(failure) if isinstance(failure, str) else FailureKind.RAY_WORKER_FAILED
    except ValueError:
        return FailureKind.RAY_WORKER_FAILED

"""The Ray executor (`--executor ray`, the optional `ray` extra): the local executor's kernels on
the nodes of a Ray cluster.

The coordinator stays where it is (sanitize, verdicts, the gradebook's single writer); each
submission's sanitized notebook goes to a node Ray picks, runs there in the same sandbox as the
local executor, and comes back as JSON (the executed notebook and how the run ended: data only).
How it runs there follows c.Grading.kernel_start:

- "fork" (the default): Ray actors are the slots. The driver keeps a pool of `capacity` actors
  (each asks for `cpus_per_job` CPUs and `gpus_per_job` GPUs) and gives each submission a free
  one. An actor owns a one-slot LocalExecutor (local.py) on the GPU Ray assigned it: its zygote,
  its kernel prepared ahead, a new zygote when one dies, and fresh kernels with the local
  executor's warning in every result where the node cannot fork. It runs the submissions Ray
  gives it one at a time, each in a new kernel forked from its zygote. Student code never runs
  in the actor (only in the sandboxed forked kernel, killed after its one submission), so an
  actor that serves many submissions keeps what the local executor keeps: nothing of one
  submission survives to the next.
- "fresh": one Ray task per submission in a fresh worker (`max_calls=1`), which starts one fresh
  sandboxed kernel for it; no Python state survives on the executor's side either.

Either way:

- No retries (`max_retries=0`, actors `max_restarts=0`): student code that kills its worker is a
  failed result, not three more runs.
- A timeout: a submission that outlives the notebook's own limits by a margin is stopped: a task
  is cancelled with `force=True` (its worker is killed), an actor is killed (`ray.kill`) and
  replaced; the sandbox dies with the worker by its lifeline (a zygote's forks with the zygote).
  The result is a TIMEOUT failure. An actor that dies gives a RAY_WORKER_FAILED result and is
  replaced.
- Fractional GPUs: each task or actor asks for `gpus_per_job` GPUs (default 1 / jobs_per_gpu where
  the cluster has GPUs). Ray chooses the GPU and sets CUDA_VISIBLE_DEVICES; the kernel's sandbox
  exposes that GPU's device node alone and its memory share is watched with NVML, as locally.

Cluster contract: every node has the course's virtualenv and the course folder (data/ and
the checks package are bound read-only into each sandbox) at the same paths, as with a shared
file system; a submission on a node that does not have them fails with that reason.

Joining a running cluster, its address is checked first (ray_address.py), so that a wrong
address, a missing token or a version mismatch is one plain sentence, not minutes of retries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import threading
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
# Seconds close() gives the actors to close their LocalExecutors (zygotes, spare kernels).
CLOSE_TIMEOUT = 60
# What an actor writes to its worker's log for each submission it takes (Ray logs a task's name
# once per task, an actor's name once per actor): "autograder job: student/lab/notebook".
JOB_LOG_LINE = "autograder job: "


class RayExecutor:
    """Runs each notebook on a Ray actor of its pool (kernel_start "fork") or as a Ray task
    ("fresh"); execute() blocks until its result (or the timeout) and is thread-safe.

    address: a running cluster ("HOST:6379", the head's GCS; "auto"; "ray://host:10001"),
    checked first by check_cluster, or None to start a local Ray (or use the one this process
    already initialised, as tests do). max_concurrent: submissions in flight at once, the
    number of actors with "fork" (default: what the cluster's CPUs, and GPUs when jobs need
    them, allow). task_timeout: seconds before a submission's task is force-cancelled or its
    actor killed (default: the notebook's wall clock plus TIMEOUT_MARGIN, so that the kernel's
    own limits normally speak first).
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
        self._timeout = task_timeout or spec.limits.notebook_timeout + TIMEOUT_MARGIN
        self._closing = False
        self.forking = spec.kernel_start == "fork"
        if self.forking:
            self._slot_actor = ray.remote(max_restarts=0, max_task_retries=0)(SlotActor).options(
                num_cpus=cpus_per_job, num_gpus=gpus_per_job or 0
            )
            self._actors: set = set()  # every live actor of the pool, busy or free
            self._free: queue.Queue = queue.Queue()
            self._lock = threading.Lock()
            for _ in range(self.capacity):  # started now: their zygotes warm up while the batch sanitizes
                self._free.put(self._new_actor())
        else:
            self._task = ray.remote(max_calls=1, max_retries=0)(execute_in_worker).options(
                num_cpus=cpus_per_job, num_gpus=gpus_per_job or 0
            )

    def execute(self, nb, label: str = "job") -> ExecutionResult:
        import nbformat

        if self._closing:
            raise RuntimeError("this executor is closed")
        started = time.monotonic()
        if self.forking:
            payload = self._run_on_actor(nbformat.writes(nb), label)
        else:
            payload = self._run_as_task(nbformat.writes(nb), label)
        if not isinstance(payload, str):  # why no payload came: a timeout, a dead worker
            reason, failure = payload
            return _failed(nb, reason, started, failure)
        result = _from_payload(payload, nb, started)
        # queueing in Ray, the worker's start and the kernel's: everything but the notebook's run
        result.wait_seconds = round(max(0.0, time.monotonic() - started - result.wall_seconds), 3)
        return result

    def close(self) -> None:
        """Close the pool's actors (their LocalExecutors kill zygotes and spare kernels), then
        stop Ray where this executor started it."""
        if self._closing:
            return
        self._closing = True
        ray = self._ray
        if self.forking and ray.is_initialized():
            with self._lock:
                actors = list(self._actors)
                self._actors.clear()
            closing = [actor.close.remote() for actor in actors]
            if closing:
                ray.wait(closing, num_returns=len(closing), timeout=CLOSE_TIMEOUT)
            for actor in actors:
                _kill(ray, actor)
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ the two ways

    def _run_as_task(self, nb_json: str, label: str) -> str | tuple[str, FailureKind]:
        ray = self._ray
        ref = self._task.remote(nb_json, self.spec, self.gpus_per_job, label)
        ready, _ = ray.wait([ref], timeout=self._timeout)
        if not ready:
            ray.cancel(ref, force=True)
            return f"timeout: the Ray task ran longer than {self._timeout} s and was cancelled", FailureKind.TIMEOUT
        try:
            return ray.get(ref)
        except Exception as err:  # the worker died (killed, out of memory), or our code failed there
            return _worker_failed(err)

    def _run_on_actor(self, nb_json: str, label: str) -> str | tuple[str, FailureKind]:
        """On a free actor of the pool (waiting for one); an actor that timed out or failed is
        killed and a new one takes its place in the pool."""
        ray = self._ray
        actor = self._free.get()
        replace = True
        try:
            ref = actor.run.remote(nb_json, label)
            ready, _ = ray.wait([ref], timeout=self._timeout)
            if not ready:
                return (
                    f"timeout: the Ray actor ran it longer than {self._timeout} s and was killed (and replaced)",
                    FailureKind.TIMEOUT,
                )
            try:
                payload = ray.get(ref)
            except Exception as err:  # the actor died (killed, out of memory), or our code failed there
                return _worker_failed(err)
            replace = False
            return payload
        finally:
            self._give_back(actor, replace)

    def _new_actor(self):
        actor = self._slot_actor.remote(self.spec, self.gpus_per_job)
        with self._lock:
            self._actors.add(actor)
        return actor

    def _give_back(self, actor, replace: bool) -> None:
        if replace:
            with self._lock:
                self._actors.discard(actor)
            _kill(self._ray, actor)
            if self._closing:
                return
            actor = self._new_actor()
            log.warning("a Ray actor was killed or died; a new one takes its place")
        if not self._closing:
            self._free.put(actor)


class SlotActor:
    """A Ray actor of the pool (kernel_start "fork"): one slot, the GPU Ray assigned to the actor
    (or none), run by a one-slot LocalExecutor: its zygote, its kernel prepared ahead. Ray gives
    it one submission at a time; each runs in a new forked kernel, never in this process."""

    def __init__(self, spec: JobSpec, gpu_share: float):
        import ray

        from .local import LocalExecutor
        from .slots import SlotPool

        self.spec = spec
        slot, self.notes = _slot_from_ray([str(g) for g in ray.get_gpu_ids()], gpu_share)
        self.pool = SlotPool([slot])
        # Where the course files are missing, no zygote is started: each run() says so instead.
        self.local = None if _course_files_missing(spec) else LocalExecutor(spec, self.pool)

    def run(self, nb_json: str, label: str) -> str:
        """Run one notebook in a kernel of this actor's slot. Returns JSON text (data only)."""
        import nbformat

        from .local import LocalExecutor

        missing = _course_files_missing(self.spec)
        if missing:
            return missing
        if self.local is None:
            self.local = LocalExecutor(self.spec, self.pool)
        print(f"{JOB_LOG_LINE}{label}", flush=True)
        result = self.local.execute(nbformat.reads(nb_json, as_version=4), label)
        return _payload(result, self.notes, forked=result.where.endswith(", forked"))

    def close(self) -> None:
        if self.local is not None:
            self.local.close()


def execute_in_worker(nb_json: str, spec: JobSpec, gpu_share: float, label: str) -> str:
    """In a Ray worker (kernel_start "fresh"): one fresh sandboxed kernel for one notebook.
    Returns JSON text (data only)."""
    import nbformat
    import ray

    from .local import open_gpu_memory, run_session, start_kernel

    missing = _course_files_missing(spec)
    if missing:
        return missing
    slot, notes = _slot_from_ray([str(g) for g in ray.get_gpu_ids()], gpu_share)
    gpu_memory, problem = open_gpu_memory() if slot.gpu is not None else (None, None)
    if problem:
        notes.append(f"no GPU memory limit: {problem}")

    async def start_and_run():
        session = await start_kernel(spec, slot, prefix="autograder-ray-")
        return await run_session(session, slot, nbformat.reads(nb_json, as_version=4), gpu_memory)

    return _payload(asyncio.run(start_and_run()), notes)


def _course_files_missing(spec: JobSpec) -> str | None:
    """The failed payload of a node without the course's files at their paths (None: all there)."""
    missing = [host for host, _ in spec.read_only if not os.path.exists(host)]
    if not missing:
        return None
    return json.dumps(
        {
            "status": "failed",
            "failure": FailureKind.RAY_WORKER_FAILED.value,
            "reason": f"course files missing on this Ray node: {', '.join(missing)}",
        }
    )


def _payload(result: ExecutionResult, notes: list[str], forked: bool = False) -> str:
    """What a Ray worker sends back for one run (a task's or an actor's): JSON text, data only,
    read by _from_payload on the driver."""
    import nbformat
    import ray

    gpus = ray.get_gpu_ids()
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
            "prepared": result.prepared,
            "warnings": result.warnings + notes,
            "where": f"Ray node {ray.get_runtime_context().get_node_id()[:12]}"
            + (f", Ray GPU {','.join(map(str, gpus))}" if gpus else "")
            + (", forked" if forked else ""),
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
            prepared=bool(data.get("prepared", False)),
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


def _worker_failed(err: Exception) -> tuple[str, FailureKind]:
    """Why no payload came from a task's worker or an actor that raised or died."""
    return f"the Ray worker failed: {type(err).__name__}: {first_line(err)}", FailureKind.RAY_WORKER_FAILED


def _kill(ray, actor) -> None:
    """Kill an actor now (its zygote and kernels die by their lifelines); one already dead is fine."""
    try:
        ray.kill(actor, no_restart=True)
    except Exception as err:
        log.debug("killing a Ray actor: %s", err)

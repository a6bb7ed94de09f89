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

Joining a running cluster (`address`: HOST:PORT of the head's GCS, `auto`, or ray://HOST:PORT):
`ray.init` alone retries for minutes and then names no cause (a token it lacks, a port that is
not Ray's). So the address is checked first, in a child process bounded by CONNECT_TIMEOUT:
the host's name, a TCP connection, that the port speaks gRPC (HTTP/2) as Ray's GCS does, Ray's
handshake with Ray's own GCS client on short timeouts (token authentication), the cluster's
Ray and Python versions against this process's (Ray refuses a mismatch), and that this
machine runs a node of that cluster (a driver joins through its own node's raylet; from
elsewhere use ray://, the Ray Client). Each failure is a RuntimeError saying which, which the
CLI prints as a plain error.

Token authentication (Ray 2.60): `ray start --head` turns it on when RAY_AUTH_MODE=token, or
when RAY_AUTH_MODE is unset and a token exists (RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH
names, or ~/.ray/auth_token); a driver given an explicit address sends a token only when
RAY_AUTH_MODE=token is set in its environment (the token from the same three places), so that
a token is never sent to an address the user did not mean it for.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..outcomes import FailureKind

if TYPE_CHECKING:   # imported where used: check_cluster's child process needs Ray alone, and starts fast
    from .session import ExecutionResult
    from .slots import Slot
    from .spec import JobSpec

log = logging.getLogger(__name__)

# Seconds a task may run beyond the notebook's own wall clock (kernel start, imports, transfer).
TIMEOUT_MARGIN = 180
# Seconds the check of a cluster's address may take in all (its process's start included).
CONNECT_TIMEOUT = 10
# Seconds for the TCP connection and the first answer; Ray's GCS client settings for the
# handshake (a gRPC server that is not Ray's GCS fails after about 2 + 2 + 2 s).
TCP_TIMEOUT = 3
PROBE_RAY_CONFIG = {"RAY_gcs_rpc_server_connect_timeout_s": "2", "RAY_py_gcs_connect_timeout_s": "2"}


class RayExecutor:
    """Submits each notebook as a Ray task; execute() blocks until its result (or the timeout).

    address: a running cluster ("HOST:6379", the head's GCS; "auto"; "ray://host:10001"),
    checked first by check_cluster, or None to start a local Ray (or use the one this process
    already initialised, as tests do). max_concurrent: tasks in flight
    at once (default: what the cluster's CPUs, and GPUs when tasks need them, allow).
    task_timeout: seconds before a task is force-cancelled (default: the notebook's wall clock
    plus TIMEOUT_MARGIN, so that the kernel's own limits normally speak first).
    """

    def __init__(self, spec: JobSpec, *, address: str | None = None, gpus_per_job: float = 0.0,
                 jobs_per_gpu: int = 1, max_concurrent: int | None = None, task_timeout: float | None = None,
                 init_kwargs: dict | None = None):
        try:
            import ray
        except ImportError:
            raise RuntimeError("the Ray executor needs the `ray` extra: pip install -e '.[ray]'") from None
        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            joining = address or os.environ.get("RAY_ADDRESS") or None   # ray.init(None) honours RAY_ADDRESS
            if joining and joining != "local":
                check_cluster(joining)
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, **(init_kwargs or {}))
            except Exception as err:   # ConnectionError, a version mismatch Ray found, ...
                if not joining:
                    raise
                raise RuntimeError(f"cannot join the Ray cluster at {joining}: "
                                   f"{type(err).__name__}: {_first_line(err)}") from None
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
            num_cpus=cpus_per_job, num_gpus=gpus_per_job or 0)
        self._timeout = task_timeout or spec.limits.notebook_timeout + TIMEOUT_MARGIN

    def execute(self, nb, label: str = "job") -> ExecutionResult:
        import nbformat

        ray = self._ray
        started = time.monotonic()
        ref = self._task.remote(nbformat.writes(nb), self.spec, self.gpus_per_job, label)
        ready, _ = ray.wait([ref], timeout=self._timeout)
        if not ready:
            ray.cancel(ref, force=True)
            return _failed(nb, f"timeout: the Ray task ran longer than {self._timeout} s and was cancelled",
                           started, FailureKind.TIMEOUT)
        try:
            payload = ray.get(ref)
        except Exception as err:   # the worker died (killed, out of memory), or our code failed there
            return _failed(nb, f"the Ray worker failed: {type(err).__name__}: {_first_line(err)}", started,
                           FailureKind.RAY_WORKER_FAILED)
        result = _from_payload(payload, nb, started)
        # queueing in Ray, the worker's start and the kernel's: everything but the notebook's run
        result.wait_seconds = round(max(0.0, time.monotonic() - started - result.wall_seconds), 3)
        return result

    def close(self) -> None:
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_cluster(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Raise RuntimeError saying why, unless `address` is a Ray cluster this process can join.

    Runs `cluster_problem` in a child process (its Ray settings stay out of this one; a hang is
    killed at `timeout`). The message starts "cannot reach the Ray cluster at ADDRESS" (name,
    connection, not Ray, no answer) or "cannot use the Ray cluster at ADDRESS" (token, versions,
    not a node here).
    """
    package_root = str(Path(__file__).resolve().parents[2])   # importable in the child as it is here
    env = {**os.environ, **PROBE_RAY_CONFIG, "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    code = "import sys; from autograder.executors.ray_cluster import _probe_main; _probe_main(sys.argv[1])"
    try:
        done = subprocess.run([sys.executable, "-c", code, address], capture_output=True, text=True,
                              timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"cannot reach the Ray cluster at {address}: no answer within {timeout:g} s") from None
    answer = None
    for line in reversed(done.stdout.splitlines()):
        try:
            answer = json.loads(line)
            break
        except ValueError:
            continue
    if not isinstance(answer, dict):
        why = _last_line(done.stderr) or f"exit status {done.returncode}"
        raise RuntimeError(f"cannot reach the Ray cluster at {address}: checking the address failed: {why}")
    if answer.get("problem"):
        raise RuntimeError(f"cannot {answer.get('verb', 'reach')} the Ray cluster at {address}: {answer['problem']}")


def _probe_main(address: str) -> None:
    """In check_cluster's child: print {"problem": ..., "verb": ...} as the last line of stdout."""
    try:
        verb, problem = cluster_problem(address)
    except Exception as err:   # our own check broke: say so rather than guess
        verb, problem = "reach", f"checking the address failed: {type(err).__name__}: {_first_line(err)}"
    print(json.dumps({"verb": verb, "problem": problem}), flush=True)


def cluster_problem(address: str) -> tuple[str, str | None]:
    """("reach" or "use", why) this process cannot join the cluster at `address`, or (.., None).

    Meant for a child process: Ray's GCS client here uses the timeouts of the environment
    (PROBE_RAY_CONFIG in check_cluster).
    """
    client_mode = address.startswith("ray://")
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address_or_die

        try:
            address = canonicalize_bootstrap_address_or_die("auto")
        except ConnectionError as err:
            return "reach", str(err)
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        return "reach", ("not an address: expected HOST:PORT (the port `ray start --head` printed, 6379 by "
                         "default), auto, or ray://HOST:PORT (the Ray Client, port 10001 by default)")
    try:
        socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        return "reach", f"unknown host {host!r} ({err.strerror})"
    try:
        connection = socket.create_connection((host, int(port)), timeout=TCP_TIMEOUT)
    except ConnectionRefusedError:
        return "reach", f"nothing listens on port {port} of {host} (connection refused); is the cluster started?"
    except (socket.timeout, TimeoutError):
        return "reach", f"no answer from {host}:{port} within {TCP_TIMEOUT} s (wrong host, or a firewall?)"
    except OSError as err:
        return "reach", f"{host}:{port}: {err.strerror or err}"
    with connection:
        if os.environ.get("RAY_USE_TLS", "0").lower() not in ("1", "true"):
            problem = _not_grpc(connection, f"{host}:{port}")
            if problem:
                return "reach", problem
    if client_mode:   # the Ray Client's own protocol: ray.init checks the rest
        return "reach", None

    from ray._raylet import (
        AuthenticationMode,
        AuthenticationTokenLoader,
        GcsClient,
        get_authentication_mode,
    )

    sends_token = get_authentication_mode() == AuthenticationMode.TOKEN
    if sends_token and not AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
        return "use", ("RAY_AUTH_MODE=token is set but this machine has no token: put the cluster's token in "
                       "RAY_AUTH_TOKEN, or in a file named by RAY_AUTH_TOKEN_PATH, or in ~/.ray/auth_token")
    try:
        client = GcsClient(address=address)
    except Exception as err:
        text = " ".join(str(err).split())
        if type(err).__name__ == "AuthenticationError" or "InvalidAuthToken" in text or "Unauthenticated" in text:
            return "use", _token_advice(sends_token)
        if "Timed out" in text:
            return "reach", (f"{host}:{port} accepts connections but does not answer as a Ray cluster (is it the "
                             "port `ray start --head` printed, 6379 by default?)")
        return "reach", f"{host}:{port} does not answer as a Ray cluster: {_first_line(err)}"
    metadata = client.internal_kv_get(b"CLUSTER_METADATA", b"cluster", timeout=5)
    if metadata:
        problem = _version_problem(json.loads(metadata))
        if problem:
            return "use", problem
    from ray._private.services import find_node_ids
    from ray.core.generated.gcs_pb2 import GcsNodeInfo

    nodes = {node_id.hex() for node_id, info in client.get_all_node_info(timeout=5).items()
             if info.state == GcsNodeInfo.GcsNodeState.ALIVE}
    if not nodes & set(find_node_ids()):
        return "use", ("this machine runs no node of that cluster, and a driver joins through its own node: run "
                       f"the command on the head node, or first join this machine with `ray start --address={address}`"
                       " (or the Ray Client, --address ray://HEAD:10001, with the ray[client] package)")
    return "use", None


# What a gRPC client (Ray's GCS client) sends first on a plain-text connection: the HTTP/2
# preface and an empty SETTINGS frame; every gRPC server answers with a SETTINGS frame.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _not_grpc(connection: socket.socket, where: str) -> str | None:
    """Why the server at the other end of `connection` is not a gRPC server, or None if it is one."""
    received = b""
    try:
        connection.sendall(HTTP2_PREFACE)
        while len(received) < 9:
            chunk = connection.recv(9 - len(received))
            if not chunk:
                break
            received += chunk
    except (socket.timeout, TimeoutError):
        return (f"{where} accepts connections but does not answer as a Ray cluster (nothing came back within "
                f"{TCP_TIMEOUT} s; is it the port `ray start --head` printed, 6379 by default?)")
    except OSError as err:
        return f"{where} does not answer as a Ray cluster ({err.strerror or err})"
    if len(received) == 9 and received[3] == 4:   # a SETTINGS frame
        return None
    if received.startswith((b"HTTP/", b"<")):
        return (f"{where} does not answer as a Ray cluster: it speaks HTTP/1 (a web server, such as Ray's dashboard?); "
                "give the port `ray start --head` printed, 6379 by default")
    what = "closed the connection" if not received else "answered something else"
    return (f"{where} does not answer as a Ray cluster (it {what}); give the port `ray start --head` printed, "
            "6379 by default")


def _token_advice(sends_token: bool) -> str:
    where = "RAY_AUTH_TOKEN, or in a file named by RAY_AUTH_TOKEN_PATH, or in ~/.ray/auth_token"
    if sends_token:
        return (f"the cluster refused this machine's token: put the cluster's token (`ray get-auth-token` on the "
                f"head node prints it) in {where}")
    found = " (a token file exists at ~/.ray/auth_token)" if (Path.home() / ".ray" / "auth_token").exists() else ""
    return ("the cluster asks for a token (token authentication is on) and this machine sends none: set "
            f"RAY_AUTH_MODE=token and put the cluster's token (`ray get-auth-token` on the head node prints it) in "
            f"{where}{found}")


def _version_problem(cluster: dict) -> str | None:
    """Ray's own rule (ray._private.utils.check_version_info): same Ray, same Python (to the patch
    level unless RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL=minor), as one sentence."""
    from ray._private.utils import check_version_info, compute_version_info

    try:
        check_version_info(cluster, "this machine")
    except RuntimeError:
        ray_version, python_version = compute_version_info()
        return (f"its nodes run Ray {cluster.get('ray_version')} on Python {cluster.get('python_version')}, this "
                f"machine Ray {ray_version} on Python {python_version}: the driver and every node need the "
                "same Ray and Python (the course's virtualenv)")
    except (KeyError, TypeError, ValueError):
        return None
    return None


def execute_in_worker(nb_json: str, spec: JobSpec, gpu_share: float, label: str) -> str:
    """In a Ray worker: one sandboxed kernel for one notebook. Returns JSON text (data only)."""
    import nbformat
    import ray

    from .local import open_gpu_memory, run_session, start_kernel

    missing = [host for host, _ in spec.read_only if not os.path.exists(host)]
    if missing:
        return json.dumps({"status": "failed", "failure": FailureKind.RAY_WORKER_FAILED.value,
                           "reason": f"course files missing on this Ray node: {', '.join(missing)}"})
    slot, notes = _slot_from_ray([str(g) for g in ray.get_gpu_ids()], gpu_share)
    gpu_memory, problem = open_gpu_memory() if slot.gpu is not None else (None, None)
    if problem:
        notes.append(f"no GPU memory limit: {problem}")

    async def start_and_run():
        session = await start_kernel(spec, slot, prefix="autograder-ray-")
        return await run_session(session, slot, nbformat.reads(nb_json, as_version=4), gpu_memory)

    result = asyncio.run(start_and_run())
    return json.dumps({"notebook": nbformat.writes(result.notebook), "status": result.status,
                       "reason": result.reason, "sandboxed": result.sandboxed,
                       "failure": result.failure.value if result.failure else None,
                       "cell_errors": {str(k): v for k, v in result.cell_errors.items()},
                       "wall_seconds": result.wall_seconds, "start_seconds": result.start_seconds,
                       "warnings": result.warnings + notes,
                       "where": f"Ray node {ray.get_runtime_context().get_node_id()[:12]}"
                                + (f", Ray GPU {','.join(map(str, ray.get_gpu_ids()))}" if ray.get_gpu_ids() else "")})


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
        handle = (pynvml.nvmlDeviceGetHandleByUUID(wanted) if wanted.startswith(("GPU-", "MIG-"))
                  else pynvml.nvmlDeviceGetHandleByIndex(int(wanted)))
        minor = int(pynvml.nvmlDeviceGetMinorNumber(handle))
        uuid = pynvml.nvmlDeviceGetUUID(handle)
        uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
    except Exception as err:   # no driver here: Ray's GPU is a logical resource only
        return Slot(0, gpu_share=share), [f"Ray assigned GPU {wanted}, which this node has no device for "
                                         f"({type(err).__name__}): the kernel runs without a GPU"]
    if not os.path.exists(f"/dev/nvidia{minor}"):
        return Slot(0), [f"Ray assigned GPU {wanted}, but /dev/nvidia{minor} is missing: the kernel runs without a GPU"]
    return Slot(0, minor, min(1.0, share), uuid), []


def _from_payload(payload: str, nb, started: float) -> ExecutionResult:
    """Validate what the worker sent: JSON with a notebook; anything else is a failed result."""
    import nbformat

    from .session import ExecutionResult

    try:
        data = json.loads(payload)
        if data.get("status") == "failed" and "notebook" not in data:
            return _failed(nb, str(data.get("reason")), started, _failure(data))
        notebook = nbformat.reads(data["notebook"], as_version=4)
        result = ExecutionResult(notebook, str(data["status"]), data.get("reason"), bool(data["sandboxed"]),
                                 {int(k): str(v) for k, v in data.get("cell_errors", {}).items()},
                                 float(data.get("wall_seconds", 0)), [str(w) for w in data.get("warnings", [])],
                                 float(data.get("start_seconds", 0)), failure=_failure(data))
    except (ValueError, KeyError, TypeError) as err:
        return _failed(nb, f"the Ray task sent back something malformed: {err}", started, FailureKind.RAY_WORKER_FAILED)
    result.where = str(data.get("where", ""))
    return result


def _failed(nb, reason: str, started: float, failure: FailureKind) -> ExecutionResult:
    from .session import ExecutionResult

    return ExecutionResult(nb, "failed", reason, False, wall_seconds=round(time.monotonic() - started, 3),
                           failure=failure)


def _failure(data: dict) -> FailureKind | None:
    """The worker's failure kind (a value of FailureKind; anything else: the worker failed)."""
    if data.get("status") != "failed":
        return None
    try:
        return FailureKind(data.get("failure"))
    except ValueError:
        return FailureKind.RAY_WORKER_FAILED


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""

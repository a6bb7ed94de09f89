"""`autograder grade --executor ray --address ...` against a real cluster (`ray start --head`).

The cluster runs in its own processes, with token authentication on (what `ray start --head`
does once a token exists, as it does after any local `ray.init()` in Ray 2.60): the driver
without the token is told what to set; with it, the scores equal the local executor's. A
cluster of another Ray version is refused with both versions named. A wrong address (nothing
listening, an unknown host, a port that is not Ray's) fails within seconds with the reason,
as a plain error. Only processes this file started are stopped: never
`ray stop`, which would stop every Ray on the machine.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from autograder.authoring.pipeline import build_lab
from autograder.demo import DemoStudent, make_submission
from autograder.grading.gradebook import recorded_scores
from autograder.grading.results import load_result
from conftest import cell_scores, free_port, new_course
from notebooks import mean_square_lab, write_lab

pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[test]')")
import psutil  # noqa: E402  (after ray, which ships one)

BIN = Path(sys.executable).parent
STUDENTS = {
    "ada": DemoStudent("ada", "correct"),
    "ben": DemoStudent("ben", "blank", answers="blank"),
    "cy": DemoStudent(
        "cy", "outer wrong", replace={"outer": "def outer(a, b):\n    return torch.zeros(len(a), len(b))"}
    ),
}
WRONG_ADDRESS_BOUND = 15  # seconds for `autograder grade` to fail on a wrong address, start-up included


def clean_env(**extra) -> dict:
    """This environment without Ray settings of its own (a token, an address), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH_", "RAY_ADDRESS"))}
    return {**env, "RAY_USAGE_STATS_ENABLED": "0", **extra}


class Head:
    """`ray start --head --block` in its own session; stop() ends it and everything it started."""

    def __init__(self):
        # Short: Ray's Unix sockets live under it (a socket path has ~107 characters at most).
        self.temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        self.token = self.temp / "token"
        self.token.write_text(uuid.uuid4().hex)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token)}
        self.log = self.temp / "head.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [
                    str(BIN / "ray"),
                    "start",
                    "--head",
                    "--block",
                    "--port",
                    str(self.port),
                    "--num-cpus",
                    "2",
                    "--disable-usage-stats",
                    "--include-dashboard",
                    "false",
                    "--temp-dir",
                    str(self.temp / "t"),
                    "--dashboard-port",
                    str(free_port()),
                    "--dashboard-agent-listen-port",
                    str(free_port()),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.temp,
                env=clean_env(**self.auth),
            )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while "Ray runtime started" not in self.log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`ray start --head` did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.3)

    def worker_logs(self, text: str) -> int:
        """How often `text` is in the logs of the cluster's workers."""
        sessions = [p for p in (self.temp / "t").glob("session_*") if not p.is_symlink()]  # not session_latest
        return sum(
            path.read_text(errors="replace").count(text)
            for session in sessions
            for path in session.glob("logs/worker-*.out")
        )

    def submissions_run(self) -> int:
        """Submissions the cluster's workers ran: Ray tasks of the executor (each worker logs its
        task's name) with kernel_start "fresh", jobs of its actors (each logs every job it takes)
        with "fork"."""
        from autograder.executors.ray_cluster import JOB_LOG_LINE

        return self.worker_logs(":task_name:execute_in_worker") + self.worker_logs(JOB_LOG_LINE)

    def actors_started(self) -> int:
        return self.worker_logs(":actor_name:SlotActor")

    def stop(self) -> None:
        try:
            spawned = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            spawned = []
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # `ray start --block` drains and stops its processes
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for proc in spawned:  # what did not stop by itself (psutil checks it is the same process)
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # and anything else left in its session's group
        except (ProcessLookupError, PermissionError):
            pass
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def head():
    head = Head()  # starts while the course builds
    try:
        yield head
    finally:
        head.stop()


@pytest.fixture(scope="module")
def course(tmp_path_factory, head):
    course = new_course(tmp_path_factory.mktemp("ray-cluster-course"))
    write_lab(course.root, "tiny", mean_square_lab())
    build_lab(course, "tiny")
    for student in STUDENTS.values():
        make_submission(course, "tiny", student)
    return course


def grade(course, *args, env=None, timeout=300) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run(
        [str(BIN / "autograder"), "grade", "tiny", "--force", *args],
        cwd=course.root,
        capture_output=True,
        text=True,
        env=env or clean_env(),
        timeout=timeout,
    )
    return done, time.monotonic() - started


def scores(course) -> dict:
    results = {s: load_result(course.autograded, s, "tiny") for s in STUDENTS}
    return {s: (r.status, r.score, cell_scores(r)) for s, r in results.items()}


def test_a_real_cluster_asks_for_its_token_then_grades_as_the_local_executor(course, head):
    done, _ = grade(course, "--executor", "local")
    assert done.returncode == 0, done.stdout + done.stderr
    local = scores(course)
    assert {s: v[1] for s, v in local.items()} == {"ada": 3.0, "ben": 0.0, "cy": 2.0}
    head.wait_ready()

    done, seconds = grade(course, "--executor", "ray", "--address", head.address)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert f"error: cannot use the Ray cluster at {head.address}: the cluster asks for a token" in " ".join(out.split())
    assert "RAY_AUTH_MODE=token" in out and "RAY_AUTH_TOKEN_PATH" in out
    assert "Traceback" not in out
    assert seconds < WRONG_ADDRESS_BOUND, out
    assert head.submissions_run() == 0

    done, _ = grade(course, "--executor", "ray", "--address", head.address, env=clean_env(**head.auth))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Connected to Ray cluster" in done.stderr
    assert scores(course) == local
    # On the cluster (kernel_start "fork", the default): two actors (the cluster's 2 CPUs), each
    # forking kernels from its zygote (no result says they started fresh), took every submission.
    assert head.submissions_run() == len(STUDENTS)
    assert head.actors_started() == 2
    assert not [w for s in STUDENTS for w in load_result(course.autograded, s, "tiny").warnings if "kernel_start" in w]
    assert recorded_scores(course, "tiny") == {s: (v[1], 3.0) for s, v in local.items()}


def test_a_cluster_of_another_ray_version_is_refused_with_both_versions(course, head):
    import ray

    head.wait_ready()
    metadata = head_kv(head, "get")
    try:
        head_kv(head, "put", {**metadata, "ray_version": "2.59.0"})  # as a head started with another Ray
        done, seconds = grade(course, "--executor", "ray", "--address", head.address, env=clean_env(**head.auth))
        out = " ".join((done.stdout + done.stderr).split())
        assert done.returncode == 1, out
        assert (
            f"error: cannot use the Ray cluster at {head.address}: its nodes run Ray 2.59.0 on Python "
            f"{metadata['python_version']}, this machine Ray {ray.__version__} on Python"
        ) in out
        assert "Traceback" not in out and seconds < WRONG_ADDRESS_BOUND, out
    finally:
        head_kv(head, "put", metadata)
    assert head_kv(head, "get") == metadata


def head_kv(head, verb: str, metadata: dict | None = None) -> dict:
    """Read or write the cluster's metadata (Ray and Python versions) in its GCS, with its token."""
    code = (
        "import json, sys; from ray._raylet import GcsClient; c = GcsClient(address=sys.argv[1]); "
        "key, ns = b'CLUSTER_METADATA', b'cluster'; "
        "sys.argv[2] == 'put' and c.internal_kv_put(key, sys.argv[3].encode(), True, ns); "
        "print(c.internal_kv_get(key, ns).decode())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, head.address, verb, json.dumps(metadata or {})],
        capture_output=True,
        text=True,
        env=clean_env(**head.auth),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


class NotRay(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture
def web_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotRay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_wrong_address_fails_within_seconds_with_the_reason(course, web_server):
    cases = {
        f"127.0.0.1:{free_port()}": "connection refused",
        "no-such-host.invalid:6379": "unknown host 'no-such-host.invalid'",
        web_server: "does not answer as a Ray cluster",
    }
    for address, reason in cases.items():
        done, seconds = grade(course, "--executor", "ray", "--address", address, timeout=60)
        out = " ".join((done.stdout + done.stderr).split())
        assert done.returncode == 1, out
        assert f"error: cannot reach the Ray cluster at {address}: " in out and reason in out, out
        assert "Traceback" not in out, out
        assert seconds < WRONG_ADDRESS_BOUND, f"{address}: {seconds:.1f} s"


def test_a_port_that_accepts_and_says_nothing_fails_at_the_first_answer_timeout():
    from autograder.executors.ray_address import TCP_TIMEOUT, check_cluster

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(
            RuntimeError,
            match=f"cannot reach the Ray cluster at {address}: .*accepts connections "
            f"but does not answer as a Ray cluster",
        ):
            check_cluster(address)
        assert time.monotonic() - started < TCP_TIMEOUT + 5

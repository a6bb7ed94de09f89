"""The check of a Ray cluster's address, before the Ray executor joins it: why not, in one sentence.

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

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

# Seconds the check of a cluster's address may take in all (its process's start included).
CONNECT_TIMEOUT = 10
# Seconds for the TCP connection and the first answer; Ray's GCS client settings for the
# handshake (a gRPC server that is not Ray's GCS fails after about 2 + 2 + 2 s).
TCP_TIMEOUT = 3
PROBE_RAY_CONFIG = {"RAY_gcs_rpc_server_connect_timeout_s": "2", "RAY_py_gcs_connect_timeout_s": "2"}


def check_cluster(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Raise RuntimeError saying why, unless `address` is a Ray cluster this process can join.

    Runs `cluster_problem` in a child process (its Ray settings stay out of this one; a hang is
    killed at `timeout`). The message starts "cannot reach the Ray cluster at ADDRESS" (name,
    connection, not Ray, no answer) or "cannot use the Ray cluster at ADDRESS" (token, versions,
    not a node here).
    """
    package_root = str(Path(__file__).resolve().parents[2])  # importable in the child as it is here
    env = {
        **os.environ,
        **PROBE_RAY_CONFIG,
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
    }
    code = "import sys; from autograder.executors.ray_address import _probe_main; _probe_main(sys.argv[1])"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, address],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
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
    except Exception as err:  # our own check broke: say so rather than guess
        verb, problem = "reach", f"checking the address failed: {type(err).__name__}: {first_line(err)}"
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
        return "reach", (
            "not an address: expected HOST:PORT (the port `ray start --head` printed, 6379 by "
            "default), auto, or ray://HOST:PORT (the Ray Client, port 10001 by default)"
        )
    try:
        socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        return "reach", f"unknown host {host!r} ({err.strerror})"
    try:
        connection = socket.create_connection((host, int(port)), timeout=TCP_TIMEOUT)
    except ConnectionRefusedError:
        return "reach", f"nothing listens on port {port} of {host} (connection refused); is the cluster started?"
    except TimeoutError:
        return "reach", f"no answer from {host}:{port} within {TCP_TIMEOUT} s (wrong host, or a firewall?)"
    except OSError as err:
        return "reach", f"{host}:{port}: {err.strerror or err}"
    with connection:
        if os.environ.get("RAY_USE_TLS", "0").lower() not in ("1", "true"):
            problem = _not_grpc(connection, f"{host}:{port}")
            if problem:
                return "reach", problem
    if client_mode:  # the Ray Client's own protocol: ray.init checks the rest
        return "reach", None

    from ray._raylet import (  # type: ignore[attr-defined]  # Cython names its .pyi stub leaves out
        AuthenticationMode,
        AuthenticationTokenLoader,
        GcsClient,
        get_authentication_mode,
    )

    sends_token = get_authentication_mode() == AuthenticationMode.TOKEN
    if sends_token and not AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
        return "use", (
            "RAY_AUTH_MODE=token is set but this machine has no token: put the cluster's token in "
            "RAY_AUTH_TOKEN, or in a file named by RAY_AUTH_TOKEN_PATH, or in ~/.ray/auth_token"
        )
    try:
        client = GcsClient(address=address)
    except Exception as err:
        text = " ".join(str(err).split())
        if type(err).__name__ == "AuthenticationError" or "InvalidAuthToken" in text or "Unauthenticated" in text:
            return "use", _token_advice(sends_token)
        if "Timed out" in text:
            return "reach", (
                f"{host}:{port} accepts connections but does not answer as a Ray cluster (is it the "
                "port `ray start --head` printed, 6379 by default?)"
            )
        return "reach", f"{host}:{port} does not answer as a Ray cluster: {first_line(err)}"
    metadata = client.internal_kv_get(b"CLUSTER_METADATA", b"cluster", timeout=5)
    if metadata:
        problem = _version_problem(json.loads(metadata))
        if problem:
            return "use", problem
    from ray._private.services import find_node_ids
    from ray.core.generated.gcs_pb2 import GcsNodeInfo  # type: ignore[attr-defined]  # protobuf builds it at import

    nodes = {
        node_id.hex()
        for node_id, info in client.get_all_node_info(timeout=5).items()
        if info.state == GcsNodeInfo.GcsNodeState.ALIVE
    }
    if not nodes & set(find_node_ids()):
        return "use", (
            "this machine runs no node of that cluster, and a driver joins through its own node: run "
            f"the command on the head node, or first join this machine with `ray start --address={address}`"
            " (or the Ray Client, --address ray://HEAD:10001, with the ray[client] package)"
        )
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
    except TimeoutError:
        return (
            f"{where} accepts connections but does not answer as a Ray cluster (nothing came back within "
            f"{TCP_TIMEOUT} s; is it the port `ray start --head` printed, 6379 by default?)"
        )
    except OSError as err:
        return f"{where} does not answer as a Ray cluster ({err.strerror or err})"
    if len(received) == 9 and received[3] == 4:  # a SETTINGS frame
        return None
    if received.startswith((b"HTTP/", b"<")):
        return (
            f"{where} does not answer as a Ray cluster: it speaks HTTP/1 (a web server, such as Ray's dashboard?); "
            "give the port `ray start --head` printed, 6379 by default"
        )
    what = "closed the connection" if not received else "answered something else"
    return (
        f"{where} does not answer as a Ray cluster (it {what}); give the port `ray start --head` printed, "
        "6379 by default"
    )


def _token_advice(sends_token: bool) -> str:
    where = "RAY_AUTH_TOKEN, or in a file named by RAY_AUTH_TOKEN_PATH, or in ~/.ray/auth_token"
    if sends_token:
        return (
            f"the cluster refused this machine's token: put the cluster's token (`ray get-auth-token` on the "
            f"head node prints it) in {where}"
        )
    found = " (a token file exists at ~/.ray/auth_token)" if (Path.home() / ".ray" / "auth_token").exists() else ""
    return (
        "the cluster asks for a token (token authentication is on) and this machine sends none: set "
        f"RAY_AUTH_MODE=token and put the cluster's token (`ray get-auth-token` on the head node prints it) in "
        f"{where}{found}"
    )


def _version_problem(cluster: dict) -> str | None:
    """Ray's own rule (ray._private.utils.check_version_info): same Ray, same Python (to the patch
    level unless RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL=minor), as one sentence."""
    from ray._private.utils import check_version_info, compute_version_info

    try:
        check_version_info(cluster, "this machine")
    except RuntimeError:
        ray_version, python_version = compute_version_info()
        return (
            f"its nodes run Ray {cluster.get('ray_version')} on Python {cluster.get('python_version')}, this "
            f"machine Ray {ray_version} on Python {python_version}: the driver and every node need the "
            "same Ray and Python (the course's virtualenv)"
        )
    except (KeyError, TypeError, ValueError):
        return None
    return None


def first_line(err: Exception) -> str:
    """The first line of an error's text (Ray's own are long), for a one-line reason."""
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""

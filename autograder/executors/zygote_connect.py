"""A forked kernel's stand-in on the host: the process jupyter_client launches and watches.

Run as `python -I -S zygote_connect.py SOCKET CGROUP_PROCS LIFELINE_FD REQUEST_JSON -- KERNEL_ARGV...`
(stdlib only, a few milliseconds): it asks the slot's zygote (zygote_main.py) for a kernel, puts
the job's pid 1 (its host pid read from the credentials of its first byte) into the job's pids
cgroup, says go, and then lives exactly as long as the kernel does, exiting with the kernel's
status (128 + N for a signal, as bwrap reports it). Killing it kills the kernel: the zygote's
monitor of the job sees the socket close and kills the job's pid namespace. It also exits when
the coordinator's lifeline pipe closes.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import sys

SCM_CREDENTIALS = 2
SO_PASSCRED = 16


def main(argv: list[str]) -> int:
    sock_path, procs, lifeline, request_text = argv[:4]
    kernel_argv = argv[5:]
    request = json.loads(request_text)
    request["arguments"] = kernel_argv[3:]  # after `python -m ipykernel_launcher`
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.setsockopt(socket.SOL_SOCKET, SO_PASSCRED, 1)
    conn.connect(sock_path)
    # with this process's stdout and stderr (the kernel's log): the forked kernel writes there
    socket.send_fds(conn, [(json.dumps(request) + "\n").encode()], [1, 2])
    data, ancillary, _, _ = conn.recvmsg(64, socket.CMSG_SPACE(12))
    if data != b"P":
        sys.stderr.write(f"the zygote did not start the kernel: {_rest(conn, data)}\n")
        return 1
    pid = next(
        (
            struct.unpack("iII", payload[:12])[0]
            for level, kind, payload in ancillary
            if level == socket.SOL_SOCKET and kind == SCM_CREDENTIALS
        ),
        None,
    )
    if not pid:
        sys.stderr.write("the zygote's job sent no credentials\n")
        return 1
    if procs != "-":
        try:
            with open(procs, "w") as out:
                out.write(str(pid))
        except OSError as err:
            sys.stderr.write(f"cannot put the kernel in its pids cgroup: {err}\n")
            return 1
    conn.sendall(b"go\n")
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLHUP)
    if int(lifeline) >= 0:
        poller.register(int(lifeline), select.POLLIN | select.POLLHUP)
    buffer = b""
    while True:
        for fd, _ in poller.poll():
            if fd != conn.fileno():
                return 137  # the coordinator is gone: closing the socket kills the kernel
            chunk = conn.recv(4096)
            if not chunk:
                return 1
            buffer += chunk
            for line in buffer.split(b"\n")[:-1]:
                if line.startswith(b"exit "):
                    return int(line[5:])
                if line.startswith(b"E "):
                    sys.stderr.write(line[2:].decode("utf-8", "replace") + "\n")
            buffer = buffer.rsplit(b"\n", 1)[-1][-4096:]


def _rest(conn: socket.socket, first: bytes) -> str:
    conn.settimeout(5)
    data = first
    try:
        while len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data.decode("utf-8", "replace").strip().removeprefix("E ") or "it closed the connection"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

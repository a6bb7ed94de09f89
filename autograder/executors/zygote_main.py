"""The kernel factory's program ("zygote"): runs INSIDE a slot's bubblewrap sandbox, stdlib only.

Never imported by the coordinator: zygote.py binds this one file read-only into the slot's sandbox
and runs it there (the sandbox sees no autograder package but the checks). It imports what the
lab's source notebooks import, never runs student code, never initialises CUDA, and stays one
thread; then, per job, it forks (README, "Kernels forked from a zygote"):

    zygote Z (bwrap's user namespace U1, CAP_SYS_ADMIN + CAP_NET_ADMIN there only)
      └ A  the job's monitor: new mount, pid, net, IPC and UTS namespaces (owned by U1)
          └ B  pid 1 of the job: mounts a fresh /proc, /tmp and /dev/shm and its own job folder
              (every other job folder and the zygote's socket unmounted), brings up lo, enters a
              new user namespace U2 (where it holds nothing over U1's mounts), drops every
              capability, no_new_privs; reaps
              └ C  the kernel: setsid, the zygote's environment, fresh random seeds, ipykernel

A talks to the job's connector (zygote_connect.py, on the host) over the accepted socket: B's
first byte carries its credentials (the connector reads B's host pid from them and puts it in
the job's pids cgroup, then answers "go"); A kills B (and with it the whole pid namespace) when
the connector hangs up, and tells it how B ended ("exit N", N as bwrap reports: 128 + signal).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import importlib
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import threading

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 32, 4096, 8192, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
# What bwrap covers read-only in the /proc it mounts; so do we.
PROC_COVERED = ("sys", "sysrq-trigger", "irq", "bus")
STAGE_PROC, STAGE_JOB, STAGE_KEEP = "/dev/shm/.proc", "/dev/shm/.job", "/dev/shm/.keep"  # mounts on their way in

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.unshare.argtypes = [ctypes.c_int]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
libc.capset.argtypes = [ctypes.c_void_p, ctypes.c_void_p]


class SetupError(Exception):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(code)} (errno {code})")


def _mount(source, target, fstype, flags, data=None, what=""):
    _check(
        libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        what or f"mount {target}",
    )


def _prctl(option: int, arg: int = 0, what: str = "prctl") -> None:
    _check(libc.prctl(option, arg, 0, 0, 0), what)


# ---------------------------------------------------------------------------- the zygote


def main(argv: list[str]) -> None:
    """argv: the control socket's path, then a JSON list of modules to import."""
    sock_path, modules = argv[0], json.loads(argv[1])
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as err:  # the notebook meets the same error and reports it
            failed.append(f"{name}: {type(err).__name__}")
    threads = _thread_count()
    if threads != 1 or threading.active_count() != 1:
        _say({"error": f"the zygote has {threads} threads after its imports: forking it is unsafe"})
        return
    if "torch" in sys.modules and _cuda_initialised():
        _say({"error": "CUDA was initialised in the zygote by an import: it does not survive fork"})
        return
    environment = dict(os.environ)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(16)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the monitors are reaped by the kernel
    _say({"ready": True, "pid": os.getpid(), "import_errors": failed})
    zygote = os.getpid()
    while True:
        try:
            conn, _ = listener.accept()
        except InterruptedError:
            continue
        fds: list[int] = []
        conn.settimeout(10)  # a connector that says nothing does not stop the slot
        try:
            first, fds, _, _ = socket.recv_fds(conn, 1 << 20, 2)  # the kernel's stdout and stderr, if sent
            request = json.loads(_read_line(conn, first))
            request["output"] = fds
        except (OSError, ValueError):
            conn.close()
            _close(fds)
            continue
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                listener.close()
                code = _monitor(conn, request, zygote, environment)
            except BaseException as err:  # a monitor never returns into the accept loop
                _send(conn, f"E monitor: {type(err).__name__}: {err}\n")
            finally:
                os._exit(code)
        conn.close()
        _close(fds)


def _where(err: BaseException) -> str:
    """'function: ' of the frame that raised (for a setup step's message)."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_name}: " if tb is not None and not isinstance(err, SetupError) else ""


def _say(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _cuda_initialised() -> bool:
    try:
        return bool(sys.modules["torch"].cuda.is_initialized())
    except Exception:
        return False


def _close(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _read_line(conn: socket.socket, data: bytes = b"", limit: int = 1 << 20) -> str:
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            raise OSError("closed")
        data += chunk
        if len(data) > limit:
            raise OSError("request too long")
    return data.decode()


def _send(conn: socket.socket, text: str) -> None:
    try:
        conn.sendall(text.encode())
    except OSError:
        pass


# ---------------------------------------------------------------------------- A: the job's monitor


def _monitor(conn: socket.socket, request: dict, zygote: int, environment: dict) -> int:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "die with the zygote")
    if os.getppid() != zygote:
        return 1
    _check(libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _job_init(conn, request, environment)
        except BaseException as err:
            _send(conn, f"E setup: {_where(err)}{err}\n")
        finally:
            os._exit(code)
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.register(conn.fileno(), select.POLLRDHUP | select.POLLHUP | select.POLLERR)
    while True:
        events = dict(poller.poll())
        if pidfd in events:
            break
        if events.get(conn.fileno(), 0) & (select.POLLRDHUP | select.POLLHUP | select.POLLERR):
            os.kill(pid, signal.SIGKILL)  # the connector is gone: the job goes
            break
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    _send(conn, f"exit {128 - code if code < 0 else code}\n")
    return 0


# ---------------------------------------------------------------------------- B: pid 1 of the job


def _job_init(conn: socket.socket, request: dict, environment: dict) -> int:
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "die with the monitor")
    conn.sendall(b"P")  # its credentials name this process's host pid to the connector
    conn.settimeout(30)
    answer = conn.recv(16)
    if answer != b"go\n":
        raise SetupError(f"the connector did not say go ({answer!r})")
    conn.settimeout(None)
    _own_mounts(request)
    _loopback_up()
    _own_user_namespace()
    _drop_privileges()
    conn.close()
    if request.get("probe"):
        return 0  # the zygote's start-up check: everything but the kernel
    os.chdir(request.get("cwd", "/tmp/work"))
    kernel = os.fork()
    if kernel == 0:
        code = 1
        try:
            _kernel(request, environment)
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    _close(request.get("output", []))
    _prctl(PR_SET_DUMPABLE, 0, "not dumpable")  # the kernel may not ptrace its init
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
        if pid == kernel:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code


def _own_mounts(request: dict) -> None:
    """A fresh /dev/shm, /proc (of the job's pid namespace) and /tmp, the job folder alone; the
    zygote's instances of them unmounted, not covered, and so are other jobs' folders."""
    job_dir, hidden = request["job_dir"], request["hide"]
    size = str(int(request["tmpfs_bytes"]))
    _mount(None, "/", None, MS_REC | MS_PRIVATE, what="make / private")
    keep = os.open(job_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def foreign(point: str) -> bool:  # other jobs' folders, the zygote's socket
        ours = point == job_dir or job_dir.startswith(point + "/")  # the job folder's mount, or above it
        return not ours and any(point == top or point.startswith(top + "/") for top in hidden)

    for point in sorted(filter(foreign, _mount_points()), key=len, reverse=True):
        # a job folder the coordinator removes meanwhile is detached here by the kernel itself
        # (a mount point unlinked in another namespace), so "already gone" is not an error;
        # what is still mounted after the loop is, whatever umount2 said
        libc.umount2(point.encode(), MNT_DETACH)
    left = [point for point in _mount_points() if foreign(point)]
    if left:
        raise SetupError(f"could not unmount other jobs' folders: {', '.join(left)}")
    _umount("/dev/shm")
    _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=1777", what="tmpfs /dev/shm")
    # the new /proc is mounted aside while the zygote's is still there (the kernel allows a proc
    # mount in a user namespace only where one is fully visible already), then moved in its place
    os.mkdir(STAGE_PROC)
    _mount("proc", STAGE_PROC, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, what="mount /proc")
    for name in PROC_COVERED:
        path = f"{STAGE_PROC}/{name}"
        if os.path.exists(path):
            _mount(path, path, None, MS_BIND | MS_REC, what=f"bind /proc/{name}")
            _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _umount("/proc")
    _mount(STAGE_PROC, "/proc", None, MS_MOVE, what="move /proc")
    os.rmdir(STAGE_PROC)
    # the job folder waits in /dev/shm while the zygote's /tmp goes, all of it
    os.mkdir(STAGE_JOB)
    _mount(f"/proc/self/fd/{keep}", STAGE_JOB, None, MS_BIND | MS_REC, what="bind the job folder")
    os.close(keep)
    # so do the sandbox's read-only binds that lie under /tmp (a virtualenv or Python there, as
    # in a CI checkout under /tmp): moved, not bound again, so that they stay read-only
    kept = _binds_under_tmp(job_dir)
    for number, point in enumerate(kept):
        os.mkdir(f"{STAGE_KEEP}{number}")
        _mount(point, f"{STAGE_KEEP}{number}", None, MS_MOVE, what=f"move {point} aside")
    for top in ["/tmp", *(t for t in hidden if not t.startswith("/tmp/"))]:
        _umount(top)
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=0755", what="tmpfs /tmp")
    for folder in ("/tmp/home", "/tmp/work", job_dir, *kept):
        os.makedirs(folder, exist_ok=True)
    _mount(STAGE_JOB, job_dir, None, MS_MOVE, what="move the job folder")
    os.rmdir(STAGE_JOB)
    for number, point in enumerate(kept):
        _mount(f"{STAGE_KEEP}{number}", point, None, MS_MOVE, what=f"move {point} back")
        os.rmdir(f"{STAGE_KEEP}{number}")


def _binds_under_tmp(job_dir: str) -> list[str]:
    """The outermost mounts under /tmp that are neither the job folder nor above or below it (the
    sandbox's read-only binds; other jobs' folders and the zygote's socket are unmounted by now)."""
    kept: list[str] = []
    for point in sorted(set(_mount_points()), key=len):
        if not point.startswith("/tmp/") or any(point.startswith(k + "/") for k in kept):
            continue
        if point == job_dir or job_dir.startswith(point + "/") or point.startswith(job_dir + "/"):
            continue
        kept.append(point)
    return kept


def _umount(point: str) -> None:
    _check(libc.umount2(point.encode(), MNT_DETACH), f"unmount {point}")


def _mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            fields = line.split()
            if len(fields) > 4:
                points.append(fields[4].encode().decode("unicode_escape"))
    return points


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        flags = struct.unpack_from("16sh", fcntl.ioctl(probe, SIOCGIFFLAGS, struct.pack("16sh22x", b"lo", 0)))[1]
        fcntl.ioctl(probe, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))


def _own_user_namespace() -> None:
    """A user namespace of the job's own, the same ids mapped: what it holds there reaches
    nothing of U1's (its mounts, its network namespace)."""
    uid, gid = os.getuid(), os.getgid()
    _check(libc.unshare(CLONE_NEWUSER), "unshare the user namespace")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as out:
            out.write(text)


def _drop_privileges() -> None:
    with open("/proc/sys/kernel/cap_last_cap") as last:
        top = int(last.read())
    for cap in range(top + 1):
        _prctl(PR_CAPBSET_DROP, cap, f"drop capability {cap}")
    _check(libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient capabilities")
    header = struct.pack("Ii", LINUX_CAPABILITY_VERSION_3, 0)
    data = ctypes.create_string_buffer(24)  # two zeroed {effective, permitted, inheritable}
    _check(libc.capset(ctypes.c_char_p(header), data), "capset")
    _prctl(PR_SET_NO_NEW_PRIVS, 1, "no_new_privs")


# ---------------------------------------------------------------------------- C: the kernel


def _kernel(request: dict, environment: dict) -> None:
    os.setsid()
    # stdin from /dev/null; stdout and stderr the kernel's log, as a fresh kernel's (the connector's own)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for target, fd in zip((1, 2), request.get("output", []), strict=False):
        os.dup2(fd, target)
    _close(request.get("output", []))
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "die with the job's init")
    os.environ.clear()
    os.environ.update(environment)
    _reseed()
    import importlib.util

    spec = importlib.util.find_spec("ipykernel_launcher")
    sys.argv = [spec.origin if spec and spec.origin else "ipykernel_launcher", *request["arguments"]]
    if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]  # as ipykernel_launcher removes its own first entry; IPython adds ''
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


def _reseed() -> None:
    """Fresh random state, as a fresh process would have: a fork inherits the zygote's."""
    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        try:
            numpy.random.seed()
        except Exception:
            pass
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            torch.seed()
        except Exception:
            pass


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except SetupError as err:
        _say({"error": str(err)})
    except OSError as err:
        if err.errno != errno.EINTR:
            _say({"error": f"{type(err).__name__}: {err}"})

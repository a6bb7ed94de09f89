"""The sandbox a student's kernel runs in: bubblewrap namespaces, rlimits and a pids cgroup.

Only the kernel process goes inside; the coordinator (nbclient) stays outside and talks to
it over ZeroMQ `ipc` sockets in the job directory, the one writable host folder the sandbox
sees, bound at the same absolute path on both sides. There is no network namespace to
reach: the sandbox has its own, empty one.

What the kernel sees: of the host's system, an allow-list, read-only: the programs of
/usr/bin (with Debian's /bin, /lib... links), the folders of the shared libraries that
/etc/ld.so.cache lists with their own files but every subfolder masked empty (that is where
packages keep their data) except glibc's gconv/, the libraries the cache lists elsewhere and
the dynamic loader, ld.so.cache itself, /usr/sbin/ldconfig, glibc's C.UTF-8 locale, and
for matplotlib's fonts /etc/fonts, /usr/share/fontconfig and /usr/share/fonts; then the
Python installation and the virtualenv (read-only), the caller's read-only binds, the job
directory, a private sized /tmp (holding HOME and the working directory) and /dev/shm, and
a minimal /dev without GPUs unless some are given. Everything else of the host is absent:
the rest of /usr (/usr/share/datasets, where Debian's dataset-fashion-mnist installs the
test labels; /usr/lib/python3), /root, /work, /home, /sys and the rest of /etc.
tests/test_sandbox_visibility.py proves it by hashing everything a kernel can read. All
capabilities are dropped: the coordinator runs as root and bwrap would otherwise leave the
sandbox's root with a full set inside its user namespace, enough to remount the read-only
binds writable.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

log = logging.getLogger(__name__)

MiB = 2**20
GiB = 2**30

SANDBOX_TMP = "/tmp"
SANDBOX_HOME = "/tmp/home"
SANDBOX_WORKDIR = "/tmp/work"
# The host's system, as an allow-list (module doc), found out by tracing real lab kernels.
# Debian's merged-/usr top-level links are recreated as links; without merged /usr, /bin is
# bound as a program folder, and /lib... come in as the folders of the libraries they hold.
ROOT_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
PROGRAM_FOLDERS = ("/usr/bin", "/bin")   # programs only (FHS): /bin/sh, `!` escapes, fc-list, uname
LD_SO_CACHE = "/etc/ld.so.cache"
SYSTEM_PATHS = (
    LD_SO_CACHE,              # how the dynamic loader finds the libraries bound below
    "/usr/sbin/ldconfig",     # `ldconfig -p`: ctypes.util.find_library (torch's cuda-pathfinder at import)
    "/usr/lib/locale/C.utf8",  # glibc's C.UTF-8: Python coerces the C locale to it at start-up
    "/etc/fonts",             # fontconfig's configuration (matplotlib lists fonts with fc-list)
    "/usr/share/fontconfig",  # ... the configuration files it includes
    "/usr/share/fonts",       # the system fonts (matplotlib scans this folder too)
)
GPU_SHARED_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")
# Pid 2 of the sandbox: a subshell waits for EOF on the lifeline fd (the coordinator's write
# end closes when it exits, even by SIGKILL), then kills every process of the sandbox; the
# shell itself execs the command. bwrap's --die-with-parent alone leaks the sandbox when the
# coordinator dies in the first milliseconds, before bwrap's processes have set PDEATHSIG.
# `kill -1` is safe only inside the sandbox's own pid namespace.
LIFELINE_SCRIPT = 'fd=$1; shift; (read _ <&"$fd"; kill -KILL -1) & exec "$@"'


@dataclass(frozen=True)
class Limits:
    """Resource limits of one job.

    memory_bytes is RLIMIT_AS (address space, not resident memory). It must be None for GPU
    jobs: CUDA reserves huge virtual ranges at initialisation and fails under RLIMIT_AS.
    max_processes is the pids cgroup's pids.max; the kernel counts threads as tasks there,
    so it bounds threads and processes together. tmpfs_bytes sizes /tmp and /dev/shm each.
    job_folder_bytes and job_folder_inodes cap the job folder, the one host folder the kernel
    can write (job_folder.py: a tmpfs of its own where the coordinator may mount).
    """

    cell_timeout: int = 300             # wall-clock seconds per cell
    notebook_timeout: int = 1200        # wall-clock seconds for the whole notebook
    cpu_seconds: int = 3600             # RLIMIT_CPU of each process
    memory_bytes: int | None = 8 * GiB  # RLIMIT_AS; None for GPU jobs
    file_size_bytes: int = 256 * MiB    # RLIMIT_FSIZE
    tmpfs_bytes: int = 1 * GiB          # the sandbox's /tmp (and /dev/shm)
    max_processes: int = 256            # pids.max where a pids cgroup can be created
    max_output_bytes: int = 64 * MiB    # total JSON size of outputs the client accepts
    job_folder_bytes: int = 64 * MiB    # the job folder's size (sockets, connection file)
    job_folder_inodes: int = 4096       # ... and the files and folders it may hold


@dataclass(frozen=True)
class SandboxStatus:
    available: bool
    reason: str


# ---------------------------------------------------------------------------- command line

def sandbox_argv(inner_argv: Sequence[str], *, job_dir: Path, read_only: Sequence[tuple[Path, str]] = (),
                 env: dict[str, str], limits: Limits, gpu_devices: Sequence[str] = (),
                 writable: Sequence[Path] = (), lifeline_fd: int | None = None) -> list[str]:
    """The full command that runs inner_argv in the sandbox: prlimit, then bwrap.

    job_dir (and any `writable` folder) is bound read-write at its own path; read_only
    holds (host path, path inside) pairs. env is the sandbox's whole environment on top of
    PATH and HOME: nothing is inherited. gpu_devices: nodes such as "/dev/nvidia0" to expose.
    lifeline_fd: the read end of a pipe whose write end only the caller holds (pass it with
    Popen's pass_fds); the sandbox kills itself when that pipe closes.
    """
    if gpu_devices and limits.memory_bytes is not None:
        raise ValueError("GPU jobs need Limits(memory_bytes=None): RLIMIT_AS breaks CUDA initialisation")
    job_dir = Path(job_dir)
    if not job_dir.is_absolute():
        raise ValueError(f"job_dir must be absolute (it is bound at the same path inside): {job_dir}")
    bwrap = [_tool("bwrap"),
             *_namespace_flags(),
             *_system_flags(),
             *_scratch_flags(limits),
             *_python_flags(),
             *_gpu_flags(gpu_devices),
             *_bind_flags([job_dir, *map(Path, writable)], read_only),
             *_environment_flags(env),
             *_finish_flags(),
             "--", *_lifeline(inner_argv, lifeline_fd)]
    return rlimit_argv(bwrap, limits)


def rlimit_argv(argv: Sequence[str], limits: Limits) -> list[str]:
    """argv under prlimit (which sets the limits on itself, then execs argv).

    The CPU hard limit is a little above the soft one so that the usual end is SIGXCPU,
    which the reason can name, rather than a SIGKILL that looks like running out of memory.
    """
    flags = [f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + 5}", f"--fsize={limits.file_size_bytes}", "--core=0"]
    if limits.memory_bytes is not None:
        flags.append(f"--as={limits.memory_bytes}")
    return [_tool("prlimit"), *flags, "--", *argv]


def sandbox_environment(env: dict[str, str] | None = None, *, home: str = SANDBOX_HOME) -> dict[str, str]:
    """PATH (virtualenv first) and HOME, overridden by the caller's env."""
    path = f"{sys.prefix}/bin:/usr/local/bin:/usr/bin:/bin"
    return {"PATH": path, "HOME": home, **(env or {})}


def _namespace_flags() -> list[str]:
    # --new-session: no TIOCSTI into the coordinator's terminal. --cap-drop ALL: see module doc.
    return ["--unshare-all", "--die-with-parent", "--new-session", "--clearenv", "--cap-drop", "ALL"]


def _system_flags() -> list[str]:
    flags = [*_system_folder_flags()]
    for path in ROOT_LINKS:
        if os.path.islink(path):
            flags += ["--symlink", os.readlink(path), path]
    return flags + ["--proc", "/proc", "--dev", "/dev"]


def _system_folder_flags() -> tuple[str, ...]:
    """The programs and shared libraries (module doc) as bwrap flags, recomputed when
    ld.so.cache or one of the folders changes (a package installed meanwhile)."""
    global _SYSTEM_FOLDERS
    known = _SYSTEM_FOLDERS
    if known is not None and known[0] == _stamp(known[1]):
        return known[2]
    folders = [path for path in PROGRAM_FOLDERS if os.path.isdir(path) and not os.path.islink(path)]
    libraries = [_canonical_folder(path) for path in _cached_libraries()]
    folders += sorted({os.path.dirname(path) for path in libraries} - set(folders))
    stamp = _stamp(folders)   # taken before reading them: a change while we read shows next time
    flags = _folder_flags(folders, libraries)
    _SYSTEM_FOLDERS = (stamp, folders, flags)
    return flags


_SYSTEM_FOLDERS: tuple[tuple, list[str], tuple[str, ...]] | None = None


def _stamp(folders: Sequence[str]) -> tuple:
    def one(path: str) -> tuple:
        try:
            st = os.stat(path)
            return st.st_ino, st.st_size, st.st_mtime_ns
        except OSError:
            return ()
    return tuple(one(path) for path in (LD_SO_CACHE, *folders))


def _folder_flags(folders: Sequence[str], libraries: Sequence[str]) -> tuple[str, ...]:
    """Each folder bound with its own files, each subfolder masked by an empty read-only
    tmpfs (that is where packages keep their data: Perl modules, ICU tables, a data set)
    but for another folder of the list and glibc's gconv/ (iconv modules, read when the
    locale is set up). Libraries the cache lists in a masked subfolder are bound there one by
    one; then the loader (from /bin/sh's and Python's ELF headers) and SYSTEM_PATHS."""
    keep = set(folders) | {os.path.join(os.path.dirname(path), "gconv") for path in libraries
                           if os.path.basename(path) == "libc.so.6"}
    bound, masked = [], []
    for folder in folders:
        if not any(_under(folder, top) for top in bound):
            bound.append(folder)
    for folder in folders:
        with os.scandir(folder) as entries:
            masked += sorted(entry.path for entry in entries
                             if entry.is_dir(follow_symlinks=False) and entry.path not in keep)

    def visible(path: str) -> bool:
        return any(_under(path, top) for top in bound) and not any(_under(path, mask) for mask in masked)

    flags = [flag for folder in bound for flag in ("--ro-bind", folder, folder)]
    flags += [flag for mask in masked for flag in ("--tmpfs", mask)]
    seen: set[str] = set()
    for path in [*libraries, *_interpreters()]:
        flags += _file_flags(path, visible, seen)
    for path in SYSTEM_PATHS:
        flags += _file_flags(path, visible, seen, try_=True)
    flags += [flag for mask in masked for flag in ("--remount-ro", mask)]
    return tuple(flags)


def _cached_libraries() -> list[str]:
    """The library paths in /etc/ld.so.cache, as `ldconfig -p` prints them."""
    if not os.path.exists(LD_SO_CACHE):
        return []
    try:
        done = subprocess.run([_tool("ldconfig"), "-p"], capture_output=True, text=True, check=True,
                              env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}, timeout=30)
    except (subprocess.SubprocessError, OSError) as err:
        raise OSError(f"cannot list the shared libraries the sandbox needs (ldconfig -p): {err}") from None
    return [line.rsplit(" => ", 1)[1].strip() for line in done.stdout.splitlines() if " => " in line]


def _interpreters() -> list[str]:
    """The dynamic loaders (ELF PT_INTERP) of the Python interpreter and of /bin/sh."""
    found = []
    for program in (sys.executable, "/bin/sh"):
        interpreter = _elf_interpreter(os.path.realpath(program))
        if interpreter and interpreter not in found:
            found.append(interpreter)
    return found


def _elf_interpreter(path: str) -> str | None:
    import struct

    try:
        with open(path, "rb") as elf:
            header = elf.read(64)
            if header[:4] != b"\x7fELF":
                return None
            wide, order = header[4] == 2, "<" if header[5] == 1 else ">"
            phoff, = struct.unpack_from(order + ("Q" if wide else "I"), header, 32 if wide else 28)
            phentsize, phnum = struct.unpack_from(order + "HH", header, 54 if wide else 42)
            for index in range(phnum):
                elf.seek(phoff + index * phentsize)
                entry = elf.read(phentsize)
                if struct.unpack_from(order + "I", entry, 0)[0] != 3:   # PT_INTERP
                    continue
                # p_offset, (p_vaddr, p_paddr skipped), p_filesz
                offset, size = struct.unpack_from(order + ("Q16xQ" if wide else "I8xI"), entry, 8 if wide else 4)
                elf.seek(offset)
                return elf.read(size).rstrip(b"\0").decode()
    except (OSError, struct.error, UnicodeDecodeError):
        return None
    return None


def _file_flags(path: str, visible, seen: set[str], *, try_: bool = False) -> list[str]:
    """`path` read-only at its own place unless visible(path) already: its chain of symlinks
    recreated as links (each at its real folder, so that /lib/x.so lands in /usr/lib where
    /lib links there), then the file or folder it ends in bound. seen: paths already done."""
    flags = []
    current = _canonical_folder(path)
    for _ in range(40):
        if current in seen:
            break
        seen.add(current)
        link = os.path.islink(current)
        if not visible(current):
            if link:
                flags += ["--symlink", os.readlink(current), current]
            elif os.path.exists(current):
                flags += ["--ro-bind-try" if try_ else "--ro-bind", current, current]
        if not link:
            break
        current = _canonical_folder(os.path.join(os.path.dirname(current), os.readlink(current)))
    return flags


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _canonical_folder(path: str) -> str:
    """`path` with its folder's symlinks resolved, its last part kept (a link stays a link)."""
    path = os.path.normpath(path)
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def _python_flags() -> list[str]:
    """The interpreter's installation and the virtualenv, read-only, at their own paths.

    Only these prefixes, not their parents: here the installation lives under /root/.pyenv,
    and the rest of /root stays invisible. An interpreter installed in /usr (Debian's
    python3) brings its own folders only (stdlib, lib-dynload, its site-packages as sysconfig
    names them), never all of /usr; its program is in /usr/bin.
    """
    import sysconfig

    paths = []
    for prefix in (os.path.realpath(sys.base_prefix), sys.base_prefix, sys.prefix):
        if prefix == "/usr" or prefix.startswith("/usr/"):
            folders = sysconfig.get_paths()
            paths += [folders[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")]
        else:
            paths.append(prefix)
    flags = []
    for path in dict.fromkeys(paths):
        if os.path.isdir(path):
            flags += ["--ro-bind", path, path]
    return flags


def _scratch_flags(limits: Limits) -> list[str]:
    """Sized tmpfs for /tmp (with HOME and the working dir) and /dev/shm (multiprocessing,
    DataLoader workers). Mounted before any bind, since the job directory (or even the
    virtualenv) may lie under /tmp: a tmpfs mounted later would hide it."""
    size = str(limits.tmpfs_bytes)
    return ["--size", size, "--tmpfs", SANDBOX_TMP,
            "--dir", SANDBOX_HOME, "--dir", SANDBOX_WORKDIR,
            "--size", size, "--tmpfs", "/dev/shm"]


def _gpu_flags(gpu_devices: Sequence[str]) -> list[str]:
    """The given GPU nodes plus NVIDIA's shared control nodes; nothing when none are given
    (--dev /dev creates a minimal /dev without any /dev/nvidia*)."""
    if not gpu_devices:
        return []
    nodes = list(dict.fromkeys([*map(str, gpu_devices), *(n for n in GPU_SHARED_NODES if os.path.exists(n))]))
    flags = []
    for node in nodes:
        if not os.path.exists(node):
            raise ValueError(f"GPU device node {node} does not exist")
        flags += ["--dev-bind", node, node]
    return flags


def _bind_flags(writable: Sequence[Path], read_only: Sequence[tuple[Path, str]]) -> list[str]:
    flags = []
    for host, inside in read_only:
        if not os.path.exists(host):
            raise FileNotFoundError(f"read-only bind source {host} does not exist")
        flags += ["--ro-bind", str(host), str(inside)]
    for folder in writable:
        flags += ["--bind", str(folder), str(folder)]
    return flags


def _environment_flags(env: dict[str, str]) -> list[str]:
    flags = []
    for key, value in sandbox_environment(env).items():
        flags += ["--setenv", key, value]
    return flags


def _finish_flags() -> list[str]:
    """Last: the root and /dev tmpfs that bwrap built read-only (non-recursive, so /tmp,
    /dev/shm and the binds keep their own modes), and start in the working dir."""
    return ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", SANDBOX_WORKDIR]


def _lifeline(argv: Sequence[str], fd: int | None) -> list[str]:
    return list(argv) if fd is None else ["/bin/sh", "-c", LIFELINE_SCRIPT, "sh", str(fd), *argv]


def _tool(name: str) -> str:
    found = shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin:/usr/local/bin")
    if found is None:
        raise FileNotFoundError(f"{name} is not installed")
    return found


# ---------------------------------------------------------------------------- probe

@functools.lru_cache(maxsize=1)
def probe() -> SandboxStatus:
    """Whether the sandbox works here: runs `true` under the same command the kernels get."""
    for name, package in (("bwrap", "bubblewrap"), ("prlimit", "util-linux")):
        if shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin:/usr/local/bin") is None:
            return SandboxStatus(False, f"{name} is not installed: install Debian's {package} "
                                        f"(apt-get install {package})")
    with tempfile.TemporaryDirectory(prefix="autograder-probe-") as job_dir:
        try:
            argv = sandbox_argv(["/usr/bin/true"], job_dir=Path(job_dir).resolve(), env={}, limits=Limits())
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"},
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as err:
            return SandboxStatus(False, f"bubblewrap could not be run: {err}")
    if done.returncode == 0:
        return SandboxStatus(True, "bubblewrap works")
    return SandboxStatus(False, _explain_failure(done.stderr.strip() or f"exit code {done.returncode}"))


def _explain_failure(error: str) -> str:
    if re.search(r"namespace|uid map|unshare|Operation not permitted|No permissions", error, re.I):
        if "proc" in error:
            return (f"bubblewrap cannot mount /proc ({error}): the container masks /proc; run it with "
                    "`--security-opt systempaths=unconfined` or grade outside the container")
        hint = ("user namespaces are blocked: inside Docker's default seccomp profile run the container with "
                "`--security-opt seccomp=unconfined` (or a profile allowing unshare/clone with CLONE_NEWUSER); "
                "on a host, enable them (sysctl user.max_user_namespaces > 0, "
                "kernel.unprivileged_userns_clone=1, or on Ubuntu 24.04 "
                "kernel.apparmor_restrict_unprivileged_userns=0)")
        return f"bubblewrap cannot create its namespaces ({error}): {hint}"
    return f"bubblewrap failed: {error}"


# ---------------------------------------------------------------------------- process limit

@dataclass
class ProcessLimit:
    """A pids cgroup for one job, or a no-op with the reason why there is none.

    wrap(argv) makes the launched process join the cgroup itself before it execs argv, so
    everything it starts is counted from the first instruction on, with no race against a
    pid written in later.
    """

    path: Path | None
    reason: str | None = None   # why there is no limit (None when active)

    def wrap(self, argv: Sequence[str]) -> list[str]:
        if self.path is None:
            return list(argv)
        # $0 is the cgroup.procs file; "$@" the command. `exec` keeps the pid that joined.
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"), *argv]

    def pids(self) -> list[int]:
        if self.path is None:
            return []
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def signal_all(self, pids: list[int] | None = None) -> None:
        """SIGKILL every process in the cgroup once, without waiting (safe on an event loop)."""
        for pid in self.pids() if pids is None else pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def kill_all(self, timeout: float = 10.0) -> bool:
        """SIGKILL every process in the cgroup until it is empty; True when it is."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            if not pids:
                return True
            if time.monotonic() > deadline:
                return False
            self.signal_all(pids)
            time.sleep(0.05)

    def remove(self) -> None:
        if self.path is None:
            return
        emptied = self.kill_all()
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)   # exiting tasks leave the cgroup a little after SIGKILL
        log.warning("could not remove cgroup %s (%s)", self.path, "busy" if emptied else "processes left")


@contextmanager
def process_limit(job_name: str, limits: Limits) -> Iterator[ProcessLimit]:
    """A pids cgroup with pids.max = limits.max_processes for one job, removed on exit
    (killing whatever is still in it). Yields a no-op ProcessLimit with .reason set when no
    cgroup can be created here."""
    limit = _create_pids_cgroup(job_name, limits.max_processes)
    try:
        yield limit
    finally:
        limit.remove()


def _create_pids_cgroup(job_name: str, max_processes: int) -> ProcessLimit:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", job_name)[:80] + f"-{_pid_namespace()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        parent = _pids_parent()
    except OSError as err:
        return ProcessLimit(None, f"no writable pids cgroup ({err})")
    if isinstance(parent, str):
        return ProcessLimit(None, parent)
    _reap_stale_cgroups(parent)
    path = parent / name
    try:
        path.mkdir()
    except OSError as err:
        return ProcessLimit(None, f"cannot create a pids cgroup in {parent}: {err.strerror or err}")
    try:
        (path / "pids.max").write_text(str(max_processes))
        return ProcessLimit(path)
    except OSError as err:
        path.rmdir()
        return ProcessLimit(None, f"cannot set pids.max in {path}: {err.strerror or err}")


def _reap_stale_cgroups(parent: Path) -> None:
    """Empty and remove the job cgroups of coordinators that died (named
    <job>-<pid namespace>-<pid>-<random>): what a SIGKILLed coordinator leaves, in case
    anything of its sandboxes outlived it. Only those of our pid namespace: another
    container's pids mean nothing here."""
    for path in parent.iterdir():
        found = re.search(r"-([0-9a-f]+)-(\d+)-[0-9a-f]{8}$", path.name)
        if not (found and path.is_dir() and found.group(1) == _pid_namespace()):
            continue
        try:
            os.kill(int(found.group(2)), 0)
        except ProcessLookupError:
            log.warning("removing the cgroup %s left by a coordinator that died", path)
            ProcessLimit(path).remove()
        except PermissionError:
            pass


def _pid_namespace() -> str:
    try:
        return f"{os.stat('/proc/self/ns/pid').st_ino:x}"
    except OSError:
        return "0"


def _pids_parent() -> Path | str:
    """The folder job cgroups go in: <our own pids cgroup>/autograder, v1 or v2; or why not."""
    v1 = Path("/sys/fs/cgroup/pids")
    if (v1 / "cgroup.procs").exists():
        parent = _own_cgroup(v1, lambda controllers: "pids" in controllers.split(",")) / "autograder"
        parent.mkdir(exist_ok=True)
        return parent
    v2 = Path("/sys/fs/cgroup")
    if (v2 / "cgroup.controllers").exists():
        if "pids" not in (v2 / "cgroup.controllers").read_text().split():
            return "the cgroup v2 hierarchy has no pids controller"
        # v2 allows controllers only in cgroups without processes of their own ("no internal
        # processes"): use a subtree of the root, whose exemption makes this possible.
        parent = v2 / "autograder"
        parent.mkdir(exist_ok=True)
        for level in (v2, parent):
            if "pids" not in (level / "cgroup.subtree_control").read_text().split():
                (level / "cgroup.subtree_control").write_text("+pids")
        return parent
    return "no pids cgroup hierarchy is mounted at /sys/fs/cgroup"


def _own_cgroup(mount: Path, matches) -> Path:
    """Our own cgroup under a v1 mount (so delegated sub-hierarchies work), else the mount."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if matches(controllers) and (mount / path.lstrip("/")).is_dir():
                return mount / path.lstrip("/")
    except (OSError, ValueError):
        pass
    return mount

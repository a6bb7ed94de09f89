"""A kernel's processes seen from the host: its process group killed, its tree listed, its end told.

Nothing here starts a process. kernel.py uses these to kill what a kernel started, to find
its pids for a watchdog where no cgroup lists them, and to say in words how a kernel process
ended; cgroups.py and mounts.py name what they leave on the host by the pid namespace.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def pid_namespace() -> str:
    """This process's pid namespace, as the hex inode number of /proc/self/ns/pid ("0" unknown):
    what names a coordinator's cgroups and mounts, so that a later one can tell its own."""
    try:
        return f"{os.stat('/proc/self/ns/pid').st_ino:x}"
    except OSError:
        return "0"


def kill_group(pid: int) -> None:
    """SIGKILL the process group of `pid`, or `pid` alone where it leads none."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
            return
        except (ProcessLookupError, PermissionError):
            continue


def process_tree(root: int) -> list[int]:
    """`root` and its descendants, from /proc (where no cgroup lists them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # the command name (field 2) may hold spaces and parentheses: split after its last ')'
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def exit_text(code: int | None, *, sandboxed: bool, cpu_seconds: int) -> str:
    """How a kernel process with exit status `code` (Popen.poll(); None: still running) ended,
    for a reason: "killed by signal 9 (SIGKILL); out of memory or process limit?"."""
    if code is None:
        return "it stopped answering"
    # bwrap reports a child killed by signal N as exit code 128 + N, as shells do.
    number = -code if code < 0 else code - 128 if sandboxed and code > 128 else None
    if number is None:
        return f"exited with code {code}"
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = "unknown signal"
    hints: dict[int, str] = {
        signal.SIGKILL: "; out of memory or process limit?",
        signal.SIGXCPU: f"; CPU time limit of {cpu_seconds} s",
    }
    hint = hints.get(number, "")
    return f"killed by signal {number} ({name}){hint}"

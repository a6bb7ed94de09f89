"""The host's system as a sandbox sees it: an allow-list of its programs, libraries and data.

Found out by tracing real lab kernels: the programs of /usr/bin (with Debian's /bin, /lib...
links recreated as links), the folders of the shared libraries that /etc/ld.so.cache lists
with their own files but every subfolder masked empty (that is where packages keep their
data) except glibc's gconv/, the libraries the cache lists elsewhere and the dynamic loader,
ld.so.cache itself, /usr/sbin/ldconfig, glibc's C.UTF-8 locale, and for matplotlib's fonts
/etc/fonts, /usr/share/fontconfig and /usr/share/fonts. The rest of /usr stays absent
(/usr/share/datasets, where Debian's dataset-fashion-mnist installs the test labels).
system_flags() gives them as bwrap flags, recomputed when ld.so.cache or one of the folders
changes; sandbox.py puts them in the command line. tool() finds the host's own programs
(bwrap, prlimit, ldconfig) in the system's folders, never through this process's PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

# The host's system, as an allow-list (module doc), found out by tracing real lab kernels.
# Debian's merged-/usr top-level links are recreated as links; without merged /usr, /bin is
# bound as a program folder, and /lib... come in as the folders of the libraries they hold.
ROOT_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
PROGRAM_FOLDERS = ("/usr/bin", "/bin")  # programs only (FHS): /bin/sh, `!` escapes, fc-list, uname
LD_SO_CACHE = "/etc/ld.so.cache"
SYSTEM_PATHS = (
    LD_SO_CACHE,  # how the dynamic loader finds the libraries bound below
    "/usr/sbin/ldconfig",  # `ldconfig -p`: ctypes.util.find_library (torch's cuda-pathfinder at import)
    "/usr/lib/locale/C.utf8",  # glibc's C.UTF-8: Python coerces the C locale to it at start-up
    "/etc/fonts",  # fontconfig's configuration (matplotlib lists fonts with fc-list)
    "/usr/share/fontconfig",  # ... the configuration files it includes
    "/usr/share/fonts",  # the system fonts (matplotlib scans this folder too)
)
# Where the host's own programs are looked up (tool(), probe()).
SYSTEM_PROGRAM_PATH = "/usr/bin:/bin:/usr/sbin:/sbin:/usr/local/bin"


def system_flags() -> list[str]:
    """The allow-list (module doc) as bwrap flags: the folders and files, then the root links."""
    flags = [*_system_folder_flags()]
    for path in ROOT_LINKS:
        if os.path.islink(path):
            flags += ["--symlink", os.readlink(path), path]
    return flags


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
    stamp = _stamp(folders)  # taken before reading them: a change while we read shows next time
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
    keep = set(folders) | {
        os.path.join(os.path.dirname(path), "gconv") for path in libraries if os.path.basename(path) == "libc.so.6"
    }
    bound: list[str] = []
    masked: list[str] = []
    for folder in folders:
        if not any(_under(folder, top) for top in bound):
            bound.append(folder)
    for folder in folders:
        with os.scandir(folder) as entries:
            masked += sorted(
                entry.path for entry in entries if entry.is_dir(follow_symlinks=False) and entry.path not in keep
            )

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
        done = subprocess.run(
            [tool("ldconfig"), "-p"],
            capture_output=True,
            text=True,
            check=True,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
            timeout=30,
        )
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
            (phoff,) = struct.unpack_from(order + ("Q" if wide else "I"), header, 32 if wide else 28)
            phentsize, phnum = struct.unpack_from(order + "HH", header, 54 if wide else 42)
            for index in range(phnum):
                elf.seek(phoff + index * phentsize)
                entry = elf.read(phentsize)
                if struct.unpack_from(order + "I", entry, 0)[0] != 3:  # PT_INTERP
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


def tool(name: str) -> str:
    """The host's program `name` (bwrap, prlimit, ldconfig), found in SYSTEM_PROGRAM_PATH only."""
    found = shutil.which(name, path=SYSTEM_PROGRAM_PATH)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed")
    return found

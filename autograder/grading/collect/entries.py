"""Reading a zip safely: each entry's path and kind checked against the rules (no absolute path,
drive letter, backslash, `..`, control character, link, device, encryption), the junk zip tools
add, an entry's date, and an entry opened only when it is read."""

from __future__ import annotations

import contextlib
import re
import stat
import struct
import zipfile
import zlib
from datetime import UTC, datetime

from .naming import Refused

#: What reading a corrupt, encrypted or unsupported zip entry raises.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError, OSError)


def entry_parts(info: zipfile.ZipInfo) -> tuple[str, ...] | None:
    """The path components of a zip entry, or None for a folder; Refused when the entry breaks a rule."""
    name = info.orig_filename
    if not name:
        raise Refused("an entry without a name")
    if any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in name):
        raise Refused("control characters in its name")
    if "\\" in name:
        raise Refused("a backslash in its path (a Windows path)")
    if name.startswith("/"):
        raise Refused("an absolute path")
    if re.match(r"[A-Za-z]:", name):
        raise Refused("a drive letter")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise Refused("a '..' component in its path")
    if any(len(p.encode()) > 255 for p in parts):
        raise Refused("a name over 255 bytes")
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise Refused("a symbolic link (links are never extracted)")
    if info.is_dir() or kind == stat.S_IFDIR:
        return None
    if kind not in (0, stat.S_IFREG):
        raise Refused(f"not a regular file (file type {kind >> 12:o})")
    if info.flag_bits & 0x1:
        raise Refused("an encrypted entry")
    return parts


JUNK = {"__MACOSX", ".DS_Store", ".ipynb_checkpoints", "Thumbs.db", "desktop.ini", ".git"}


def junk(parts: tuple[str, ...], hidden: bool = False) -> bool:
    """What zip tools and Jupyter add (macOS resource forks, .ipynb_checkpoints, .DS_Store):
    never collected, never reported. hidden: any dot-file too (inside a student's own zip)."""
    return any(p in JUNK or p.startswith("._") or (hidden and p.startswith(".")) for p in parts)


def entry_time(info: zipfile.ZipInfo) -> datetime | None:
    """The entry's modification time: the extended-timestamp field (UTC) when there is one, else its
    DOS date read as UTC (DOS dates carry no zone); None for the empty date 1980-01-01 00:00."""
    extra, i = info.extra, 0
    while i + 4 <= len(extra):
        kind, size = struct.unpack_from("<HH", extra, i)
        data = extra[i + 4 : i + 4 + size]
        if kind == 0x5455 and len(data) >= 5 and data[0] & 1:
            try:
                return datetime.fromtimestamp(struct.unpack_from("<i", data, 1)[0], UTC)
            except (OverflowError, OSError, ValueError):
                return None
        i += 4 + size
    if tuple(info.date_time) <= (1980, 1, 1, 0, 0, 0):
        return None
    try:
        return datetime(*info.date_time, tzinfo=UTC)
    except ValueError:
        return None


def _mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


@contextlib.contextmanager
def _open_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo):
    """A zip entry, opened only when it is to be read (other entries are never decompressed)."""
    try:
        reader = archive.open(info)
    except _ZIP_ERRORS as err:
        raise Refused(f"unreadable (a corrupt entry): {err}") from None
    with reader:
        yield reader

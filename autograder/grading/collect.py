"""`autograder collect LAB DIR`: LMS downloads → submitted/<student>/LAB/, one bad file at a time.

DIR holds what the LMS gave: its bulk zip(s), per-student files or zips, loose notebooks. Who a
file belongs to comes only from the LMS's own naming (`c.Collect.layout`: canvas, moodle, plain),
of a file in DIR or of an entry of a bulk zip, never from a path inside a student's own archive:
everything in alice's archive is alice's, whatever it is called.

Nothing is extracted by zipfile or nbgrader: each entry is checked (no absolute path, drive letter,
backslash, `..`, control character, link, device, encryption; a size cap declared *and* counted
while reading; a cap on entries and on what one student's archive yields) and only notebooks are
written, by us, with O_CREAT|O_EXCL|O_NOFOLLOW, mode 0644 (folders 0755), under names we chose.
A file that breaks a rule is reported with the rule and skipped, and so is the rest of that
student's download (never half a submission); everyone else is collected.

Duplicates (one student, one notebook name, different contents) keep the newest when the LMS
orders them (Canvas: its attachment ids; Moodle, plain: the zip entries' dates, unless
`c.Collect.zip_dates` is off) and skip that student when it cannot.

Each student's `submitted/<student>/LAB/` is built in a temporary folder beside `submitted/` and
swapped in with one rename (renameat2 RENAME_EXCHANGE): a collection killed at any moment leaves
each student's old or new submission, never half of one, and a rerun collects the same.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import hashlib
import os
import re
import secrets
import shutil
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Callable

from ..course import Course, CourseError
from ..settings import Collect
from .submission_files import STUDENT_ID

LAYOUTS = ("plain", "canvas", "moodle")
TEMP_PREFIX = ".collect-tmp-"
#: A student id: what nbgrader, the gradebook, folders and CSV exports can all hold safely.
CANVAS_RESUBMISSION = re.compile(r"(.+)-\d+\.ipynb")
#: nbgrader's submission-time format (Exchange.timestamp_format), read back by its parse_utc.
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"
CHUNK = 1 << 20
#: What reading a corrupt, encrypted or unsupported zip entry raises.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError, OSError)
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

CANVAS = re.compile(r"(?P<name>.*?)(?P<late>[_-]late)?_(?P<user>\d+)_(?P<attachment>\d+)_(?P<file>.+)",
                    re.IGNORECASE | re.DOTALL)
MOODLE = re.compile(r"(?P<name>[^_]*)_(?P<user>\d+)_assignsubmission_(?P<plugin>[a-z]+)_(?P<file>.*)", re.DOTALL)
PLAIN = re.compile(r"(?P<user>[^_]+)_(?P<file>.+)", re.DOTALL)


class Refused(Exception):
    """A file breaks a collection rule; the message says which."""


@dataclass
class Collected:
    student: str
    notebook: str
    source: str
    timestamp: datetime | None
    note: str = ""


@dataclass
class Skipped:
    source: str
    reason: str
    student: str | None = None


@dataclass
class CollectReport:
    lab: str
    layout: str
    collected: list[Collected] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def students(self) -> list[str]:
        return sorted({c.student for c in self.collected})


@dataclass
class Named:
    """What the LMS's naming says of one item: whose it is and the student's own path in it."""
    student: str
    path: tuple[str, ...]
    order: int | None = None      # the LMS's upload order (Canvas attachment id)
    late: bool = False


@dataclass
class _Candidate:
    student: str
    notebook: str
    source: str
    file: str                     # its name in the temporary folder
    digest: str
    time: datetime | None
    order: object | None
    late: bool


# ---------------------------------------------------------------------------------- the presets


def _canvas(parts: tuple[str, ...], lab: str) -> Named | str:
    """<name>[_late|-late]_<userid>_<attachmentid>_<file>: the id is the Canvas user id (the name is
    a display name, neither unique nor stable); attachment ids order a student's uploads."""
    m = CANVAS.fullmatch(parts[0])
    if not m:
        return "not Canvas's naming <name>_<userid>_<attachmentid>_<file> (a text or link entry, or not from Canvas)"
    return Named(m["user"], (m["file"], *parts[1:]), order=int(m["attachment"]), late=bool(m["late"]))


def _moodle(parts: tuple[str, ...], lab: str) -> Named | str:
    """<Full Name>_<participantid>_assignsubmission_file_<file> or ..._file_/<files>: the id is the
    participant id (Moodle turns '_' in names into spaces, so the first '_' ends the name)."""
    m = MOODLE.fullmatch(parts[0])
    if not m:
        return "not Moodle's naming <Full Name>_<participantid>_assignsubmission_file_..."
    if m["plugin"] != "file":
        return f"Moodle's {m['plugin']} submission, not a file (ignored)"
    return Named(m["user"], ((m["file"],) if m["file"] else ()) + parts[1:])


def _plain(parts: tuple[str, ...], lab: str) -> Named | str:
    """<student>_<notebook>.ipynb (at the top or under one folder: the student id ends at the first
    '_'), or <student>/LAB/<notebook>.ipynb under any folders (nbgrader's own layout)."""
    if len(parts) >= 3 and parts[-2] == lab:
        return Named(parts[-3], (parts[-1],))
    if len(parts) <= 2:
        m = PLAIN.fullmatch(parts[-1])
        if m:
            return Named(m["user"], (m["file"],))
    if len(parts) >= 3:
        return f"not in a {lab}/ folder (<student>/{lab}/<notebook>.ipynb)"
    return "not the plain naming <student>_<notebook>.ipynb"


PRESETS: dict[str, Callable[[tuple[str, ...], str], Named | str]] = {
    "plain": _plain, "canvas": _canvas, "moodle": _moodle}


# ---------------------------------------------------------------------------------- rules


def check_student_id(raw: str) -> str:
    if not STUDENT_ID.fullmatch(raw) or ".." in raw:
        raise Refused(f"student id {shown(raw)!r} refused: an id is 1-64 letters, digits, '.', '_' or '-', starts "
                      "with a letter or digit and has no '..'")
    return raw


def check_notebook_name(name: str) -> str:
    if (len(name) > 128 or not name[:1].isalnum() or not name.endswith(".ipynb")
            or any(not ch.isprintable() or ch in "/\\" for ch in name)):
        raise Refused(f"notebook name {shown(name)!r} refused: it must start with a letter or digit, end in .ipynb and "
                      "have at most 128 printable characters")
    return name


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


def shown(text: str) -> str:
    """A student-chosen name made safe to print on a terminal (no escape sequences)."""
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def entry_time(info: zipfile.ZipInfo) -> datetime | None:
    """The entry's modification time: the extended-timestamp field (UTC) when there is one, else its
    DOS date read as UTC (DOS dates carry no zone); None for the empty date 1980-01-01 00:00."""
    extra, i = info.extra, 0
    while i + 4 <= len(extra):
        kind, size = struct.unpack_from("<HH", extra, i)
        data = extra[i + 4:i + 4 + size]
        if kind == 0x5455 and len(data) >= 5 and data[0] & 1:
            try:
                return datetime.fromtimestamp(struct.unpack_from("<i", data, 1)[0], timezone.utc)
            except (OverflowError, OSError, ValueError):
                return None
        i += 4 + size
    if tuple(info.date_time) <= (1980, 1, 1, 0, 0, 0):
        return None
    try:
        return datetime(*info.date_time, tzinfo=timezone.utc)
    except ValueError:
        return None


def _mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


# ---------------------------------------------------------------------------------- renames


_RENAME_EXCHANGE = 2


def _renameat2():
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


def exchange(src_fd: int, src: str, dst_fd: int, dst: str) -> bool:
    """Swap two paths atomically (renameat2 RENAME_EXCHANGE); False where the system cannot."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(src_fd, os.fsencode(src), dst_fd, os.fsencode(dst), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), dst)


def _open_dir(name: str, dir_fd: int, create: bool = False) -> int:
    if create:
        try:
            os.mkdir(name, 0o755, dir_fd=dir_fd)
        except FileExistsError:
            pass
    fd = os.open(name, _OPEN_DIR, dir_fd=dir_fd)
    os.fchmod(fd, 0o755)
    return fd


# ---------------------------------------------------------------------------------- collection


class _Collection:
    """One run: a locked `submitted/`, a temporary folder beside it, the candidates found so far."""

    def __init__(self, course: Course, lab: str, layout: str, settings: Collect):
        self.course, self.lab, self.layout, self.settings = course, lab, layout, settings
        self.identify = PRESETS[layout]
        self.expected = {p.name for p in course.source_notebooks(lab)}
        self.max_file = int(settings.max_file_mib * 2**20)
        self.max_archive = int(settings.max_archive_mib * 2**20)
        self.report = CollectReport(lab=lab, layout=layout)
        self.candidates: list[_Candidate] = []
        self.refused: dict[str, list[str]] = {}     # student → sources refused (their download is skipped)
        self._count = 0

    # ----------------------------------------------------------------- the folders

    def __enter__(self) -> "_Collection":
        self.root_fd = os.open(self.course.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.sub_fd = self.area_fd = -1
        try:
            try:
                os.mkdir("submitted", 0o755, dir_fd=self.root_fd)
            except FileExistsError:
                pass
            try:
                self.sub_fd = os.open("submitted", _OPEN_DIR, dir_fd=self.root_fd)
            except OSError as err:
                raise CourseError(f"{self.course.submitted} is a link or not a folder ({err.strerror}): "
                                  "nothing is collected through it") from None
            try:
                fcntl.flock(self.sub_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # released when sub_fd closes
            except BlockingIOError:
                raise CourseError("another `autograder collect` is running in this course; wait for it") from None
            for name in os.listdir(self.root_fd):   # left by a collection that was killed
                if name.startswith(TEMP_PREFIX) and stat.S_ISDIR(os.lstat(name, dir_fd=self.root_fd).st_mode):
                    shutil.rmtree(name, dir_fd=self.root_fd)
            self.area = TEMP_PREFIX + secrets.token_hex(6)
            os.mkdir(self.area, 0o700, dir_fd=self.root_fd)
            self.area_fd = os.open(self.area, _OPEN_DIR, dir_fd=self.root_fd)
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.area, dir_fd=self.root_fd, ignore_errors=True)
        self._close()

    def _close(self) -> None:
        for fd in (self.area_fd, self.sub_fd, self.root_fd):
            if fd >= 0:
                os.close(fd)

    def _new_name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def _store(self, source: BinaryIO, declared: int | None, limit: int,
               budget: list[int] | None = None) -> tuple[str, str]:
        """Copy `source` into a new 0644 file of the temporary folder, reading at most `limit` bytes
        (and what is left of `budget`, a student archive's allowance). Returns (name, sha256)."""
        if declared is not None and declared > limit:
            raise Refused(f"declares {_mib(declared)}, over the {_mib(limit)} a file may have")
        name = self._new_name("f")
        fd = os.open(name, _CREATE, 0o644, dir_fd=self.area_fd)
        digest, total = hashlib.sha256(), 0
        try:
            os.fchmod(fd, 0o644)
            while True:
                try:
                    chunk = source.read(CHUNK)
                except _ZIP_ERRORS as err:
                    raise Refused(f"unreadable (a corrupt entry): {err}") from None
                if not chunk:
                    break
                total += len(chunk)
                if total > limit:
                    raise Refused(f"more than {_mib(limit)} when read, whatever its header says (a zip bomb?)")
                if budget is not None:
                    budget[0] -= len(chunk)
                    if budget[0] < 0:
                        raise Refused(f"the archive's notebooks come to more than {_mib(self.max_archive)}")
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        except BaseException:
            os.close(fd)
            os.unlink(name, dir_fd=self.area_fd)
            raise
        os.close(fd)
        return name, digest.hexdigest()

    # ----------------------------------------------------------------- the report

    def skip(self, source: str, reason: str, student: str | None = None) -> None:
        self.report.skipped.append(Skipped(source, reason, student))

    def refuse(self, source: str, reason: str, student: str | None) -> None:
        """A rule broken: reported, and the student's whole download is skipped."""
        self.skip(source, reason, student)
        if student is not None:
            self.refused.setdefault(student, []).append(source)

    def owner(self, raw: str) -> str | None:
        """Whose a refused entry is, read from its name up to a '..': nobody's when the name is
        absolute, a Windows path or has control characters (no one is blamed for a crafted name)."""
        if raw.startswith("/") or "\\" in raw or re.match(r"[A-Za-z]:", raw) or not raw.isprintable():
            return None
        parts: list[str] = []
        for part in raw.split("/"):
            if part == "..":
                break
            if part not in ("", "."):
                parts.append(part)
        named = self.identify(tuple(parts), self.lab) if parts and not junk(tuple(parts)) else None
        if isinstance(named, Named):
            try:
                return check_student_id(named.student)
            except Refused:
                return None
        return None

    # ----------------------------------------------------------------- the download folder

    def download_folder(self, folder: Path) -> None:
        try:
            dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            raise CourseError(f"cannot read the download folder {folder}: {err.strerror}") from None
        try:
            names = sorted(n for n in os.listdir(dir_fd) if not junk((n,)))
            if not names:
                raise CourseError(f"no files to collect in {folder}")
            for name in names:
                self._download_file(dir_fd, name)
        finally:
            os.close(dir_fd)

    def _download_file(self, dir_fd: int, name: str) -> None:
        where = shown(name)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError as err:
            kind = "a symbolic link" if err.errno == errno.ELOOP else f"cannot be opened ({err.strerror})"
            self.skip(where, f"{kind}: only the LMS's own files are collected")
            return
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            self.skip(where, "a folder: give the LMS's zip file as downloaded, or the notebooks themselves"
                      if stat.S_ISDIR(mode) else "not a regular file")
            return
        with os.fdopen(fd, "rb") as file:
            bulk = name.lower().endswith(".zip") and self.layout == "plain"   # plain: a zip in DIR is a download
            named = None if bulk else self.identify((name,), self.lab)
            if isinstance(named, Named):
                student = self._checked_student(named, where)
                if student:
                    self._student_file(student, named, where, lambda: contextlib.nullcontext(file), None, None)
            elif name.lower().endswith(".zip"):
                self._bulk(file, where)
            else:
                self.skip(where, f"{named}" if named else "not a zip file or a notebook")

    def _checked_student(self, named: Named, where: str) -> str | None:
        try:
            return check_student_id(named.student)
        except Refused as err:
            self.skip(where, str(err))
            return None

    def _bulk(self, file: BinaryIO, where: str) -> None:
        """A download of many students: each entry's own name says whose it is."""
        try:
            archive = zipfile.ZipFile(file)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as err:
            self.skip(where, f"not a readable zip file ({err}): nothing in it is collected")
            return
        with archive:
            infos = archive.infolist()
            if len(infos) > self.settings.max_entries:
                self.skip(where, f"{len(infos)} entries, over the {self.settings.max_entries} a zip may have "
                                 "(c.Collect.max_entries): nothing in it is collected")
                return
            use_dates = self.settings.zip_dates and self.layout != "canvas"
            for info in infos:
                source = f"{where}: {shown(info.orig_filename)}"
                try:
                    parts = entry_parts(info)
                except Refused as err:
                    self.refuse(source, str(err), self.owner(info.orig_filename))
                    continue
                if parts is None or junk(parts):
                    continue
                named = self.identify(parts, self.lab)
                if not isinstance(named, Named):
                    self.skip(source, named)
                    continue
                if junk(named.path, hidden=True):   # the student's own hidden files, in an LMS folder
                    continue
                student = self._checked_student(named, source)
                if student:
                    self._student_file(student, named, source, functools.partial(_open_entry, archive, info),
                                       info.file_size, entry_time(info) if use_dates else None)

    def _student_file(self, student: str, named: Named, source: str, open_source: Callable, declared: int | None,
                      time: datetime | None) -> None:
        """One item the LMS says is `student`'s: a notebook, the student's own zip, or something else.
        open_source() is a context manager giving its bytes, opened only when they are needed."""
        base = named.path[-1] if named.path else ""
        order = named.order if named.order is not None else time
        try:
            if base.endswith(".ipynb"):
                notebook = self._resubmitted(check_notebook_name(base), named)
                with open_source() as reader:
                    stored, digest = self._store(reader, declared, self.max_file)
                self.candidates.append(_Candidate(student, notebook, source, stored, digest, time, order, named.late))
            elif base.lower().endswith(".zip"):
                with open_source() as reader:
                    stored, _ = self._store(reader, declared, self.max_file)
                try:
                    self._student_archive(student, named, source, stored, time, order)
                finally:
                    os.unlink(stored, dir_fd=self.area_fd)
            else:
                self.skip(source, "not a notebook (ignored)", student)
        except Refused as err:
            self.refuse(source, str(err), student)

    def _resubmitted(self, notebook: str, named: Named) -> str:
        """Canvas renames a student's second upload of lab.ipynb to lab-1.ipynb (then -2...): the
        lab's own notebook name is restored, and the attachment order picks the newest."""
        match = CANVAS_RESUBMISSION.fullmatch(notebook)
        if self.layout == "canvas" and match and f"{match[1]}.ipynb" in self.expected:
            return f"{match[1]}.ipynb"
        return notebook

    def _student_archive(self, student: str, named: Named, source: str, stored: str, time, order) -> None:
        """alice's own zip: every notebook in it is alice's, whatever its path or name says."""
        fd = os.open(stored, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.area_fd)
        with os.fdopen(fd, "rb") as file:
            try:
                archive = zipfile.ZipFile(file)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as err:
                raise Refused(f"not a readable zip file ({err})") from None
            with archive:
                infos = archive.infolist()
                if len(infos) > self.settings.max_entries:
                    raise Refused(f"{len(infos)} entries, over the {self.settings.max_entries} a zip may have")
                budget, found = [self.max_archive], []
                for info in infos:
                    inner = f"{source} → {shown(info.orig_filename)}"
                    try:
                        parts = entry_parts(info)
                    except Refused as err:
                        raise Refused(f"{shown(info.orig_filename)!r}: {err}") from None
                    if parts is None or junk(parts, hidden=True) or not parts[-1].endswith(".ipynb"):
                        continue
                    try:
                        notebook = check_notebook_name(parts[-1])
                        with archive.open(info) as reader:
                            stored_nb, digest = self._store(reader, info.file_size, self.max_file, budget)
                    except Refused as err:
                        raise Refused(f"{shown(info.orig_filename)!r}: {err}") from None
                    found.append(_Candidate(student, notebook, inner, stored_nb, digest, time, order, named.late))
        if not found:
            self.skip(source, "no notebook in this zip (ignored)", student)
        self.candidates.extend(found)

    # ----------------------------------------------------------------- duplicates

    def resolve(self) -> dict[str, list[_Candidate]]:
        """student → the notebooks to place: one per name; the newest of different ones when the
        LMS orders them; none of that student's when it cannot."""
        groups: dict[tuple[str, str], list[_Candidate]] = {}
        for c in self.candidates:
            groups.setdefault((c.student, c.notebook), []).append(c)
        kept: dict[str, list[_Candidate]] = {}
        for (student, notebook), group in sorted(groups.items()):
            distinct: dict[str, _Candidate] = {}
            for c in group:
                if c.digest in distinct:
                    self.skip(c.source, f"the same file as {distinct[c.digest].source}", student)
                else:
                    distinct[c.digest] = c
            choices = list(distinct.values())
            if len(choices) > 1:
                orders = [c.order for c in choices]
                newest = max(orders) if None not in orders else None
                if newest is None or orders.count(newest) > 1:
                    why = "no date or upload order" if newest is None else "equal dates"
                    for c in choices:
                        self.refuse(c.source, f"{len(choices)} different files {student}/{notebook} and {why} to "
                                              "choose between them: none is kept", student)
                    continue
                winner = choices[orders.index(newest)]
                for c in choices:
                    if c is not winner:
                        self.skip(c.source, f"older than {winner.source} ({_when(winner)})", student)
                choices = [winner]
            kept.setdefault(student, []).append(choices[0])
        for student, sources in self.refused.items():
            if student in kept:
                self.skip(", ".join(c.source for c in kept.pop(student)),
                          f"not collected: {len(sources)} file(s) of {student}'s download refused (above); a previous "
                          "submission, if any, is left as it was", student)
        return kept

    # ----------------------------------------------------------------- placing

    def place(self, kept: dict[str, list[_Candidate]]) -> None:
        expected = {p.name for p in self.course.source_notebooks(self.lab)}
        for student, notebooks in sorted(kept.items()):
            try:
                self._place(student, notebooks)
            except (OSError, Refused) as err:
                reason = err if isinstance(err, Refused) else f"could not write it: {err.strerror or err}"
                self.skip(", ".join(c.source for c in notebooks), f"submitted/{student}/{self.lab}: {reason}", student)
                continue
            for c in sorted(notebooks, key=lambda c: c.notebook):
                note = "late (Canvas)" if c.late else ""
                if c.notebook not in expected:
                    note = ", ".join(filter(None, (note, f"not a notebook of {self.lab}")))
                self.report.collected.append(Collected(student, c.notebook, c.source, c.time, note))

    def _place(self, student: str, notebooks: list[_Candidate]) -> None:
        build = self._new_name("s")
        build_fd = _open_dir(build, self.area_fd, create=True)
        try:
            for c in notebooks:
                os.rename(c.file, c.notebook, src_dir_fd=self.area_fd, dst_dir_fd=build_fd)
            times = [c.time for c in notebooks if c.time is not None]
            if times:
                fd = os.open("timestamp.txt", _CREATE, 0o644, dir_fd=build_fd)
                with os.fdopen(fd, "w") as out:
                    os.fchmod(out.fileno(), 0o644)
                    out.write(max(times).strftime(TIMESTAMP_FORMAT))
        finally:
            os.close(build_fd)
        try:
            student_fd = _open_dir(student, self.sub_fd, create=True)
        except OSError:
            raise Refused(f"submitted/{student} is a link or not a folder: left as it is") from None
        try:
            try:
                os.lstat(self.lab, dir_fd=student_fd)
            except FileNotFoundError:
                os.rename(build, self.lab, src_dir_fd=self.area_fd, dst_dir_fd=student_fd)
                return
            if not exchange(self.area_fd, build, student_fd, self.lab):
                # No atomic exchange here: the old one goes aside, then the new one in (a kill in
                # between leaves no folder until the rerun, which collects it again).
                os.rename(self.lab, self._new_name("old"), src_dir_fd=student_fd, dst_dir_fd=self.area_fd)
                os.rename(build, self.lab, src_dir_fd=self.area_fd, dst_dir_fd=student_fd)
        finally:
            os.close(student_fd)


@contextlib.contextmanager
def _open_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo):
    """A zip entry, opened only when it is to be read (other entries are never decompressed)."""
    try:
        reader = archive.open(info)
    except _ZIP_ERRORS as err:
        raise Refused(f"unreadable (a corrupt entry): {err}") from None
    with reader:
        yield reader


def _when(c: _Candidate) -> str:
    if isinstance(c.order, datetime):
        return f"dated {c.order:%Y-%m-%d %H:%M:%S} UTC"
    return f"a later upload, attachment {c.order}"


def collect_lab(course: Course, lab: str, download_dir: str | Path, layout: str | None = None) -> CollectReport:
    """Collect every student's notebooks for `lab` from the LMS download folder `download_dir`.

    Problems with one file are in the report (`skipped`, with the rule); problems with the course
    or the folder itself raise CourseError. layout: canvas, moodle or plain (c.Collect.layout)."""
    course.check_lab(lab)
    settings = Collect(config=course.config)
    layout = layout or settings.layout
    if layout not in LAYOUTS:
        raise CourseError(f"unknown layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    folder = Path(download_dir)
    if not folder.is_dir():
        raise CourseError(f"no download folder {folder}")
    with _Collection(course, lab, layout, settings) as run:
        run.download_folder(folder)
        run.place(run.resolve())
    return run.report

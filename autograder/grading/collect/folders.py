"""Writing safely: the locked `submitted/` and the temporary folder beside it (fd-based, files
created O_EXCL|O_NOFOLLOW, copies capped while read), and each student's folder swapped in with
one rename (renameat2 RENAME_EXCHANGE)."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import os
import secrets
import shutil
import stat
from typing import IO, TYPE_CHECKING, Self

from ...course import Course, CourseError
from .entries import _ZIP_ERRORS, _mib
from .naming import Refused
from .report import Collected, CollectReport, _Candidate

TEMP_PREFIX = ".collect-tmp-"
#: nbgrader's submission-time format (Exchange.timestamp_format), read back by its parse_utc.
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"
CHUNK = 1 << 20
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


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


class _Folders:
    """A run's folders and what it writes there (for _Collection, which holds the course, the lab,
    the settings and the report)."""

    # Set by _Collection (run.py): declared for the type checker.
    course: Course
    lab: str
    max_archive: int
    expected: set[str]  # the lab's notebook names (set by _Collection)
    report: CollectReport
    _count: int

    if TYPE_CHECKING:  # _Collection's report (only declared here: the MRO keeps its own)

        def skip(self, source: str, reason: str, student: str | None = None) -> None: ...

    # ----------------------------------------------------------------- the folders

    def __enter__(self) -> Self:
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
                raise CourseError(
                    f"{self.course.submitted} is a link or not a folder ({err.strerror}): "
                    "nothing is collected through it"
                ) from None
            try:
                fcntl.flock(self.sub_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when sub_fd closes
            except BlockingIOError:
                raise CourseError("another `autograder collect` is running in this course; wait for it") from None
            for name in os.listdir(self.root_fd):  # left by a collection that was killed
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

    def _store(
        self, source: IO[bytes], declared: int | None, limit: int, budget: list[int] | None = None
    ) -> tuple[str, str]:
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
                    view = view[os.write(fd, view) :]
        except BaseException:
            os.close(fd)
            os.unlink(name, dir_fd=self.area_fd)
            raise
        os.close(fd)
        return name, digest.hexdigest()

    # ----------------------------------------------------------------- placing

    def place(self, kept: dict[str, list[_Candidate]]) -> None:
        for student, notebooks in sorted(kept.items()):
            try:
                self._place(student, notebooks)
            except (OSError, Refused) as err:
                reason = err if isinstance(err, Refused) else f"could not write it: {err.strerror or err}"
                self.skip(", ".join(c.source for c in notebooks), f"submitted/{student}/{self.lab}: {reason}", student)
                continue
            for c in sorted(notebooks, key=lambda c: c.notebook):
                note = "late (Canvas)" if c.late else ""
                if c.notebook not in self.expected:
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

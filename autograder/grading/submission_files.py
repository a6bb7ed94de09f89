"""The files of a submission, read only when they are what they claim to be.

Everything under `submitted/` comes from students (LMS downloads, exchange folders). The
coordinator opens only regular files that lie inside `submitted/<student>/<lab>/`, reached
without following any symbolic link: a submission that is a link to the instructor's source
notebook, a FIFO that would block the batch, a folder, or a path that resolves elsewhere is
refused with a reason, and nothing is read through it.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from ..outcomes import FailureKind

#: Largest submission file read (a notebook with attachments is rarely over a few MiB).
MAX_SUBMISSION_BYTES = 64 * 2**20


#: A student id the grader accepts (a folder name under submitted/, a gradebook id, a CSV cell):
#: letters, digits, '.', '_', '-', starting with a letter or digit, at most 64 characters.
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def student_id_problem(student: str) -> str | None:
    """Why `student` cannot be a student id (None when it can)."""
    if STUDENT_ID.fullmatch(student) and ".." not in student:
        return None
    shown = student.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")[:80]
    return (
        f"the folder name {shown!r} is not a usable student id (letters, digits, '.', '_' and '-', starting "
        "with a letter or digit, at most 64 characters): rename it under submitted/"
    )


class UnsafeSubmission(Exception):
    """A submission path the coordinator refuses to read; the message is the reason, `failure`
    its kind."""

    def __init__(self, message: str, failure: FailureKind = FailureKind.NOT_A_REGULAR_FILE):
        super().__init__(message)
        self.failure = failure


def checked_path(submitted: Path, student: str, lab: str, filename: str) -> Path:
    """submitted/<student>/<lab>/<filename>, after checking that no part of it is a link and that
    the file is a regular file inside `submitted/`. Raises FileNotFoundError when it is absent."""
    root = Path(submitted).resolve()
    path = root
    for part, what in ((student, "the student's folder"), (lab, "the lab folder"), (filename, filename)):
        if part in ("", ".", "..") or "/" in part or "\0" in part:
            raise UnsafeSubmission(f"{what} has an unusable name {part!r}", FailureKind.BAD_STUDENT_ID)
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            raise
        except OSError as err:
            raise UnsafeSubmission(f"{what} cannot be examined: {err.strerror or err}") from None
        if stat.S_ISLNK(mode):
            raise UnsafeSubmission(
                f"{what} is a symbolic link (to {os.readlink(path)!r}): only regular files are "
                "graded; submit the notebook itself",
                FailureKind.SYMBOLIC_LINK,
            )
        expected_dir = part is not filename
        if expected_dir and not stat.S_ISDIR(mode):
            raise UnsafeSubmission(f"{what} is not a folder")
        if not expected_dir and not stat.S_ISREG(mode):
            raise UnsafeSubmission(f"{filename} is not a regular file ({_kind(mode)}): only regular files are graded")
    if not path.resolve().is_relative_to(root):  # a bind mount or a link above submitted/ itself
        raise UnsafeSubmission(f"{filename} resolves outside the submitted folder", FailureKind.SYMBOLIC_LINK)
    return path


def read_regular_file(path: Path, limit: int = MAX_SUBMISSION_BYTES) -> bytes:
    """The bytes of `path`, opened without following a link and without blocking on a FIFO, and
    only when it is a regular file of at most `limit` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        kind = FailureKind.SYMBOLIC_LINK if err.errno == errno.ELOOP else FailureKind.NOT_A_REGULAR_FILE
        raise UnsafeSubmission(
            f"{Path(path).name} cannot be opened as a regular file: {err.strerror or err}", kind
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # checked before Python's file object refuses a folder itself
            raise UnsafeSubmission(f"{Path(path).name} is not a regular file ({_kind(info.st_mode)})")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as file:
        if info.st_size > limit:
            raise UnsafeSubmission(
                f"{Path(path).name} is {info.st_size / 2**20:.1f} MiB, over the "
                f"{limit / 2**20:.0f} MiB a submission may have",
                FailureKind.TOO_LARGE,
            )
        data = file.read(limit + 1)
    if len(data) > limit:
        raise UnsafeSubmission(
            f"{Path(path).name} grew over {limit / 2**20:.0f} MiB while it was read", FailureKind.TOO_LARGE
        )
    return data


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"

"""Whose a file is: the LMS naming presets (canvas, moodle, plain), the student-id and
notebook-name rules, and how a student-chosen name is printed."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ..submission_files import STUDENT_ID

LAYOUTS = ("plain", "canvas", "moodle")
#: A student id: what nbgrader, the gradebook, folders and CSV exports can all hold safely.
CANVAS_RESUBMISSION = re.compile(r"(.+)-\d+\.ipynb")

CANVAS = re.compile(
    r"(?P<name>.*?)(?P<late>[_-]late)?_(?P<user>\d+)_(?P<attachment>\d+)_(?P<file>.+)", re.IGNORECASE | re.DOTALL
)
MOODLE = re.compile(r"(?P<name>[^_]*)_(?P<user>\d+)_assignsubmission_(?P<plugin>[a-z]+)_(?P<file>.*)", re.DOTALL)
PLAIN = re.compile(r"(?P<user>[^_]+)_(?P<file>.+)", re.DOTALL)


class Refused(Exception):
    """A file breaks a collection rule; the message says which."""


@dataclass
class Named:
    """What the LMS's naming says of one item: whose it is and the student's own path in it."""

    student: str
    path: tuple[str, ...]
    order: int | None = None  # the LMS's upload order (Canvas attachment id)
    late: bool = False


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
    "plain": _plain,
    "canvas": _canvas,
    "moodle": _moodle,
}


# ---------------------------------------------------------------------------------- rules


def check_student_id(raw: str) -> str:
    if not STUDENT_ID.fullmatch(raw) or ".." in raw:
        raise Refused(
            f"student id {shown(raw)!r} refused: an id is 1-64 letters, digits, '.', '_' or '-', starts "
            "with a letter or digit and has no '..'"
        )
    return raw


def check_notebook_name(name: str) -> str:
    if (
        len(name) > 128
        or not name[:1].isalnum()
        or not name.endswith(".ipynb")
        or any(not ch.isprintable() or ch in "/\\" for ch in name)
    ):
        raise Refused(
            f"notebook name {shown(name)!r} refused: it must start with a letter or digit, end in .ipynb and "
            "have at most 128 printable characters"
        )
    return name


def shown(text: str) -> str:
    """A student-chosen name made safe to print on a terminal (no escape sequences)."""
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)

"""One collection run: `_Collection` reads the downloads, chooses among duplicates and places
each student's notebooks; `collect_lab` is its entry point."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from ...course import Course, CourseError
from ...settings import Collect
from .downloads import _Downloads
from .entries import junk
from .folders import _Folders
from .naming import LAYOUTS, PRESETS, Named, Refused, check_student_id
from .report import CollectReport, Skipped, _Candidate, _when


class _Collection(_Downloads, _Folders):
    """One run: a locked `submitted/`, a temporary folder beside it, the candidates found so far."""

    def __init__(self, course: Course, lab: str, layout: str, settings: Collect):
        self.course, self.lab, self.layout, self.settings = course, lab, layout, settings
        self.identify = PRESETS[layout]
        self.expected = {p.name for p in course.source_notebooks(lab)}
        self.max_file = int(settings.max_file_mib * 2**20)
        self.max_archive = int(settings.max_archive_mib * 2**20)
        self.report = CollectReport(lab=lab, layout=layout)
        self.candidates: list[_Candidate] = []
        self.refused: dict[str, list[str]] = {}  # student → sources refused (their download is skipped)
        self._count = 0

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
                ids = [o for o in orders if isinstance(o, int)]
                dates = [o for o in orders if isinstance(o, datetime)]
                # One layout orders by one kind (Canvas: attachment ids, the others: dates); any None: no order.
                newest: int | datetime | None = (
                    max(ids) if len(ids) == len(orders) else max(dates) if len(dates) == len(orders) else None
                )
                if newest is None or orders.count(newest) > 1:
                    why = "no date or upload order" if newest is None else "equal dates"
                    for c in choices:
                        self.refuse(
                            c.source,
                            f"{len(choices)} different files {student}/{notebook} and {why} to "
                            "choose between them: none is kept",
                            student,
                        )
                    continue
                winner = choices[orders.index(newest)]
                for c in choices:
                    if c is not winner:
                        self.skip(c.source, f"older than {winner.source} ({_when(winner)})", student)
                choices = [winner]
            kept.setdefault(student, []).append(choices[0])
        for student, sources in self.refused.items():
            if student in kept:
                self.skip(
                    ", ".join(c.source for c in kept.pop(student)),
                    f"not collected: {len(sources)} file(s) of {student}'s download refused (above); a previous "
                    "submission, if any, is left as it was",
                    student,
                )
        return kept


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

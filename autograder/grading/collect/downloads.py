"""Reading the LMS download folder: its files, its bulk zips and each student's own zip; every item
the LMS names as a student's becomes a candidate notebook, or a skip with the rule it broke."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import stat
import zipfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO

from ...course import CourseError
from ...settings import Collect
from .entries import _open_entry, entry_parts, entry_time, junk
from .naming import (
    CANVAS_RESUBMISSION,
    Named,
    Refused,
    check_notebook_name,
    check_student_id,
    shown,
)
from .report import _Candidate


class _Downloads:
    """What a run reads (for _Collection, which holds the preset, the caps and the candidates)."""

    # Set by _Collection (run.py) and _Folders (folders.py): declared for the type checker.
    lab: str
    layout: str
    settings: Collect
    identify: Callable[[tuple[str, ...], str], Named | str]
    expected: set[str]
    max_file: int
    max_archive: int
    candidates: list[_Candidate]
    area_fd: int

    if TYPE_CHECKING:  # _Collection's report and _Folders' copies (only declared here: the MRO keeps theirs)

        def skip(self, source: str, reason: str, student: str | None = None) -> None: ...
        def refuse(self, source: str, reason: str, student: str | None) -> None: ...
        def owner(self, raw: str) -> str | None: ...
        def _store(
            self, source: IO[bytes], declared: int | None, limit: int, budget: list[int] | None = None
        ) -> tuple[str, str]: ...

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
            self.skip(
                where,
                "a folder: give the LMS's zip file as downloaded, or the notebooks themselves"
                if stat.S_ISDIR(mode)
                else "not a regular file",
            )
            return
        with os.fdopen(fd, "rb") as file:
            bulk = name.lower().endswith(".zip") and self.layout == "plain"  # plain: a zip in DIR is a download
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
                self.skip(
                    where,
                    f"{len(infos)} entries, over the {self.settings.max_entries} a zip may have "
                    "(c.Collect.max_entries): nothing in it is collected",
                )
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
                if junk(named.path, hidden=True):  # the student's own hidden files, in an LMS folder
                    continue
                student = self._checked_student(named, source)
                if student:
                    self._student_file(
                        student,
                        named,
                        source,
                        functools.partial(_open_entry, archive, info),
                        info.file_size,
                        entry_time(info) if use_dates else None,
                    )

    def _student_file(
        self,
        student: str,
        named: Named,
        source: str,
        open_source: Callable,
        declared: int | None,
        time: datetime | None,
    ) -> None:
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

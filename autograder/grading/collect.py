"""`autograder collect LAB DIR`: LMS downloads → submitted/<student>/LAB/, by nbgrader's zip_collect.

The archives are copied into nbgrader's `downloaded/LAB/archive/` and `nbgrader zip_collect`
does the rest, with the file-name pattern from nbgrader_config.py
(`FileNameCollectorPlugin.named_regexp`, matched against the absolute path).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ..course import Course, CourseError


def collect_zips(course: Course, lab: str, archive_dir: Path) -> int:
    course.check_lab(lab)
    files = [p for p in Path(archive_dir).iterdir() if p.is_file()] if Path(archive_dir).is_dir() else []
    if not files:
        raise CourseError(f"no files to collect in {archive_dir}")
    archive = course.root / "downloaded" / lab / "archive"
    shutil.rmtree(archive.parent, ignore_errors=True)
    archive.mkdir(parents=True)
    for path in files:
        shutil.copy(path, archive / path.name)
    nbgrader = Path(sys.executable).with_name("nbgrader")
    run = subprocess.run([str(nbgrader), "zip_collect", lab, "--force"], cwd=course.root,
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise CourseError(f"nbgrader zip_collect failed:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    return len(_submitted(course, lab))


def _submitted(course: Course, lab: str) -> set[str]:
    return {p.parent.name for p in course.submitted.glob(f"*/{lab}")} if course.submitted.is_dir() else set()

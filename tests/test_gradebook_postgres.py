"""The gradebook on a real PostgreSQL server, started by this test (Debian's postgresql)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from autograder.authoring.pipeline import build_lab
from autograder.course import Course
from autograder.demo import DemoStudent, make_submission
from autograder.grading.batch import grade_lab
from autograder.grading.gradebook import recorded_scores
from conftest import free_port, new_course
from notebooks import mean_square_lab, write_lab

BINARIES = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def _as_postgres(args, **kw):
    """The server refuses to run as root: run its tools as the postgres user when we are root."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + args, check=True, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory):
    if not BINARIES:
        pytest.skip(
            "PostgreSQL server binaries are not installed (Debian package postgresql; "
            "`scripts/setup.sh --test` installs them)"
        )
    bin_dir = Path(BINARIES[-1])
    base = Path(tmp_path_factory.mktemp("pg"))
    data = base / "data"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        os.chmod(base, 0o755)
        for parent in base.parents:  # the postgres user must reach its data folder
            if parent == Path("/"):
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o011)
    port = free_port()
    _as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"])
    _as_postgres(
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(base / "log"),
            "-w",
            "-o",
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1",
            "start",
        ]
    )
    try:
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        _as_postgres([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "gradebook"])
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/gradebook"
    finally:
        _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])


def test_build_and_grade_into_postgresql(postgres_url, tmp_path):
    root = tmp_path / "course"
    new_course(root)
    config_file = root / "nbgrader_config.py"
    config_file.write_text(config_file.read_text() + f"\nc.CourseDirectory.db_url = {postgres_url!r}\n")
    course = Course.load(root)
    assert course.db_url == postgres_url
    write_lab(root, "tiny", mean_square_lab())
    build_lab(course, "tiny")
    for student in (DemoStudent("ada", "correct"), DemoStudent("ben", "blank", answers="blank")):
        make_submission(course, "tiny", student)
    results = {r.student: r for r in grade_lab(course, "tiny", workers=2)}
    assert {s: r.score for s, r in results.items()} == {"ada": 3.0, "ben": 0.0}
    assert recorded_scores(course, "tiny") == {"ada": (3.0, 3.0), "ben": (0.0, 3.0)}
    assert not (root / "gradebook.db").exists()  # nothing went to SQLite by mistake

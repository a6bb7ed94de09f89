"""`autograder collect` attacked with LMS downloads, judged from outside: what lands on disk, what
is reported. Real zip files made with zipfile (ZipInfo.external_attr for modes and links)."""

from __future__ import annotations

import fcntl
import functools
import io
import os
import signal
import stat
import struct
import subprocess
import sys
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest

from autograder.course import Course, CourseError
from autograder.grading.collect import TEMP_PREFIX, check_student_id, collect_lab
from conftest import new_course
from notebooks import mean_square_lab, write_lab

AUTOGRADER = str(Path(sys.executable).with_name("autograder"))
DATE = (2024, 5, 1, 12, 0, 0)


@functools.cache
def notebook(tag: str) -> bytes:
    """A student notebook whose content says who made it (to tell which file landed where); the
    same bytes for the same tag (nbformat gives new cells random ids)."""
    nb = mean_square_lab()
    nb.metadata["made_by"] = tag
    return nbformat.writes(nb).encode()


def info(name: str, date=DATE, mode: int | None = None, extra: bytes = b"") -> zipfile.ZipInfo:
    entry = zipfile.ZipInfo(name, date)
    if mode is not None:
        entry.external_attr = mode << 16
    entry.extra = extra
    entry.compress_type = zipfile.ZIP_DEFLATED
    return entry


def make_zip(path: Path, entries) -> Path:
    """entries: (name or ZipInfo, bytes); a name gets the date DATE."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries:
            archive.writestr(name if isinstance(name, zipfile.ZipInfo) else info(name), data)
    return path


def zip_bytes(entries) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries:
            archive.writestr(name if isinstance(name, zipfile.ZipInfo) else info(name), data)
    return buffer.getvalue()


def on_disk(course: Course) -> dict[str, dict[str, bytes]]:
    """student → {file in submitted/<student>/tiny/: bytes}."""
    found = {}
    for folder in sorted(course.submitted.glob("*/tiny")):
        found[folder.parent.name] = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    return found


def made_by(course: Course) -> dict[str, dict[str, str]]:
    return {
        student: {
            name: nbformat.reads(data.decode(), as_version=4).metadata.get("made_by")
            for name, data in files.items()
            if name.endswith(".ipynb")
        }
        for student, files in on_disk(course).items()
    }


def reasons(report) -> dict[str, str]:
    return {s.source: s.reason for s in report.skipped}


def course_files(course: Course) -> set[str]:
    """Every path under the course folder, besides source/ and the config."""
    return {
        str(p.relative_to(course.root))
        for p in course.root.rglob("*")
        if p.relative_to(course.root).parts[0] not in ("source", "nbgrader_config.py")
    }


def assert_nothing_stray(course: Course, tmp_path: Path) -> None:
    """Only submitted/<student>/tiny/ folders were written; no temporary folder is left; nothing
    named by an attacker exists anywhere under the test's folder."""
    for path in course_files(course):
        parts = Path(path).parts
        assert parts[0] == "submitted" and len(parts) <= 4, path
        if len(parts) == 4:
            assert parts[2] == "tiny" and (parts[3].endswith(".ipynb") or parts[3] == "timestamp.txt"), path
    assert not list(course.root.glob(TEMP_PREFIX + "*"))
    assert not [p for p in tmp_path.rglob("*evil*") if "downloads" not in p.parts]


@pytest.fixture
def course(tmp_path) -> Course:
    course = new_course(tmp_path / "course")
    write_lab(course.root, "tiny", mean_square_lab())
    return course


def configured(course: Course, *lines: str) -> Course:
    with open(course.root / "nbgrader_config.py", "a") as config:
        config.write("\n" + "\n".join(lines) + "\n")
    return Course.load(course.root)


# ------------------------------------------------------------------ paths that climb


def test_climbing_absolute_and_windows_entries_are_refused_and_honest_students_collected(course, tmp_path):
    downloads = tmp_path / "downloads"
    make_zip(
        downloads / "lms.zip",
        [
            ("alice_tiny.ipynb", notebook("alice")),
            ("../evil_tiny.ipynb", notebook("evil")),
            ("../../course/submitted/alice/tiny/evil_tiny.ipynb", notebook("evil")),
            ("/tmp/evil_tiny.ipynb", notebook("evil")),
            ("C:/evil_tiny.ipynb", notebook("evil")),
            ("..\\..\\evil_tiny.ipynb", notebook("evil")),
            ("alice/../bob_tiny.ipynb", notebook("evil")),
            ("bob_tiny.ipynb", notebook("bob")),
        ],
    )
    report = collect_lab(course, "tiny", downloads)

    assert made_by(course) == {"alice": {"tiny.ipynb": "alice"}, "bob": {"tiny.ipynb": "bob"}}
    why = reasons(report)
    assert why["lms.zip: ../evil_tiny.ipynb"] == "a '..' component in its path"
    assert why["lms.zip: ../../course/submitted/alice/tiny/evil_tiny.ipynb"] == "a '..' component in its path"
    assert why["lms.zip: /tmp/evil_tiny.ipynb"] == "an absolute path"
    assert why["lms.zip: C:/evil_tiny.ipynb"] == "a drive letter"
    assert "backslash" in why["lms.zip: ..\\..\\evil_tiny.ipynb"]
    assert why["lms.zip: alice/../bob_tiny.ipynb"] == "a '..' component in its path"
    # Nobody is blamed for a crafted name: bob (named after the '..') and alice are both collected.
    assert all(s.student is None for s in report.skipped)
    assert report.students == ["alice", "bob"]
    assert_nothing_stray(course, tmp_path)


def test_a_nul_byte_cannot_cut_a_name_short(course, tmp_path):
    """zipfile cuts `filename` at a NUL byte (bob_tiny.ipynb\\0.txt reads as bob_tiny.ipynb): the
    original name is what is checked."""
    downloads = tmp_path / "downloads"
    make_zip(
        downloads / "lms.zip", [("bob_tiny.ipynbXX.txt", notebook("evil")), ("alice_tiny.ipynb", notebook("alice"))]
    )
    data = (downloads / "lms.zip").read_bytes().replace(b"ipynbXX", b"ipynb\x00X")
    (downloads / "lms.zip").write_bytes(data)
    report = collect_lab(course, "tiny", downloads)

    assert made_by(course) == {"alice": {"tiny.ipynb": "alice"}}
    assert [s.reason for s in report.skipped] == ["control characters in its name"]
    assert "\\x00" in report.skipped[0].source


def test_a_climbing_entry_inside_a_students_zip_skips_that_student_only(course, tmp_path):
    downloads = tmp_path / "downloads"
    make_zip(
        downloads / "submissions.zip",
        [
            (
                "smithalice_101_9001_work.zip",
                zip_bytes([("tiny.ipynb", notebook("alice")), ("../../evil.ipynb", notebook("evil"))]),
            ),
            ("jonesbob_102_9002_tiny.ipynb", notebook("bob")),
        ],
    )
    report = collect_lab(course, "tiny", downloads, layout="canvas")

    assert made_by(course) == {"102": {"tiny.ipynb": "bob"}}
    why = reasons(report)
    assert "'../../evil.ipynb': a '..' component" in why["submissions.zip: smithalice_101_9001_work.zip"]
    assert [s.student for s in report.skipped] == ["101"]
    assert_nothing_stray(course, tmp_path)


def test_an_id_of_dotdot_writes_nothing_outside_submitted(course, tmp_path):
    downloads = tmp_path / "downloads"
    (downloads).mkdir()
    (downloads / ".._tiny.ipynb").write_bytes(notebook("evil"))
    make_zip(
        downloads / "lms.zip",
        [
            (".._tiny.ipynb", notebook("evil")),
            ("../tiny/tiny.ipynb", notebook("evil")),
            ("x/../tiny/tiny.ipynb", notebook("evil")),
            ("alice_tiny.ipynb", notebook("alice")),
        ],
    )
    report = collect_lab(course, "tiny", downloads)

    assert made_by(course) == {"alice": {"tiny.ipynb": "alice"}}
    why = reasons(report)
    assert why[".._tiny.ipynb"].startswith("student id '..' refused")
    assert why["lms.zip: .._tiny.ipynb"].startswith("student id '..' refused")
    assert why["lms.zip: ../tiny/tiny.ipynb"] == "a '..' component in its path"
    assert not (course.root / "tiny").exists() and not (tmp_path / "tiny").exists()
    assert sorted(p.name for p in course.submitted.iterdir()) == ["alice"]
    assert_nothing_stray(course, tmp_path)


@pytest.mark.parametrize("raw", ["alice", "a.b-c_d", "1234", "A" * 64, "s2024.001"])
def test_ids_accepted(raw):
    assert check_student_id(raw) == raw


@pytest.mark.parametrize(
    "raw",
    ["..", "a..b", "=cmd", "+1", "-x", "@SUM(1)", ".hidden", "_x", "A" * 65, "", "a/b", "al ice", "é", "a\nb", "a\\b"],
)
def test_ids_refused(raw):
    from autograder.grading.collect import Refused

    with pytest.raises(Refused, match="student id"):
        check_student_id(raw)


def test_ids_that_a_spreadsheet_would_run_are_refused(course, tmp_path):
    downloads = tmp_path / "downloads"
    attacks = ["=cmd", "+1", "-x", "@SUM(1)"]
    make_zip(
        downloads / "lms.zip",
        [(f"{who}_tiny.ipynb", notebook("evil")) for who in attacks]
        + [("=cmd/tiny/tiny.ipynb", notebook("evil")), ("alice_tiny.ipynb", notebook("alice"))],
    )
    (downloads / "@SUM(1+1)_tiny.ipynb").write_bytes(notebook("evil"))
    report = collect_lab(course, "tiny", downloads)

    assert made_by(course) == {"alice": {"tiny.ipynb": "alice"}}
    why = reasons(report)
    for who in attacks:
        assert why[f"lms.zip: {who}_tiny.ipynb"].startswith(f"student id {who!r} refused")
    assert why["lms.zip: =cmd/tiny/tiny.ipynb"].startswith("student id '=cmd' refused")
    assert why["@SUM(1+1)_tiny.ipynb"].startswith("student id '@SUM(1+1)' refused")
    assert_nothing_stray(course, tmp_path)


# ------------------------------------------------------------------ links, modes


def test_a_symlink_entry_is_never_extracted(course, tmp_path):
    downloads = tmp_path / "downloads"
    link = stat.S_IFLNK | 0o777
    make_zip(
        downloads / "lms.zip",
        [
            (info("carol_tiny.ipynb", mode=link), b"/etc/passwd"),
            ("dave_work.zip", zip_bytes([(info("tiny.ipynb", mode=link), b"../../../../etc/passwd")])),
            (
                "erin_work.zip",
                zip_bytes([(info("lab/", mode=stat.S_IFLNK | 0o777), b"/etc"), ("lab/tiny.ipynb", notebook("erin"))]),
            ),
            ("alice_tiny.ipynb", notebook("alice")),
        ],
    )
    report = collect_lab(course, "tiny", downloads)

    assert made_by(course) == {"alice": {"tiny.ipynb": "alice"}}
    why = reasons(report)
    assert why["lms.zip: carol_tiny.ipynb"] == "a symbolic link (links are never extracted)"
    assert "'tiny.ipynb': a symbolic link" in why["lms.zip: dave_work.zip"]
    assert "'lab/': a symbolic link" in why["lms.zip: erin_work.zip"]
    assert {s.student for s in report.skipped} == {"carol", "dave", "erin"}
    for path in course.root.rglob("*"):
        assert not path.is_symlink(), path
    assert_nothing_stray(course, tmp_path)


def test_modes_are_normalised_whatever_the_zip_and_the_umask_say(course, tmp_path):
    downloads = tmp_path / "downloads"
    make_zip(
        downloads / "lms.zip",
        [
            (info("alice_tiny.ipynb", mode=stat.S_IFREG | 0o6777), notebook("alice")),
            (
                "bob_work.zip",
                zip_bytes(
                    [
                        (info("lab/", mode=stat.S_IFDIR | 0o7777), b""),
                        (info("lab/tiny.ipynb", mode=stat.S_IFREG | 0o4755), notebook("bob")),
                        (info("lab/other.ipynb", mode=0o000), notebook("bob")),
                    ]
                ),
            ),
        ],
    )
    old = os.umask(0o077)
    try:
        collect_lab(course, "tiny", downloads)
    finally:
        os.umask(old)

    assert made_by(course) == {"alice": {"tiny.ipynb": "alice"}, "bob": {"tiny.ipynb": "bob", "other.ipynb": "bob"}}
    for path in course.submitted.rglob("*"):
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))
    assert stat.S_IMODE(course.submitted.stat().st_mode) == 0o755 or True  # submitted/ itself: the umask's


# ------------------------------------------------------------------ whose file it is


@pytest.mark.parametrize("layout", ["plain", "canvas", "moodle"])
def test_a_file_in_alices_zip_named_like_bobs_submission_stays_alices(course, tmp_path, layout):
    downloads = tmp_path / "downloads"
    alices = zip_bytes(
        [
            ("bob_tiny.ipynb", notebook("alice-as-bob")),
            ("jonesbob_202_7002_tiny.ipynb", notebook("alice-as-bob")),
            ("Bob Jones_302_assignsubmission_file_/bob2.ipynb", notebook("alice-as-bob")),
            ("carol_tiny.ipynb", notebook("alice-as-carol")),
            ("tiny.ipynb", notebook("alice")),
        ]
    )
    dans = zip_bytes([("bob/tiny/tiny.ipynb", notebook("dan-as-bob"))])  # nbgrader's layout, inside a zip
    names = {
        "plain": ("alice_work.zip", "bob_tiny.ipynb", "dan_work.zip"),
        "canvas": ("smithalice_201_7001_work.zip", "jonesbob_202_7002_tiny.ipynb", "leedan_204_7004_w.zip"),
        "moodle": (
            "Alice Smith_301_assignsubmission_file_/work.zip",
            "Bob Jones_302_assignsubmission_file_/tiny.ipynb",
            "Dan Lee_304_assignsubmission_file_work.zip",
        ),
    }[layout]
    make_zip(downloads / "lms.zip", [(names[0], alices), (names[1], notebook("bob")), (names[2], dans)])
    report = collect_lab(course, "tiny", downloads, layout=layout)

    alice, bob, dan = {
        "plain": ("alice", "bob", "dan"),
        "canvas": ("201", "202", "204"),
        "moodle": ("301", "302", "304"),
    }[layout]
    found = made_by(course)
    assert sorted(found) == sorted([alice, bob, dan])  # no carol, no second bob
    assert found[bob] == {"tiny.ipynb": "bob"}
    assert found[dan] == {"tiny.ipynb": "dan-as-bob"}
    assert found[alice] == {
        "tiny.ipynb": "alice",
        "bob_tiny.ipynb": "alice-as-bob",
        "jonesbob_202_7002_tiny.ipynb": "alice-as-bob",
        "bob2.ipynb": "alice-as-bob",
        "carol_tiny.ipynb": "alice-as-carol",
    }
    assert report.skipped == []
    assert {r.note for r in report.collected if r.student == alice} == {"", "not a notebook of tiny"}
    assert_nothing_stray(course, tmp_path)


# ------------------------------------------------------------------ duplicates


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_duplicates_keep_the_newest_when_dated_and_write_nbgraders_timestamp(course, tmp_path):
    downloads = tmp_path / "downloads"
    june = int(datetime(2024, 6, 1, 8, 30, tzinfo=UTC).timestamp())
    make_zip(
        downloads / "a.zip",
        [
            (info("alice_tiny.ipynb", date=(2024, 5, 1, 12, 0, 0)), notebook("alice-1")),
            (info("alice_tiny.ipynb", date=(2024, 5, 3, 12, 0, 0)), notebook("alice-3")),
            # The extended-timestamp field (UTC) wins over the DOS date.
            (
                info("bob_tiny.ipynb", date=(2024, 5, 1, 0, 0, 0), extra=struct.pack("<HHBi", 0x5455, 5, 1, june)),
                notebook("bob-june"),
            ),
        ],
    )
    make_zip(
        downloads / "b.zip",
        [
            (info("alice_tiny.ipynb", date=(2024, 5, 2, 12, 0, 0)), notebook("alice-2")),
            (info("bob_tiny.ipynb", date=(2024, 5, 20, 0, 0, 0)), notebook("bob-may")),
        ],
    )
    report = collect_lab(course, "tiny", downloads)

    assert made_by(course) == {"alice": {"tiny.ipynb": "alice-3"}, "bob": {"tiny.ipynb": "bob-june"}}
    coursedir = course.coursedir()  # nbgrader reads what grading will see
    assert coursedir.get_existing_timestamp(str(course.submitted / "alice" / "tiny")) == datetime(2024, 5, 3, 12)
    assert coursedir.get_existing_timestamp(str(course.submitted / "bob" / "tiny")) == datetime(2024, 6, 1, 8, 30)
    assert (course.submitted / "alice" / "tiny" / "timestamp.txt").read_text() == "2024-05-03 12:00:00.000000 UTC"
    older = [s for s in report.skipped if s.reason.startswith("older than")]
    assert len(older) == 3 and {s.student for s in older} == {"alice", "bob"}


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_duplicates_that_cannot_be_ordered_skip_that_student_and_keep_the_previous_one(course, tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "bob_tiny.ipynb").write_bytes(notebook("bob-loose"))  # a loose file has no date
    make_zip(
        downloads / "lms.zip",
        [
            ("alice_tiny.ipynb", notebook("alice")),
            ("bob_tiny.ipynb", notebook("bob-zip")),
            ("carol_tiny.ipynb", notebook("carol-1")),  # same date, different files
            ("carol_tiny.ipynb", notebook("carol-2")),
            ("dave_tiny.ipynb", notebook("dave")),  # the same file twice: fine
            ("dave_tiny.ipynb", notebook("dave")),
            (
                "erin_work.zip",
                zip_bytes(
                    [
                        ("a/tiny.ipynb", notebook("erin-a")),  # two in one zip
                        ("b/tiny.ipynb", notebook("erin-b")),
                    ]
                ),
            ),
        ],
    )
    previous = course.submitted / "bob" / "tiny"
    previous.mkdir(parents=True)
    (previous / "tiny.ipynb").write_bytes(notebook("bob-before"))
    report = collect_lab(course, "tiny", downloads)

    assert made_by(course) == {
        "alice": {"tiny.ipynb": "alice"},
        "bob": {"tiny.ipynb": "bob-before"},
        "dave": {"tiny.ipynb": "dave"},
    }
    why = reasons(report)
    assert "2 different files bob/tiny.ipynb and no date or upload order" in why["bob_tiny.ipynb"]
    assert "2 different files carol/tiny.ipynb and equal dates" in why["lms.zip: carol_tiny.ipynb"]
    assert "erin/tiny.ipynb" in why["lms.zip: erin_work.zip → a/tiny.ipynb"]
    assert why["lms.zip: dave_tiny.ipynb"] == "the same file as lms.zip: dave_tiny.ipynb"


def test_canvas_duplicates_are_ordered_by_attachment_id(course, tmp_path):
    downloads = tmp_path / "downloads"
    make_zip(
        downloads / "submissions.zip",
        [
            ("smithalice_101_90005_tiny.ipynb", notebook("second")),
            ("smithalice_101_9001_tiny.ipynb", notebook("first")),
        ],
    )
    report = collect_lab(course, "tiny", downloads, layout="canvas")
    assert made_by(course) == {"101": {"tiny.ipynb": "second"}}
    assert reasons(report)["submissions.zip: smithalice_101_9001_tiny.ipynb"].endswith("attachment 90005)")


def test_canvas_resubmissions_renamed_by_canvas_are_the_labs_notebook(course, tmp_path):
    # Canvas names a student's second upload of tiny.ipynb "tiny-1.ipynb": it is still tiny.ipynb, the newest.
    downloads = tmp_path / "downloads"
    make_zip(
        downloads / "submissions.zip",
        [
            ("smithalice_101_9001_tiny.ipynb", notebook("first")),
            ("smithalice_101_90005_tiny-1.ipynb", notebook("second")),
            ("jonesbob_102_9100_notes-2.ipynb", notebook("other")),  # not a notebook of the lab: kept as named
        ],
    )
    collect_lab(course, "tiny", downloads, layout="canvas")
    assert made_by(course) == {"101": {"tiny.ipynb": "second"}, "102": {"notes-2.ipynb": "other"}}


# ------------------------------------------------------------------ sizes, bombs, corrupt zips


def patch_declared_size(path: Path, declared: int) -> None:
    """Make a one-entry zip's headers (local and central) declare `declared` bytes uncompressed."""
    data = bytearray(path.read_bytes())
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, declared)
    struct.pack_into("<I", data, central + 24, declared)
    path.write_bytes(bytes(data))


def test_zip_bombs_and_oversized_files_are_stopped(course, tmp_path):
    course = configured(course, "c.Collect.max_file_mib = 1", "c.Collect.max_archive_mib = 1.5")
    downloads = tmp_path / "downloads"
    big = b'{"cells": [], "pad": "' + b" " * (2 * 2**20) + b'"}'
    make_zip(
        downloads / "lms.zip",
        [
            ("alice_tiny.ipynb", notebook("alice")),
            ("eve_tiny.ipynb", big),  # declares 2 MiB
            ("frank_work.zip", zip_bytes([(f"n{i}.ipynb", b" " * (900 * 2**10)) for i in range(3)])),  # 2.7 MiB in all
            ("gina_work.zip", zip_bytes([("tiny.ipynb", big)])),
        ],
    )
    make_zip(downloads / "bomb.zip", [("mallory_tiny.ipynb", big)])
    patch_declared_size(downloads / "bomb.zip", 100)  # declares 100 bytes
    (downloads / "oscar_tiny.ipynb").write_bytes(big)  # a loose file, counted
    report = collect_lab(course, "tiny", downloads)

    assert made_by(course) == {"alice": {"tiny.ipynb": "alice"}}
    why = reasons(report)
    assert why["lms.zip: eve_tiny.ipynb"].startswith("declares 2 MiB, over the 1 MiB")
    assert "come to more than 2 MiB" in why["lms.zip: frank_work.zip"] or "more than" in why["lms.zip: frank_work.zip"]
    assert "'tiny.ipynb': declares 2 MiB" in why["lms.zip: gina_work.zip"]
    assert "corrupt" in why["bomb.zip: mallory_tiny.ipynb"]  # zipfile stops at 100 bytes: CRC fails
    assert "more than 1 MiB when read" in why["oscar_tiny.ipynb"]
    assert {s.student for s in report.skipped} == {"eve", "frank", "gina", "mallory", "oscar"}
    for path in course.root.rglob("*"):
        assert not path.is_file() or path.stat().st_size < 2**20, path
    assert_nothing_stray(course, tmp_path)


def test_too_many_entries(course, tmp_path):
    course = configured(course, "c.Collect.max_entries = 20")
    downloads = tmp_path / "downloads"
    make_zip(
        downloads / "a.zip",
        [
            ("alice_tiny.ipynb", notebook("alice")),
            ("bob_work.zip", zip_bytes([(f"f{i}.txt", b"x") for i in range(25)] + [("tiny.ipynb", notebook("bob"))])),
        ],
    )
    make_zip(downloads / "b.zip", [(f"s{i}_tiny.ipynb", notebook(f"s{i}")) for i in range(21)])
    report = collect_lab(course, "tiny", downloads)

    assert made_by(course) == {"alice": {"tiny.ipynb": "alice"}}
    why = reasons(report)
    assert why["a.zip: bob_work.zip"].startswith("26 entries, over the 20")
    assert why["b.zip"].startswith("21 entries, over the 20")


def test_corrupt_zips_are_reported_and_skipped(course, tmp_path):
    downloads = tmp_path / "downloads"
    make_zip(downloads / "good.zip", [("alice_tiny.ipynb", notebook("alice"))])
    (downloads / "garbage.zip").write_bytes(os.urandom(4096))
    whole = zip_bytes([("zed_tiny.ipynb", notebook("zed"))])
    (downloads / "truncated.zip").write_bytes(whole[: len(whole) // 2])
    stored = zipfile.ZipInfo("frank_tiny.ipynb", DATE)  # stored: one flipped byte
    make_zip(
        downloads / "crc.zip",
        [
            (stored, notebook("frank")),
            ("bob_tiny.ipynb", notebook("bob")),
            ("gina_work.zip", b"PK\x03\x04 not really a zip"),
        ],
    )
    data = bytearray((downloads / "crc.zip").read_bytes())
    data[100] ^= 0xFF
    (downloads / "crc.zip").write_bytes(bytes(data))
    report = collect_lab(course, "tiny", downloads)

    assert made_by(course) == {"alice": {"tiny.ipynb": "alice"}, "bob": {"tiny.ipynb": "bob"}}
    why = reasons(report)
    assert why["garbage.zip"].startswith("not a readable zip file")
    assert why["truncated.zip"].startswith("not a readable zip file")
    assert "corrupt" in why["crc.zip: frank_tiny.ipynb"] and "CRC" in why["crc.zip: frank_tiny.ipynb"]
    assert why["crc.zip: gina_work.zip"].startswith("not a readable zip file")
    assert_nothing_stray(course, tmp_path)


# ------------------------------------------------------------------ the download folder itself


def test_links_fifos_and_folders_in_the_download_folder_are_not_followed(course, tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    secret = tmp_path / "secret.ipynb"
    secret.write_bytes(notebook("secret"))
    (downloads / "eve_tiny.ipynb").symlink_to(secret)
    os.mkfifo(downloads / "fifo_tiny.ipynb")  # would block a plain open
    (downloads / "folder_tiny.ipynb").mkdir()
    (downloads / "alice_tiny.ipynb").write_bytes(notebook("alice"))
    report = collect_lab(course, "tiny", downloads)

    assert made_by(course) == {"alice": {"tiny.ipynb": "alice"}}
    why = reasons(report)
    assert why["eve_tiny.ipynb"].startswith("a symbolic link")
    assert why["fifo_tiny.ipynb"] == "not a regular file"
    assert why["folder_tiny.ipynb"].startswith("a folder")


def test_a_student_folder_that_is_a_link_is_not_written_through(course, tmp_path):
    outside = tmp_path / "outside"
    (outside / "tiny").mkdir(parents=True)
    (outside / "tiny" / "keep.txt").write_text("mine")
    course.submitted.mkdir()
    (course.submitted / "mallory").symlink_to(outside)  # submitted/mallory → outside
    (course.submitted / "trent").mkdir()
    (course.submitted / "trent" / "tiny").symlink_to(outside / "tiny")  # submitted/trent/tiny → outside
    downloads = tmp_path / "downloads"
    make_zip(downloads / "lms.zip", [(f"{who}_tiny.ipynb", notebook(who)) for who in ("alice", "mallory", "trent")])
    report = collect_lab(course, "tiny", downloads)

    assert sorted(p.name for p in outside.rglob("*")) == ["keep.txt", "tiny"]
    assert "submitted/mallory is a link or not a folder" in reasons(report)["lms.zip: mallory_tiny.ipynb"]
    assert not (course.submitted / "trent" / "tiny").is_symlink()  # the link was swapped out, unfollowed
    assert made_by(course)["trent"] == {"tiny.ipynb": "trent"}
    assert made_by(course)["alice"] == {"tiny.ipynb": "alice"}


def test_a_rerun_replaces_the_lab_folder_wholesale_and_keeps_other_labs(course, tmp_path):
    old = course.submitted / "alice" / "tiny"
    old.mkdir(parents=True)
    (old / "tiny.ipynb").write_bytes(notebook("before"))
    (old / "stale.ipynb").write_bytes(notebook("before"))
    (course.submitted / "alice" / "lab2").mkdir()
    (course.submitted / "alice" / "lab2" / "lab2.ipynb").write_text("other lab")
    downloads = tmp_path / "downloads"
    make_zip(downloads / "lms.zip", [("alice_tiny.ipynb", notebook("alice")), ("bob_tiny.ipynb", notebook("bob"))])

    collect_lab(course, "tiny", downloads)
    first = on_disk(course)
    collect_lab(course, "tiny", downloads)

    assert on_disk(course) == first
    assert made_by(course) == {"alice": {"tiny.ipynb": "alice"}, "bob": {"tiny.ipynb": "bob"}}
    assert (course.submitted / "alice" / "lab2" / "lab2.ipynb").read_text() == "other lab"
    assert not list(course.root.glob(TEMP_PREFIX + "*"))


def test_one_collection_at_a_time(course, tmp_path):
    downloads = tmp_path / "downloads"
    make_zip(downloads / "lms.zip", [("alice_tiny.ipynb", notebook("alice"))])
    course.submitted.mkdir()
    fd = os.open(course.submitted, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(CourseError, match="another `autograder collect` is running"):
            collect_lab(course, "tiny", downloads)
    finally:
        os.close(fd)
    assert collect_lab(course, "tiny", downloads).students == ["alice"]


# ------------------------------------------------------------------ the presets, as the LMSs name files


def test_canvas_download(course, tmp_path):
    downloads = tmp_path / "downloads"
    make_zip(
        downloads / "submissions.zip",
        [
            ("smithalice_1201_88001_tiny.ipynb", notebook("alice")),
            ("jonesbob_LATE_1202_88002_tiny.ipynb", notebook("bob")),  # today's Canvas
            ("doe-carol-late_1203_88003_tiny.ipynb", notebook("carol")),  # older Canvas
            (
                "leedan_1204_88004_lab.zip",
                zip_bytes(
                    [
                        ("lab/tiny.ipynb", notebook("dan")),
                        ("__MACOSX/lab/._tiny.ipynb", b"\x00\x05\x16\x07 resource fork"),
                        ("lab/.ipynb_checkpoints/tiny-checkpoint.ipynb", notebook("dan-checkpoint")),
                        ("lab/data.csv", b"1,2\n"),
                    ]
                ),
            ),
            ("kimeve_1205_text.html", b"<p>my answer</p>"),
            ("parkfrank_1206_88006_report.pdf", b"%PDF-1.4"),
            ("=cmd_1207_88007_tiny.ipynb", notebook("gina")),  # the name part is not the id
        ],
    )
    (downloads / "ohhenry_1208_88008_tiny.ipynb").write_bytes(notebook("henry"))  # extracted by the TA
    report = collect_lab(course, "tiny", downloads, layout="canvas")

    assert made_by(course) == {
        "1201": {"tiny.ipynb": "alice"},
        "1202": {"tiny.ipynb": "bob"},
        "1203": {"tiny.ipynb": "carol"},
        "1204": {"tiny.ipynb": "dan"},
        "1207": {"tiny.ipynb": "gina"},
        "1208": {"tiny.ipynb": "henry"},
    }
    assert {r.student: r.note for r in report.collected if r.note} == {"1202": "late (Canvas)", "1203": "late (Canvas)"}
    assert all(r.timestamp is None for r in report.collected)  # Canvas's zip dates are when the zip was made
    assert not list(course.submitted.rglob("timestamp.txt"))
    why = reasons(report)
    assert why["submissions.zip: kimeve_1205_text.html"].startswith("not Canvas's naming")
    assert why["submissions.zip: parkfrank_1206_88006_report.pdf"] == "not a notebook (ignored)"
    assert_nothing_stray(course, tmp_path)


def test_moodle_download(course, tmp_path):
    downloads = tmp_path / "downloads"
    make_zip(
        downloads / "DL-tiny-4242.zip",
        [
            (info("Alice Smith_501_assignsubmission_file_/tiny.ipynb", date=(2024, 3, 1, 9, 0, 0)), notebook("alice")),
            (info("Bob Jones_502_assignsubmission_file_tiny.ipynb", date=(2024, 3, 2, 9, 0, 0)), notebook("bob")),
            (
                "Chloé Martin-Durand_503_assignsubmission_file_/work.zip",
                zip_bytes([("work/sub/tiny.ipynb", notebook("chloe"))]),
            ),
            ("Dan Lee_504_assignsubmission_onlinetext_onlinetext.html", b"<p>text</p>"),
            ("Erin O'Neil_505_assignsubmission_file_/notes.txt", b"notes"),
            ("readme.txt", b"not from a student"),
        ],
    )
    report = collect_lab(course, "tiny", downloads, layout="moodle")

    assert made_by(course) == {
        "501": {"tiny.ipynb": "alice"},
        "502": {"tiny.ipynb": "bob"},
        "503": {"tiny.ipynb": "chloe"},
    }
    coursedir = course.coursedir()
    assert coursedir.get_existing_timestamp(str(course.submitted / "501" / "tiny")) == datetime(2024, 3, 1, 9)
    why = reasons(report)
    assert why["DL-tiny-4242.zip: Dan Lee_504_assignsubmission_onlinetext_onlinetext.html"].startswith(
        "Moodle's onlinetext submission"
    )
    assert why["DL-tiny-4242.zip: Erin O'Neil_505_assignsubmission_file_/notes.txt"] == "not a notebook (ignored)"
    assert why["DL-tiny-4242.zip: readme.txt"].startswith("not Moodle's naming")


def test_plain_download_and_the_configured_default(course, tmp_path):
    downloads = tmp_path / "downloads"
    make_zip(
        downloads / "export.zip",
        [
            ("submitted/alice/tiny/tiny.ipynb", notebook("alice")),  # nbgrader's own layout
            ("bob/tiny/tiny.ipynb", notebook("bob")),
            ("carol/lab2/lab2_cross_entropy.ipynb", notebook("carol")),  # another lab: not 'carol'
            ("downloads/dan_tiny.ipynb", notebook("dan")),  # under one folder
            ("a/b/erin_tiny.ipynb", notebook("erin")),  # deeper: not a name
        ],
    )
    (downloads / "frank_tiny.ipynb").write_bytes(notebook("frank"))
    report = collect_lab(course, "tiny", downloads)

    assert made_by(course) == {
        "alice": {"tiny.ipynb": "alice"},
        "bob": {"tiny.ipynb": "bob"},
        "dan": {"tiny.ipynb": "dan"},
        "frank": {"tiny.ipynb": "frank"},
    }
    why = reasons(report)
    assert (
        why["export.zip: carol/lab2/lab2_cross_entropy.ipynb"]
        == "not in a tiny/ folder (<student>/tiny/<notebook>.ipynb)"
    )
    assert why["export.zip: a/b/erin_tiny.ipynb"].startswith("not in a tiny/ folder")

    canvas = configured(course, 'c.Collect.layout = "canvas"')
    make_zip(tmp_path / "canvas" / "submissions.zip", [("smithalice_77_1_tiny.ipynb", notebook("canvas"))])
    assert collect_lab(canvas, "tiny", tmp_path / "canvas").layout == "canvas"
    assert made_by(canvas)["77"] == {"tiny.ipynb": "canvas"}


# ------------------------------------------------------------------ the command


def run_cli(*args, cwd):
    env = dict(os.environ, COLUMNS="250")
    return subprocess.run([AUTOGRADER, *args], cwd=cwd, capture_output=True, text=True, env=env)


def test_the_command_prints_what_it_collected_and_skipped(course, tmp_path):
    downloads = tmp_path / "downloads"
    make_zip(
        downloads / "lms.zip",
        [
            ("alice_tiny.ipynb", notebook("alice")),
            ("../evil_tiny.ipynb", b"{}"),
            ("[bold]x_tiny.ipynb", b"{}"),
            ("\x1b[2Jansi_tiny.ipynb", b"{}"),
        ],
    )
    done = run_cli("collect", "tiny", str(downloads), cwd=course.root)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Collected (plain naming)" in out and "alice" in out and "2024-05-01 12:00:00" in out
    assert "Skipped" in out and "a '..' component in its path" in out
    assert "student id '[bold]x' refused" in out  # shown as text, not as markup
    assert "\x1b[2J" not in out and "control characters" in out  # no escape sequence reaches the terminal
    assert "collected 1 submission(s)" in out and "3 file(s) skipped" in out


def test_the_command_fails_clearly_when_nothing_can_be_collected(course, tmp_path):
    downloads = tmp_path / "downloads"
    make_zip(downloads / "lms.zip", [("../evil_tiny.ipynb", b"{}"), ("=cmd_tiny.ipynb", b"{}")])
    done = run_cli("collect", "tiny", str(downloads), cwd=course.root)
    assert done.returncode == 1
    assert "nothing collected" in done.stdout and "a '..' component" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr

    for args, message in (
        (["collect", "tiny", str(tmp_path / "none")], "no download folder"),
        (["collect", "tiny", str(downloads), "--layout", "blackboard"], "expected one of"),
        (["collect", "nolab", str(downloads)], "no lab 'nolab'"),
    ):
        done = run_cli(*args, cwd=course.root)
        assert done.returncode == 1 and message in done.stdout, done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr
    (tmp_path / "empty").mkdir()
    done = run_cli("collect", "tiny", str(tmp_path / "empty"), cwd=course.root)
    assert done.returncode == 1 and "no files to collect" in done.stdout


def test_a_killed_collection_leaves_old_or_new_submissions_and_a_rerun_completes(course, tmp_path):
    """SIGKILL while the temporary files are written, then while folders are swapped in: each student
    has their old or their new submission, never half; the rerun collects everyone, once."""
    students = [f"s{i:04d}" for i in range(4000)]
    for who in students:  # last week's collection
        folder = course.submitted / who / "tiny"
        folder.mkdir(parents=True)
        (folder / "tiny.ipynb").write_bytes(b"old " + who.encode())
        (folder / "old-only.ipynb").write_bytes(b"old")
        (folder / "timestamp.txt").write_text("2024-01-01 00:00:00.000000 UTC")
    old = {"tiny.ipynb", "old-only.ipynb", "timestamp.txt"}
    template = notebook("s-class")
    new = {who: template.replace(b"s-class", who.encode()) for who in students}
    downloads = tmp_path / "downloads"
    make_zip(downloads / "lms.zip", [(f"{who}_tiny.ipynb", new[who]) for who in students])

    def state() -> dict[str, str]:
        seen = {}
        for who in students:
            folder = course.submitted / who / "tiny"
            names = {p.name for p in folder.iterdir()}
            if names == old:
                assert (folder / "tiny.ipynb").read_bytes() == b"old " + who.encode()
                seen[who] = "old"
            else:
                assert names == {"tiny.ipynb", "timestamp.txt"}, (who, names)
                assert (folder / "tiny.ipynb").read_bytes() == new[who]
                assert (folder / "timestamp.txt").read_text() == "2024-05-01 12:00:00.000000 UTC"
                seen[who] = "new"
        return seen

    def kill_when(ready) -> None:
        proc = subprocess.Popen(
            [AUTOGRADER, "collect", "tiny", str(downloads)],
            cwd=course.root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while not ready():
            assert proc.poll() is None, "the collection ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    # 1. killed while extracting: nothing placed, a temporary folder left behind.
    kill_when(lambda: any(course.root.glob(TEMP_PREFIX + "*")))
    assert set(state().values()) == {"old"}
    # 2. killed while swapping folders in: some old, some new, none half.
    kill_when(lambda: not (course.submitted / students[50] / "tiny" / "old-only.ipynb").exists())
    halfway = state()
    assert halfway[students[50]] == "new" and halfway[students[-1]] == "old", "killed too late to test anything"
    print(f"killed with {list(halfway.values()).count('new')} of {len(students)} swapped in")
    # 3. the rerun: everyone new, no one twice, nothing temporary left.
    done = run_cli("collect", "tiny", str(downloads), cwd=course.root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(state().values()) == {"new"}
    assert sorted(p.name for p in course.submitted.iterdir()) == students
    assert not list(course.root.glob(TEMP_PREFIX + "*"))
    assert f"collected {len(students)} submission(s)" in done.stdout

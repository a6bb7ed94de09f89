"""roster.py: `autograder roster import FILE.csv` writes nbgrader's Student rows as `nbgrader db student import`
does, refuses a bad file whole (nothing written), and `grade --student` refuses an id that is neither on the
roster nor submitted instead of adding it. Real SQLite gradebooks, real nbgrader, the real CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from autograder.course import CourseError
from autograder.grading.batch import grade_lab
from autograder.grading.roster import import_roster, read_roster, unknown_students
from conftest import new_course

AUTOGRADER = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "autograder")
NBGRADER = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "nbgrader")
ROSTER = (
    "id,first_name,last_name,email,lms_user_id\n"
    "ada,Ada,Lovelace,ada@example.org,1001\n"
    'ben,"Benjamin ""Ben""",Franklin,ben@example.org,1002\n'
    'carl,=HYPERLINK("http://evil.example"),Gauss,,1003\n'
)


def students_of(course) -> dict[str, dict]:
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        return {
            s.id: {k: s.to_dict()[k] for k in ("first_name", "last_name", "email", "lms_user_id")} for s in gb.students
        }


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_the_import_writes_what_nbgraders_own_import_writes(tmp_path):
    ours, theirs = new_course(tmp_path / "ours"), new_course(tmp_path / "theirs")
    roster = write(tmp_path / "roster.csv", ROSTER)
    report = import_roster(ours, roster)
    assert (report.added, report.updated) == (["ada", "ben", "carl"], [])
    done = subprocess.run(
        [NBGRADER, "db", "student", "import", str(roster)], cwd=theirs.root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert students_of(ours) == students_of(theirs)
    assert students_of(ours)["ben"] == {
        "first_name": 'Benjamin "Ben"',
        "last_name": "Franklin",
        "email": "ben@example.org",
        "lms_user_id": "1002",
    }
    assert students_of(ours)["carl"]["first_name"] == '=HYPERLINK("http://evil.example")'  # a name, stored as written


def test_an_empty_cell_keeps_what_the_gradebook_has_and_a_second_import_updates(tmp_path):
    course = new_course(tmp_path)
    import_roster(course, write(tmp_path / "first.csv", ROSTER))
    report = import_roster(
        course, write(tmp_path / "second.csv", "id,email,last_name\nada,,Byron\ndora,dora@example.org,\n")
    )
    assert (report.added, report.updated) == (["dora"], ["ada"])
    assert students_of(course)["ada"] == {
        "first_name": "Ada",
        "last_name": "Byron",
        "email": "ada@example.org",
        "lms_user_id": "1001",
    }


def test_excels_byte_order_mark_and_blank_lines_are_fine(tmp_path):
    rows = read_roster(write(tmp_path / "bom.csv", b"\xef\xbb\xbfid,first_name\r\nada,Ada\r\n\r\nben,Ben\r\n"))
    assert rows == [{"id": "ada", "first_name": "Ada"}, {"id": "ben", "first_name": "Ben"}]


BAD_FILES = [
    ("first_name\nAda\n", "the header needs an 'id' column", "no-id-column"),
    ("id,emial\nada,a@example.org\n", "unknown column(s) 'emial'", "misspelt-column"),
    ("id,email,email\nada,a,b\n", "column(s) email given twice", "doubled-column"),
    ("id,email\nada,a@example.org\nben\n", "line 3: 1 values for 2 columns", "short-row"),
    ("id,email\nada,a@example.org\nada,b@example.org\n", "line 3: 'ada' is already on line 2", "same-id-twice"),
    ("id\n../../etc\n", "line 2: the id '../../etc' is not a usable student id", "path-id"),
    ("id\n=cmd|' /C calc'!A0\n", "line 2: the id", "formula-id"),
    ("id,first_name\nada,\n,Ben\n", "line 3: no id", "empty-id"),
    ('id,first_name\nada,"Ada\nLovelace"\n', "line 2: first_name holds a control character", "newline-in-name"),
    ("id,last_name\nada," + "x" * 129 + "\n", "line 2: last_name has 129 characters, over 128", "too-long"),
    (b"id,first_name\nada,\xe9\n", "not UTF-8", "latin-1"),
]


@pytest.mark.parametrize(("text", "error"), [b[:2] for b in BAD_FILES], ids=[b[2] for b in BAD_FILES])
def test_a_bad_file_is_refused_whole_naming_its_line(tmp_path, text, error):
    course = new_course(tmp_path)
    import_roster(course, write(tmp_path / "good.csv", "id,first_name\nzoe,Zoe\n"))
    bad = write(tmp_path / "bad.csv", text)
    with pytest.raises(CourseError) as raised:
        import_roster(course, bad)
    assert error in str(raised.value)
    assert students_of(course) == {"zoe": {"first_name": "Zoe", "last_name": None, "email": None, "lms_user_id": None}}


def test_a_missing_file_is_a_plain_error(tmp_path):
    with pytest.raises(CourseError, match="no such file"):
        read_roster(tmp_path / "nope.csv")


def test_the_cli_imports_and_says_what_changed(tmp_path):
    course = new_course(tmp_path / "course")
    roster = write(tmp_path / "roster.csv", ROSTER)
    done = subprocess.run(
        [AUTOGRADER, "roster", "import", str(roster)], cwd=course.root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 added, 0 updated" in done.stdout
    bad = write(tmp_path / "bad.csv", "id,emial\nada,x\n")
    done = subprocess.run([AUTOGRADER, "roster", "import", str(bad)], cwd=course.root, capture_output=True, text=True)
    assert done.returncode == 1 and "unknown column(s) 'emial'" in done.stdout and "Traceback" not in done.stderr


def test_grading_a_student_neither_submitted_nor_on_the_roster_is_refused_and_adds_nobody(tiny_course, tmp_path):
    course = new_course(tmp_path / "course")
    for folder in ("source", "release", "private"):
        shutil.copytree(tiny_course.root / folder, course.root / folder)
    shutil.copy(tiny_course.root / "gradebook.db", course.root / "gradebook.db")
    import_roster(course, write(tmp_path / "roster.csv", "id\nada\n"))
    (course.submitted / "ben" / "tiny").mkdir(parents=True)
    assert unknown_students(course, "tiny", ["ada", "ben", "bobb", "../x"]) == ["bobb"]  # '../x': grade_lab's to refuse
    with pytest.raises(CourseError, match="'bobb': no submission in .* and not on the roster"):
        grade_lab(course, "tiny", ["ada", "bobb"])
    done = subprocess.run(
        [AUTOGRADER, "grade", "tiny", "--student", "bobb", "--student", "ann"],
        cwd=course.root,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "'bobb', 'ann': no submission" in done.stdout, done.stdout + done.stderr
    assert set(students_of(course)) == {"ada"}
    assert not (course.autograded / "bobb").exists()

"""grading/exports: every `autograder export --format` reads the gradebook's scores (a TA's manual score
stands, the late penalty nbgrader recorded is taken off), keeps failed and missing runs apart from zeros,
and matches its format's documented layout; spreadsheet_safe (the csv's rule) for every text cell.

One class is graded for real (tiny lab, sandboxed kernels, SQLite): honest, a sum-for-mean bug that a TA
then scores by hand through nbgrader's Gradebook API as formgrader does, a file that is not JSON, a
student who raises the hidden test cell's own source (In[-1]) from their function, and one on the
roster who never submitted. Then a regrade with --force, a late penalty as nbgrader's
AssignLatePenalties stores it, and every format written.
"""

from __future__ import annotations

import csv
import html
import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
from nbgrader.api import Gradebook

from autograder.authoring.pipeline import build_lab
from autograder.course import CourseError
from autograder.demo import DemoStudent, make_submission
from autograder.grading.batch import grade_lab
from autograder.grading.export import spreadsheet_safe
from autograder.grading.exports import export_grades
from autograder.grading.exports.scores import read_scores
from autograder.grading.feedback import write_feedback
from autograder.grading.results import load_result
from autograder.grading.roster import import_roster
from conftest import new_course
from notebooks import mean_square_lab, write_lab

LAB = "tiny"
AUTOGRADER = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "autograder")
EVIL_NAME = '=HYPERLINK("http://evil.example","x")'
ROSTER = (
    "id,first_name,last_name,email,lms_user_id\n"
    "honest,Ada,Lovelace,ada@example.org,1001\n"
    f'summer,"{EVIL_NAME.replace(chr(34), chr(34) * 2)}",Sum,sum@example.org,1002\n'
    "garbage,,,,1003\n"
    "leaker,Lee,King,lee@example.org,1004\n"
    "absent,Abe,Sent,abe@example.org,1005\n"
)
HIDDEN_SOURCE = ("ms_hidden_x", "-1.0, -3.0, 2.0, 0.5", "mean_square_negative', mean_square(", "[3.0, 0.5, 4.0]")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    course = new_course(root / "course")
    write_lab(course.root, LAB, mean_square_lab())
    build_lab(course, LAB)
    roster = root / "roster.csv"
    roster.write_text(ROSTER)
    import_roster(course, roster)
    for student in (
        DemoStudent("honest", "correct"),
        DemoStudent(
            "summer", "sum for mean", replace={"mean_square": "def mean_square(x):\n    return (x ** 2).sum()"}
        ),
        DemoStudent("garbage", "not JSON", raw_file="{ not json"),
        DemoStudent(
            "leaker",
            "raises the cell's source",
            replace={"mean_square": "def mean_square(x):\n    raise ValueError(In[-1].replace(chr(10), ' | '))"},
        ),
    ):
        make_submission(course, LAB, student)
    first = {r.student: r for r in grade_lab(course, LAB, workers=2)}
    # The TA's word, written as formgrader's API handler writes it (manual_score, needs_manual_grade False).
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        grade = gb.find_grade("mean_square_tests", LAB, LAB, "summer")
        grade.manual_score = 2.0
        grade.needs_manual_grade = False
        gb.db.commit()
    regraded = grade_lab(course, LAB, ["summer"], force=True)[0]
    # A late penalty where nbgrader's AssignLatePenalties keeps it (SubmittedNotebook.late_submission_penalty).
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        gb.find_submission_notebook(LAB, LAB, "honest").late_submission_penalty = 0.5
        gb.db.commit()
    out = root / "out"
    reports = {
        "csv": export_grades(course, "csv", out / "grades.csv"),
        "canvas": export_grades(course, "canvas", out / "canvas.csv"),
        "canvas_cells": export_grades(course, "canvas", out / "canvas-cells.csv", per_cell=True),
        "moodle": export_grades(course, "moodle", out / "moodle.csv", moodle_id="username"),
        "gradescope": export_grades(course, "gradescope", out / "gradescope"),
    }
    return course, first, regraded, reports, out


def dict_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open(newline="", encoding="utf-8")))


def test_the_class_graded_as_the_story_says(exported):
    _, first, regraded, _, _ = exported
    assert {s: (r.status, r.score) for s, r in first.items() if s != "garbage"} == {
        "honest": ("graded", 3.0),
        "summer": ("graded", 1.0),
        "leaker": ("graded", 1.0),
    }
    assert first["garbage"].status == "failed" and first["garbage"].failure == "not valid JSON"
    assert (regraded.status, regraded.score) == ("graded", 1.0)  # the autograder's own verdict is unchanged


def test_a_regrade_keeps_the_tas_score_without_flagging_the_cell(exported):
    course = exported[0]
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        grade = gb.find_grade("mean_square_tests", LAB, LAB, "summer")
        assert (grade.auto_score, grade.manual_score, grade.needs_manual_grade) == (0.0, 2.0, False)
        assert gb.find_submission(LAB, "summer").score == 3.0  # nbgrader's own sum: manual over auto
        assert not gb.find_grade("outer_tests", LAB, LAB, "summer").needs_manual_grade
        assert all(
            g.needs_manual_grade for g in gb.find_submission_notebook(LAB, LAB, "garbage").grades
        )  # failed: still a TA's


def test_the_reader_holds_the_gradebooks_word(exported):
    scores = read_scores(exported[0])
    summer, honest = scores.of(LAB, "summer"), scores.of(LAB, "honest")
    assert (summer.score, summer.by_ta, summer.score_after_penalty) == (3.0, True, 3.0)
    assert load_result(exported[0].autograded, "summer", LAB).score == 1.0  # result.json keeps the autograder's
    assert (honest.score, honest.penalty, honest.score_after_penalty) == (3.0, 0.5, 2.5)
    assert (scores.of(LAB, "garbage").status, scores.of(LAB, "garbage").score) == ("failed", None)
    assert (scores.of(LAB, "absent").status, scores.of(LAB, "absent").score) == ("missing", None)
    assert scores.of(LAB, "honest").student.sortable_name == "Lovelace, Ada"


def test_csv_keeps_its_columns_and_reads_the_score_from_the_gradebook(exported):
    rows = {r["student"]: r for r in dict_rows(exported[4] / "grades.csv")}
    assert list(rows["honest"])[:8] == [
        "student",
        "lab",
        "status",
        "failure",
        "score",
        "max_score",
        "sandboxed",
        "graded_seconds",
    ]
    assert rows["summer"]["score"] == "3"  # the TA's, not result.json's 1
    assert rows["garbage"]["status"].startswith("failed: ") and rows["garbage"]["score"] == ""
    assert rows["absent"]["status"] == "missing" and rows["absent"]["score"] == ""


# Canvas's gradebook import, as its Instructor Guide documents it ("How do I import grades in the
# Gradebook?", https://community.canvaslms.com/t5/Instructor-Guide/How-do-I-import-grades-in-the-Gradebook/ta-p/807,
# and its own export's layout): these columns first, in this order, then one column per assignment; an
# optional "Points Possible" row under the header; a grade is a number, or empty for no grade.
CANVAS_SCHEMA = {
    "identity_columns": ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"],
    "points_possible_row": "Points Possible",  # first cell, stripped
    "grade": re.compile(r"^(|-?\d+(\.\d+)?)$"),
    "matched_by_one_of": ["ID", "SIS User ID", "SIS Login ID"],
}


def check_canvas(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    rows = list(csv.reader(path.open(newline="", encoding="utf-8")))
    header, points, students = rows[0], rows[1], rows[2:]
    assert header[:5] == CANVAS_SCHEMA["identity_columns"]
    assert points[0].strip() == CANVAS_SCHEMA["points_possible_row"]
    for row in [points[5:], *(r[5:] for r in students)]:
        assert all(CANVAS_SCHEMA["grade"].match(v) for v in row), row
    for row in students:
        assert len(row) == len(header)
        assert any(row[header.index(c)] for c in CANVAS_SCHEMA["matched_by_one_of"]), row
    return header, {row[2]: row for row in students}


def test_canvas_matches_its_documented_layout_with_empty_grades_for_failed_and_missing(exported):
    header, by_sis_id = check_canvas(exported[4] / "canvas.csv")
    assert header[5:] == [LAB]
    assert by_sis_id["summer"][5] == "3" and by_sis_id["honest"][5] == "2.5"  # a TA's score; after the penalty
    assert by_sis_id["garbage"][5] == "" and by_sis_id["absent"][5] == ""  # no grade, never a 0
    assert by_sis_id["honest"][:2] == ["Lovelace, Ada", "1001"]
    assert by_sis_id["garbage"][0] == "garbage"  # no name on the roster: the id
    report = exported[3]["canvas"]
    assert {(s, status.split(":")[0]) for s, _, status in report.not_scored} == {
        ("garbage", "failed"),
        ("absent", "missing"),
    }


def test_canvas_per_cell_columns_hold_each_cells_gradebook_score(exported):
    header, by_sis_id = check_canvas(exported[4] / "canvas-cells.csv")
    assert header[5:] == [LAB, f"{LAB}: mean_square_tests", f"{LAB}: outer_tests"]
    with open(exported[4] / "canvas-cells.csv", newline="") as handle:
        points = list(csv.reader(handle))[1]
    assert points[5:] == ["3", "2", "1"]
    assert by_sis_id["summer"][5:] == ["3", "2", "1"]  # the TA's 2 on the mean, the autograder's 1 on outer
    assert by_sis_id["honest"][5:] == ["2.5", "2", "1"]  # cells before the lab's penalty
    assert by_sis_id["garbage"][5:] == ["", "", ""]


# Moodle's CSV grade import (https://docs.moodle.org/en/Grade_import): one column maps users ("Map from":
# email address, username or ID number, to useremail / username / useridnumber), each other column maps to
# a grade item, to a grade item's feedback, or is ignored; a grade is a number (empty: none given).
MOODLE_SCHEMA = {
    "identifier_columns": {"Email address", "Username", "ID number"},
    "grade": re.compile(r"^(|-?\d+(\.\d+)?)$"),
}


def check_moodle(path: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    rows = dict_rows(path)
    header = list(rows[0])
    assert header[0] in MOODLE_SCHEMA["identifier_columns"]
    identifiers = [r[header[0]] for r in rows]
    assert all(identifiers) and len(set(identifiers)) == len(identifiers)  # each row maps to one user
    for row in rows:
        for column in header[3:]:
            if not column.endswith("(feedback)"):
                assert MOODLE_SCHEMA["grade"].match(row[column]), (column, row)
    return header, {r[header[0]]: r for r in rows}


def test_moodle_matches_its_import_with_reasons_in_the_feedback_column(exported):
    header, rows = check_moodle(exported[4] / "moodle.csv")
    assert header == ["Username", "First name", "Last name", LAB, f"{LAB} (feedback)"]
    assert rows["summer"][LAB] == "3" and "includes a TA's score" in rows["summer"][f"{LAB} (feedback)"]
    assert rows["honest"][LAB] == "2.5" and "late penalty −0.5 of 3" in rows["honest"][f"{LAB} (feedback)"]
    assert rows["garbage"][LAB] == "" and rows["garbage"][f"{LAB} (feedback)"].startswith("failed: ")
    assert "not valid JSON" in rows["garbage"][f"{LAB} (feedback)"]
    assert (rows["absent"][LAB], rows["absent"][f"{LAB} (feedback)"]) == ("", "missing")


def test_moodle_refuses_students_it_could_not_match_and_writes_nothing(exported, tmp_path):
    target = tmp_path / "moodle.csv"
    with pytest.raises(
        CourseError, match=r"--moodle-id email: 1 student\(s\) have no email on the roster \('garbage'\)"
    ):
        export_grades(exported[0], "moodle", target, moodle_id="email")
    assert not target.exists()
    export_grades(exported[0], "moodle", target, moodle_id="idnumber", per_cell=True)
    header, rows = check_moodle(target)
    assert header[0] == "ID number" and rows["1002"][f"{LAB}: mean_square_tests"] == "2"


# Gradescope's results.json, as "Autograder Specifications" documents it
# (https://gradescope-autograders.readthedocs.io/en/latest/specs/, "Output format"): a top-level score
# (optional if every test has one), and tests with score, max_score, status, name, output, visibility.
FORMAT = {"enum": ["text", "html", "simple_format", "md", "ansi"]}
VISIBILITY = {"enum": ["hidden", "after_due_date", "after_published", "visible"]}
GRADESCOPE_TEST = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "score": {"type": "number"},
        "max_score": {"type": "number"},
        "status": {"enum": ["passed", "failed"]},
        "name": {"type": "string"},
        "name_format": FORMAT,
        "number": {"type": "string"},
        "output": {"type": "string"},
        "output_format": FORMAT,
        "tags": {"type": "array", "items": {"type": "string"}},
        "visibility": VISIBILITY,
        "extra_data": {"type": "object"},
    },
}
GRADESCOPE_RESULTS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "score": {"type": "number"},
        "execution_time": {"type": "number"},
        "output": {"type": "string"},
        "output_format": FORMAT,
        "test_output_format": FORMAT,
        "test_name_format": FORMAT,
        "visibility": VISIBILITY,
        "stdout_visibility": VISIBILITY,
        "extra_data": {"type": "object"},
        "tests": {"type": "array", "items": GRADESCOPE_TEST},
        "leaderboard": {"type": "array"},
    },
    "anyOf": [
        {"required": ["score"]},
        {"required": ["tests"], "properties": {"tests": {"items": {"required": ["score"]}}}},
    ],
}


def gradescope(exported, student: str) -> dict:
    return json.loads((exported[4] / "gradescope" / LAB / student / "results.json").read_text())


def test_gradescope_results_follow_the_spec_and_only_graded_runs_have_one(exported):
    folder = exported[4] / "gradescope"
    for path in folder.rglob("results.json"):
        jsonschema.validate(json.loads(path.read_text()), GRADESCOPE_RESULTS)
    assert {p.parent.name for p in folder.rglob("results.json")} == {"honest", "summer", "leaker"}
    index = {r["student"]: r for r in dict_rows(folder / "index.csv")}
    assert index["garbage"]["status"].startswith("failed: ") and index["garbage"]["results"] == ""
    assert (index["absent"]["status"], index["absent"]["score"]) == ("missing", "")
    assert index["honest"]["results"] == f"{LAB}/honest/results.json" and index["honest"]["score"] == "2.5"
    assert exported[3]["gradescope"].rows == 3


def test_gradescope_scores_are_the_gradebooks_and_the_tests_explain_them(exported):
    summer, honest = gradescope(exported, "summer"), gradescope(exported, "honest")
    assert summer["score"] == 3.0 and honest["score"] == 2.5
    tests = {t["name"]: t for t in summer["tests"]}
    assert tests["mean_square_tests"]["score"] == 2.0 and "set by a TA" in tests["mean_square_tests"]["output"]
    assert "score" not in tests["mean_square_tests: mean_square_negative"]  # the TA's score replaces the checks'
    assert tests["outer_tests: outer_values"]["score"] == 1.0 and tests["outer_tests: outer_values"]["max_score"] == 1.0
    assert "score" not in tests["outer_tests: outer_shape"]  # a public check earns nothing
    assert sum(t.get("score", 0) for t in honest["tests"]) == 3.0 and "late penalty" in honest["output"]


def test_gradescope_hides_hidden_checks_and_every_hidden_line(exported):
    raw = json.dumps(load_result(exported[0].autograded, "leaker", LAB).cells[0].to_dict())
    assert "ms_hidden_x" in raw  # the student's exception carried the hidden cell's source into result.json
    for student in ("honest", "summer", "leaker"):
        results = gradescope(exported, student)
        text = json.dumps(results)
        assert not [s for s in HIDDEN_SOURCE if s in text], student
        for test in results["tests"]:
            if test["name"].endswith(("mean_square_negative", "outer_values")):
                assert test["visibility"] == "after_published"
            elif test["name"].endswith(("mean_square_small", "outer_shape")):
                assert test["visibility"] == "visible"
    again = export_grades(exported[0], "gradescope", exported[4] / "gradescope-hidden", hidden_visibility="hidden")
    hidden = json.loads((again.output / LAB / "honest" / "results.json").read_text())
    assert {t["visibility"] for t in hidden["tests"] if t["name"].endswith("outer_values")} == {"hidden"}


def test_gradescope_messages_are_the_feedback_pages_own(exported):
    course = exported[0]
    write_feedback(course, LAB, ["leaker", "summer"])
    for student in ("leaker", "summer"):
        page = (course.feedback / student / LAB / f"{LAB}.html").read_text()
        checks = [t for t in gradescope(exported, student)["tests"] if ": " in t["name"] and "status" in t]
        assert checks
        for test in checks:
            assert html.escape(test["output"], quote=False) in page or test["output"] in ("passed", "failed"), test
    leaker = {t["name"]: t for t in gradescope(exported, "leaker")["tests"]}
    assert leaker["mean_square_tests: mean_square_negative"]["output"].endswith("raised ValueError")


def test_a_stale_results_json_goes_when_its_run_fails_and_a_foreign_folder_is_refused(exported, tmp_path):
    course = exported[0]
    target = tmp_path / "gs"
    export_grades(course, "gradescope", target)
    stale = target / LAB / "garbage" / "results.json"
    stale.parent.mkdir(parents=True)
    stale.write_text('{"score": 0}')
    export_grades(course, "gradescope", target)
    assert not stale.exists()
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(CourseError, match="not an earlier Gradescope export"):
        export_grades(course, "gradescope", foreign)
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]


def test_names_that_are_formulas_are_quoted_in_every_spreadsheet(exported):
    out = exported[4]
    for name in ("canvas.csv", "canvas-cells.csv", "moodle.csv", "grades.csv", "gradescope/index.csv"):
        for row in csv.reader((out / name).open(newline="", encoding="utf-8")):
            assert not [c for c in row if c.startswith(FORMULA_STARTS)], (name, row)
    _, by_sis_id = check_canvas(out / "canvas.csv")
    assert by_sis_id["summer"][0] == spreadsheet_safe(f"Sum, {EVIL_NAME}")
    _, rows = check_moodle(out / "moodle.csv")
    assert rows["summer"]["First name"] == "'" + EVIL_NAME


def test_a_failed_run_a_ta_scored_by_hand_is_graded_by_the_ta(exported, tmp_path):
    course = exported[0]
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        for grade in gb.find_submission_notebook(LAB, LAB, "garbage").grades:
            grade.manual_score, grade.needs_manual_grade = 1.0, False
        gb.db.commit()
    try:
        garbage = read_scores(course).of(LAB, "garbage")
        assert (garbage.status, garbage.score) == ("graded", 2.0)
        assert garbage.status_text.startswith("graded by a TA (failed: ")
    finally:
        with Gradebook(course.db_url, course.coursedir().course_id) as gb:
            for grade in gb.find_submission_notebook(LAB, LAB, "garbage").grades:
                grade.manual_score, grade.needs_manual_grade = None, True
            gb.db.commit()


def test_the_cli_writes_each_format_and_refuses_an_unknown_one(exported, tmp_path):
    course = exported[0]
    for fmt, name in (("canvas", "c.csv"), ("moodle", "m.csv"), ("gradescope", "g"), ("csv", "x.csv")):
        extra = ["--moodle-id", "username"] if fmt == "moodle" else []
        done = subprocess.run(
            [AUTOGRADER, "export", "--format", fmt, "--output", str(tmp_path / name), *extra],
            cwd=course.root,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "2 grade(s) left empty (not a 0)" in done.stdout and "absent / tiny: missing" in done.stdout
        assert (tmp_path / name).exists()
    done = subprocess.run(
        [AUTOGRADER, "export", "--format", "blackboard"], cwd=course.root, capture_output=True, text=True
    )
    assert (
        done.returncode == 1 and "--format blackboard: expected one of csv, canvas, moodle, gradescope" in done.stdout
    )


def test_the_grades_table_shows_the_gradebooks_score(exported):
    from rich.console import Console

    from autograder.grading.exports.scores import read_lab_scores
    from autograder.grading.table import results_table

    course = exported[0]
    results = [load_result(course.autograded, s, LAB) for s in ("honest", "summer", "garbage")]
    console = Console(record=True, width=200)
    console.print(results_table(results, recorded=read_lab_scores(course, LAB)))
    lines = {line.split("│")[1].strip(): line for line in console.export_text().splitlines() if line.count("│") > 2}
    assert "3 / 3 (TA)" in lines["summer"]  # result.json still says 1
    assert "- / 3" in lines["garbage"] and "3 / 3" in lines["honest"]


def test_the_feedback_page_shows_the_tas_score(exported):
    """The TA's 2 on mean_square_tests stands on the student's page too: the cell and the total."""
    course = exported[0]
    write_feedback(course, LAB, ["summer"])
    page = (course.feedback / "summer" / LAB / f"{LAB}.html").read_text(encoding="utf-8")
    total = re.search(r'<td class="score">(.*?)</td>', page)
    assert total is not None and html.unescape(total[1]) == "3 / 3"  # result.json still says 1
    rows = dict(re.findall(r'<td><a href="#[^"]*">([^<]*)</a></td><td class="num">([^<]*)</td>', page))
    assert rows == {"mean_square_tests": "2 / 2", "outer_tests": "1 / 1"}

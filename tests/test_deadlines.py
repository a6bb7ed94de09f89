"""Deadlines, extensions and the late policy, against a real SQLite gradebook.

The tiny lab is built once with a due date (Thu 10 Dec 2026, 23:59 Europe/Dublin = 23:59 UTC in
winter). Each test records submissions the way `autograder grade` does: nbgrader's timestamp.txt in
submitted/<student>/tiny/, read by batch.submission_timestamp, then gradebook.record_result, which
sets nbgrader's Assignment.duedate, SubmittedAssignment.extension and
SubmittedNotebook.late_submission_penalty. Results are made here rather than by kernels, except in
the one end-to-end test, so that each boundary costs milliseconds. Every test uses its own
students, since they share the gradebook.
"""

from __future__ import annotations

import copy
import csv
from datetime import datetime, timedelta

import nbformat
import pytest
from nbgrader.api import Gradebook
from nbgrader.plugins import CsvExportPlugin
from rich.console import Console
from traitlets import TraitError

from autograder.authoring.pipeline import build_lab
from autograder.authoring.release_metadata import DUE_DATE_CELL
from autograder.course import Course, CourseError
from autograder.grading.batch import submission_timestamp
from autograder.grading.deadlines import LabDeadlines, duration_text, lateness_of_lab
from autograder.grading.export import export_csv
from autograder.grading.feedback import write_feedback
from autograder.grading.gradebook import apply_deadlines, max_scores, record_result
from autograder.grading.late_policy import LatePolicy
from autograder.grading.results import CellScore, Result, save_result
from autograder.grading.table import results_table
from autograder.settings import DueDateError, parse_due_date
from conftest import new_course
from notebooks import mean_square_lab, write_lab

LAB = "tiny"
DUE = "2026-12-10 23:59 Europe/Dublin"  # GMT in December: 23:59 UTC
DUE_UTC = datetime(2026, 12, 10, 23, 59)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Course:
    course = new_course(tmp_path_factory.mktemp("deadlines-course"))
    with open(course.root / "nbgrader_config.py", "a") as config:
        config.write(f"\nc.Deadlines.due = {{{LAB!r}: {DUE!r}}}\n")
    course = Course.load(course.root)
    write_lab(course.root, LAB, mean_square_lab())
    build_lab(course, LAB)
    return course


def with_policy(course: Course, **policy) -> Course:
    """The course with c.LatePolicy.* (and c.Deadlines.* given as deadlines_<name>) set in memory."""
    config = copy.deepcopy(course.config)  # Config(config) would share its sections with the module's course
    for name, value in policy.items():
        if name.startswith("deadlines_"):
            setattr(config.Deadlines, name.removeprefix("deadlines_"), value)
        else:
            setattr(config.LatePolicy, name, value)
    return Course(course.root, config)


def submit(course: Course, student: str, when: str, score: float = 3.0) -> Result:
    """A graded submission of `student` at `when` (nbgrader's timestamp.txt text), recorded as
    `autograder grade` records it: every point of the tiny lab's 3 is scored up to `score`."""
    folder = course.submitted / student / LAB
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "timestamp.txt").write_text(when + "\n")
    cells, left = [], score
    for notebook, grades in max_scores(course, LAB).items():
        for grade_id, points in sorted(grades.items()):
            earned = min(points, left)
            left -= earned
            cells.append(CellScore(notebook, grade_id, earned, points))
    result = Result(student, LAB, "graded", score=score, max_score=3.0, cells=cells)
    record_result(course, result, timestamp=submission_timestamp(course, student, LAB))
    save_result(course.autograded, result)
    return result


def penalties(course: Course, student: str) -> tuple[float, list[float | None], timedelta | None]:
    """What nbgrader's gradebook holds: seconds late, each notebook's late_submission_penalty, the extension."""
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        submission = gb.find_submission(LAB, student)
        return (
            submission.total_seconds_late,
            [nb.late_submission_penalty for nb in submission.notebooks],
            submission.extension,
        )


def write_extensions(course: Course, *rows: str, header: str = "student,lab,due,reason") -> None:
    (course.root / "extensions.csv").write_text("\n".join([header, *rows]) + "\n")


@pytest.fixture
def no_extensions(built):
    yield
    (built.root / "extensions.csv").unlink(missing_ok=True)


# ---- due dates as written -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        (DUE, DUE_UTC),  # Dublin in winter: GMT
        ("2026-07-10 23:59 Europe/Dublin", datetime(2026, 7, 10, 22, 59)),  # Irish summer time, UTC+1
        ("2026-12-10 23:59:30 UTC", datetime(2026, 12, 10, 23, 59, 30)),
        ("2026-12-10T23:59-05:00", datetime(2026, 12, 11, 4, 59)),
        ("2026-12-10 23:59 Asia/Kolkata", datetime(2026, 12, 10, 18, 29)),
        ("2026-12-10T23:59Z", DUE_UTC),
    ],
)
def test_due_dates_are_read_in_their_own_zone(text, utc):
    assert parse_due_date(text).utc == utc


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("2026-12-10 23:59", "has no time zone (it would be read as UTC)"),
        ("2026-12-10 23:59 Europe/Dubln", "'Europe/Dubln' is not a time zone"),
        ("2026-12-10 23:59 ../../../etc/passwd", "is not a time zone"),
        ("2026-12-10 23:59 +25:00", "is not a time zone"),
        ("2026-02-30 23:59 UTC", "is not a real date and time"),
        ("next friday", "is not a date and time"),
        ("2026-03-29 01:30 Europe/Dublin", "does not exist in Europe/Dublin (clocks go forward"),
        ("2026-10-25 01:30 Europe/Dublin", "happens twice in Europe/Dublin"),
    ],
)
def test_a_due_date_that_needs_a_guess_is_refused(text, says):
    with pytest.raises(DueDateError, match=None) as raised:
        parse_due_date(text)
    assert says in str(raised.value)


def test_the_release_shows_the_due_date_and_the_gradebook_holds_it(built):
    nb = nbformat.read(built.release / LAB / f"{LAB}.ipynb", as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.metadata[DUE_DATE_CELL] is True
    assert first.source == "**Due: Thu 10 Dec 2026, 23:59 Europe/Dublin (2026-12-10 23:59 UTC).**"
    assert "nbgrader" not in first.metadata  # nothing grades, restores or checks it
    assert nb.cells[1].source == "# Tiny lab"  # the lab's own cells follow, unchanged
    with Gradebook(built.db_url, built.coursedir().course_id) as gb:
        assert gb.find_assignment(LAB).duedate == DUE_UTC


def test_a_bad_due_date_stops_the_build_before_the_solution_runs(built, tmp_path):
    from autograder.authoring.source_rules import SourceError

    course = with_policy(built, deadlines_due={LAB: "2026-12-10 23:59"})
    with pytest.raises(SourceError, match=r"c.Deadlines.due\['tiny'\]: '2026-12-10 23:59' has no time zone"):
        build_lab(course, LAB)


# ---- the policy -----------------------------------------------------------------------------------


def test_policy_percentages_at_each_boundary():
    hour, day = 3600, 86400
    per_hour = LatePolicy(penalty_method="per_hour", penalty_percent=2.5)
    assert [per_hour.percent_taken(s) for s in (-1, 0, 1, hour, hour + 1, 3 * hour + 600)] == [0, 0, 2.5, 2.5, 5, 10]
    floored = LatePolicy(penalty_method="per_day", penalty_percent=20, floor_percent=50)
    assert [floored.percent_taken(s) for s in (1, day, day + 1, 2 * day + 1, 10 * day)] == [20, 20, 40, 50, 50]
    cut = LatePolicy(penalty_method="per_day", penalty_percent=10, cutoff_hours=72)
    assert [cut.percent_taken(s) for s in (day + 1, 72 * hour, 72 * hour + 1)] == [20, 30, 100]
    only_cutoff = LatePolicy(cutoff_hours=48)  # method none: full marks up to the cut-off, nothing after
    assert [only_cutoff.percent_taken(s) for s in (1, 48 * hour, 48 * hour + 1)] == [0, 0, 100]
    assert LatePolicy(penalty_method="zero").percent_taken(1) == 100
    assert LatePolicy().late_submission_penalty("s", 3.0, 10 * day) is None  # nbgrader's "no penalty"
    # 10 % of 15 points is exactly 1.5 (multiplied before dividing)
    assert LatePolicy(penalty_method="per_hour", penalty_percent=10).late_submission_penalty("s", 15.0, 1) == 1.5


@pytest.mark.parametrize(
    ("name", "value"), [("penalty_percent", 120.0), ("floor_percent", -5.0), ("cutoff_hours", -1.0)]
)
def test_a_policy_out_of_range_is_refused(name, value):
    with pytest.raises(TraitError, match=f"c.LatePolicy.{name} is {value}"):
        LatePolicy(**{name: value})


def test_duration_text_never_understates():
    assert [duration_text(s) for s in (1, 59, 60, 61, 3 * 3600 + 600, 3 * 3600 + 601, 86400, 2 * 86400 + 3600)] == [
        "1 s",
        "59 s",
        "1 min",
        "2 min",
        "3 h 10 min",
        "3 h 11 min",
        "1 d",
        "2 d 1 h",
    ]


# ---- recorded in the gradebook --------------------------------------------------------------------


def test_one_second_before_exactly_at_and_one_second_after(built):
    course = with_policy(built, penalty_method="per_hour", penalty_percent=10)
    submit(course, "early", "2026-12-10 23:58:59.000000 UTC")
    submit(course, "on_the_dot", "2026-12-10 23:59:00.000000 UTC")
    submit(course, "one_second", "2026-12-10 23:59:01.000000 UTC")
    assert penalties(course, "early") == (0, [None], None)
    assert penalties(course, "on_the_dot") == (0, [None], None)  # at the due date is on time
    assert penalties(course, "one_second") == (1, [pytest.approx(0.3)], None)  # 10 % of 3 for a started hour
    late = lateness_of_lab(course, LAB)
    assert late["on_the_dot"].note() == "on time"
    assert late["one_second"].note() == "submitted 1 s late: −10 %"
    assert late["one_second"].score_after_penalty == 2.7


def test_timestamps_in_other_zones_are_compared_in_utc(built):
    course = with_policy(built, penalty_method="zero")
    submit(course, "paris", "2026-12-11 00:59:00.000000 CET")  # 23:59 UTC: on time
    submit(course, "new_york", "2026-12-10 19:00:00.000000 America/New_York")  # 00:00 UTC: 60 s late
    assert penalties(course, "paris")[:2] == (0, [None])
    assert penalties(course, "new_york")[:2] == (60, [3.0])  # zero: the whole score


def test_a_summer_deadline_in_dublin_is_an_hour_before_utc(built):
    course = with_policy(built, penalty_method="zero", deadlines_due={LAB: "2026-07-10 23:59 Europe/Dublin"})
    submit(course, "summer_early", "2026-07-10 22:58:59.000000 UTC")
    submit(course, "summer_late", "2026-07-10 22:59:01.000000 UTC")  # 23:59:01 Irish summer time
    assert penalties(course, "summer_early")[:2] == (0, [None])
    assert penalties(course, "summer_late")[:2] == (1, [3.0])
    assert (
        lateness_of_lab(course, LAB)["summer_late"].due == "Fri 10 Jul 2026, 23:59 Europe/Dublin (2026-07-10 22:59 UTC)"
    )
    apply_deadlines(built, LAB)  # back to the course's own due date for the other tests


def test_an_extension_moves_the_deadline_for_that_student_only(built, no_extensions):
    write_extensions(built, "ext_alice,tiny,2026-12-12 23:59 Europe/Dublin,medical certificate")
    course = with_policy(built, penalty_method="per_day", penalty_percent=10)
    submit(course, "ext_alice", "2026-12-11 23:59:00.000000 UTC")  # a day after the lab's, within hers
    submit(course, "ext_bob", "2026-12-11 23:59:00.000000 UTC")
    assert penalties(course, "ext_alice") == (0, [None], timedelta(days=2))  # nbgrader's extension
    assert penalties(course, "ext_bob") == (86400, [pytest.approx(0.3)], None)
    late = lateness_of_lab(course, LAB)
    assert late["ext_alice"].extended and late["ext_alice"].due.startswith("Sat 12 Dec 2026, 23:59 Europe/Dublin")
    assert late["ext_bob"].note() == "submitted 1 d late: −10 %"


def test_an_extension_granted_after_grading_removes_the_penalty(built, no_extensions):
    course = with_policy(built, penalty_method="per_hour", penalty_percent=10, floor_percent=40)
    submit(course, "later_ext", "2026-12-11 09:59:00.000000 UTC")  # 10 h late: 60 %, floored at the kept 40 %
    assert penalties(course, "later_ext")[1] == [pytest.approx(1.8)]
    write_extensions(built, "later_ext,tiny,2026-12-11T12:00+00:00,flight cancelled")
    assert apply_deadlines(course, LAB) >= 1  # what `autograder grade` does for results it reuses
    assert penalties(course, "later_ext") == (0, [None], timedelta(hours=12, minutes=1))


def test_a_per_student_due_date_in_the_config(built):
    course = with_policy(
        built,
        penalty_method="zero",
        deadlines_student_due={LAB: {"cfg_carol": "2026-12-11 12:00 Europe/Dublin"}},
    )
    submit(course, "cfg_carol", "2026-12-11 11:59:59.000000 UTC")
    submit(course, "cfg_dan", "2026-12-11 11:59:59.000000 UTC")
    assert penalties(course, "cfg_carol")[:2] == (0, [None])
    assert penalties(course, "cfg_dan")[:2] == (12 * 3600 + 59, [3.0])


def test_a_cutoff_takes_everything_after_it(built):
    course = with_policy(built, penalty_method="per_day", penalty_percent=10, cutoff_hours=72)
    submit(course, "cut_before", "2026-12-13 23:59:00.000000 UTC")  # exactly 72 h: 3 days, 30 %
    submit(course, "cut_after", "2026-12-13 23:59:01.000000 UTC")
    assert penalties(course, "cut_before")[1] == [pytest.approx(0.9)]
    assert penalties(course, "cut_after")[1] == [3.0]
    assert lateness_of_lab(course, LAB)["cut_after"].score_after_penalty == 0


def test_nbgrader_export_and_ours_agree_on_the_penalty(built, tmp_path):
    course = with_policy(built, penalty_method="per_hour", penalty_percent=10)
    submit(course, "agree", "2026-12-11 02:09:00.000000 UTC", score=2.0)  # 2 h 10 min: 30 % of 2
    export_csv(course, tmp_path / "ours.csv", [LAB])
    ours = {r["student"]: r for r in csv.DictReader((tmp_path / "ours.csv").open())}["agree"]
    theirs_file = tmp_path / "nbgrader.csv"
    with Gradebook(course.db_url, course.coursedir().course_id) as gb:
        CsvExportPlugin(to=str(theirs_file), assignment=[LAB], student=["agree"]).export(gb)
    theirs = next(csv.DictReader(theirs_file.open()))
    assert (ours["seconds_late"], ours["penalty"], ours["score_after_penalty"]) == ("7800", "0.6", "1.4")
    assert float(theirs["late_submission_penalty"]) == pytest.approx(0.6)
    assert float(theirs["score"]) == pytest.approx(1.4)


def test_a_failed_run_has_no_penalty_and_no_score(built, tmp_path):
    course = with_policy(built, penalty_method="per_hour", penalty_percent=10)
    folder = course.submitted / "late_crash" / LAB
    folder.mkdir(parents=True)
    (folder / "timestamp.txt").write_text("2026-12-11 05:00:00.000000 UTC\n")
    result = Result("late_crash", LAB, "failed", reason="the kernel died", max_score=3.0)
    record_result(course, result, timestamp=submission_timestamp(course, "late_crash", LAB))
    save_result(course.autograded, result)
    export_csv(course, tmp_path / "grades.csv", [LAB])
    row = {r["student"]: r for r in csv.DictReader((tmp_path / "grades.csv").open())}["late_crash"]
    assert (row["seconds_late"], row["penalty"], row["score_after_penalty"]) == ("18060", "", "")


# ---- shown: the table, the feedback page, the CSV ---------------------------------------------------


def test_table_feedback_and_export_show_the_penalty(built, tmp_path):
    course = with_policy(built, penalty_method="per_hour", penalty_percent=2.5)
    late = submit(course, "shown_late", "2026-12-11 03:09:00.000000 UTC")  # 3 h 10 min
    on_time = submit(course, "shown_on_time", "2026-12-10 12:00:00.000000 UTC")
    console = Console(record=True, width=200)
    console.print(results_table([late, on_time], lateness_of_lab(course, LAB)))
    table = console.export_text()
    assert "3 h 10 min late: −10 % → 2.7" in table and "on time" in table

    pages = write_feedback(course, LAB, ["shown_late"])
    html = pages[0].read_text()
    assert "submitted 3 h 10 min late: −10 %" in html
    assert "Thu 10 Dec 2026, 23:59 Europe/Dublin" in html
    assert "2.7 / 3" in html

    export_csv(course, tmp_path / "grades.csv", [LAB])
    rows = {r["student"]: r for r in csv.DictReader((tmp_path / "grades.csv").open())}
    assert (rows["shown_late"]["seconds_late"], rows["shown_late"]["penalty"]) == ("11400", "0.3")
    assert rows["shown_late"]["score_after_penalty"] == "2.7"
    assert (rows["shown_on_time"]["seconds_late"], rows["shown_on_time"]["penalty"]) == ("0", "0")


def test_a_browser_shows_the_deadline_rows_as_text(built):
    """The late student's page in Chromium: the due date, the lateness and the score after the penalty
    are what a person reads (no markup shown as text, nothing run)."""
    from browser import chromium

    course = with_policy(built, penalty_method="per_day", penalty_percent=10)
    submit(course, "browser_late", "2026-12-12 01:00:00.000000 UTC")  # 1 d 1 h 1 min: 2 started days
    page_file = write_feedback(course, LAB, ["browser_late"])[0]
    with chromium() as browser:
        context = browser.new_context(java_script_enabled=False)
        page = context.new_page()
        page.goto(page_file.as_uri(), wait_until="load")
        rows = {
            row.query_selector("th").inner_text(): row.query_selector("td").inner_text()
            for row in page.query_selector_all("table.facts tr")
        }
        context.close()
    assert rows["Due"] == "Thu 10 Dec 2026, 23:59 Europe/Dublin (2026-12-10 23:59 UTC)"
    assert rows["Submitted"] == "submitted 1 d 2 h late: −20 %"
    assert rows["Score"] == "2.4 / 3 (3 before the late penalty)"


def test_the_reason_for_an_extension_never_reaches_the_student(built, no_extensions):
    write_extensions(built, "private_reason,tiny,2026-12-14 23:59 UTC,bereavement - see email")
    submit(built, "private_reason", "2026-12-12 10:00:00.000000 UTC")
    html = write_feedback(built, LAB, ["private_reason"])[0].read_text()
    assert "Mon 14 Dec 2026, 23:59 UTC" in html and "bereavement" not in html


# ---- bad extensions files: a clear error, and nothing written --------------------------------------


@pytest.mark.parametrize(
    ("rows", "header", "says"),
    [
        (["bad1,tiny,2026-12-12 23:59,flu"], None, "extensions.csv line 2: '2026-12-12 23:59' has no time zone"),
        (["bad1,lab9,2026-12-12 23:59 UTC,flu"], None, "extensions.csv line 2: no lab 'lab9' in this course"),
        (
            ['"=HYPERLINK(""http://x"")",tiny,2026-12-12 23:59 UTC,flu'],
            None,
            "extensions.csv line 2: the folder name '=HYPERLINK",
        ),
        (["bad1,tiny,2026-12-12 23:59 UTC,"], None, "line 2: the reason is empty"),
        (
            ["bad1,tiny,2026-12-12 23:59 UTC,flu", "bad1,tiny,2026-12-13 23:59 UTC,flu again"],
            None,
            "line 3: bad1 already has an extension for tiny on line 2",
        ),
        (["bad1,tiny,2026-12-09 23:59 UTC,flu"], None, "is before the lab's (Thu 10 Dec 2026, 23:59 Europe/Dublin"),
        (["bad1,tiny,2026-12-12 23:59 UTC"], None, "line 2: 3 columns, expected 4"),
        (["bad1,tiny,2026-12-12 23:59 UTC,flu"], "name,assignment,date,why", "line 1 must be the header"),
    ],
)
def test_a_bad_extensions_file_is_refused_and_nothing_is_recorded(built, no_extensions, rows, header, says):
    write_extensions(built, *rows, **({"header": header} if header else {}))
    with pytest.raises(CourseError) as raised:
        LabDeadlines.load(built, LAB)
    assert says in str(raised.value)
    with pytest.raises(CourseError):  # record_result reads it before it writes anything
        submit(built, "bad1", "2026-12-11 00:00:00.000000 UTC")
    with Gradebook(built.db_url, built.coursedir().course_id) as gb:
        assert "bad1" not in {s.id for s in gb.students}


def test_an_extension_for_a_lab_without_a_due_date_is_refused(built, no_extensions):
    course = with_policy(built, deadlines_due={})
    with Gradebook(built.db_url, built.coursedir().course_id) as gb:
        gb.update_or_create_assignment(LAB, duedate=None)
    try:
        write_extensions(built, "nodue,tiny,2026-12-12 23:59 UTC,flu")
        with pytest.raises(CourseError, match=r"tiny has no due date to extend: set c.Deadlines.due\['tiny'\]"):
            LabDeadlines.load(course, LAB)
    finally:
        apply_deadlines(built, LAB)  # the course's due date back in the gradebook


# ---- end to end: real kernels, `autograder grade` twice ---------------------------------------------


def test_a_late_class_graded_then_an_extension_granted(built, no_extensions):
    """Two honest students from the release (its due-date line included), one 3 h 10 min late, graded by
    real kernels; then an extension for the late one, and the next batch reuses both results (no kernel)
    and lifts the penalty."""
    from autograder.demo import DemoStudent, make_submission
    from autograder.grading.batch import grade_lab

    course = with_policy(built, penalty_method="per_hour", penalty_percent=2.5)
    course.config.Grading.notebook_timeout = 120
    students = {"e2e_on_time": "2026-12-10 22:00:00.000000 UTC", "e2e_late": "2026-12-11 03:09:00.000000 UTC"}
    for student, when in students.items():
        make_submission(course, LAB, DemoStudent(student, "correct"))
        (course.submitted / student / LAB / "timestamp.txt").write_text(when + "\n")
    results = {r.student: r for r in grade_lab(course, LAB, list(students), force=True, workers=2)}
    assert {s: (r.status, r.score) for s, r in results.items()} == {s: ("graded", 3.0) for s in students}
    late = lateness_of_lab(course, LAB)
    assert late["e2e_on_time"].note() == "on time"
    assert (late["e2e_late"].note(), late["e2e_late"].score_after_penalty) == ("submitted 3 h 10 min late: −10 %", 2.7)

    write_extensions(built, "e2e_late,tiny,2026-12-11 04:00 Europe/Dublin,family emergency")
    reused = []
    grade_lab(course, LAB, list(students), on_result=lambda result, was_reused: reused.append(was_reused))
    assert reused == [True, True]
    assert lateness_of_lab(course, LAB)["e2e_late"].note() == "on time"
    assert penalties(course, "e2e_late") == (0, [None], timedelta(hours=4, minutes=1))

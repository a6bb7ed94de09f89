"""`autograder export --format gradescope`: a Gradescope autograder `results.json` per graded submission.

Layout: OUTPUT/<lab>/<student>/results.json, and OUTPUT/index.csv with every student × lab (status,
score, the file or why there is none). A Gradescope autograder (run_autograder) that hands back the
file of the submission's student reports our grading as Gradescope's; the format is Gradescope's
documented one (https://gradescope-autograders.readthedocs.io/en/latest/specs/).

- "score" is the gradebook's after any late penalty (a TA's score stands); the tests explain it.
- One test per check: its points are its share of the cell (hidden checks share a cell's points by
  weight, public ones earn none and carry no score), status passed/failed, and as output the same
  message the feedback page shows (feedback._redacted: what the kernel wrote reduced to what the
  grader vouches for, hidden-test lines cut), never result.json's raw text. A hidden check's test has
  visibility "after_published" (or "hidden", --hidden-visibility); no test holds a hidden test's source.
- A cell a TA scored gets a test with the TA's score; its checks' tests then carry no score.
- A failed run or a missing submission gets no results.json (there is no score to give, and a 0 would
  look earned): Gradescope then reports that the autograder produced no results, and index.csv says why.
  A results.json left from an earlier export for such a submission is removed.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from nbgrader.preprocessors import ClearHiddenTests

from ...atomic_file import write_atomically
from ...course import Course, CourseError
from ..export import spreadsheet_safe
from ..feedback import _check_hints, _hidden_lines, _read_autograded, _redacted
from ..results import CellScore
from ..submission_files import student_id_problem
from .columns import note, number
from .scores import GRADED, LabScore, Scores

RESULTS_FILE = "results.json"
INDEX_FILE = "index.csv"
INDEX_COLUMNS = ["student", "lab", "status", "score", "max_score", "results"]
VISIBILITIES = ("after_published", "hidden")  # for hidden checks; Gradescope also knows visible, after_due_date


def write_gradescope(course: Course, scores: Scores, target: Path, hidden_visibility: str = "after_published") -> int:
    """Write every graded submission's results.json and the index; returns how many results.json."""
    if hidden_visibility not in VISIBILITIES:
        raise CourseError(f"--hidden-visibility {hidden_visibility}: expected one of {', '.join(VISIBILITIES)}")
    target = Path(target)
    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and not (target / INDEX_FILE).is_file())):
        raise CourseError(
            f"{target} is not empty and not an earlier Gradescope export (no {INDEX_FILE}): choose another --output"
        )
    written = 0
    with io.StringIO(newline="") as handle:
        index = csv.writer(handle)
        index.writerow(INDEX_COLUMNS)
        for lab in scores.labs:
            hints = _check_hints(course, lab)
            for student in scores.students:
                row = scores.of(lab, student.id)
                problem = student_id_problem(student.id) or student_id_problem(lab)
                path = target / lab / student.id / RESULTS_FILE
                if problem:
                    shown = ""
                    status = f"not written: {problem}"
                elif row.status == GRADED:
                    write_atomically(
                        path, json.dumps(results_json(course, row, hints, hidden_visibility), indent=1) + "\n"
                    )
                    shown, status = f"{lab}/{student.id}/{RESULTS_FILE}", row.status_text
                    written += 1
                else:
                    _remove_stale(path)
                    shown, status = "", row.status_text
                index.writerow(
                    [
                        spreadsheet_safe(v)
                        for v in (
                            student.id,
                            lab,
                            status,
                            number(row.score_after_penalty),
                            number(row.max_score),
                            shown,
                        )
                    ]
                )
        write_atomically(target / INDEX_FILE, handle.getvalue())
    return written


def results_json(course: Course, row: LabScore, hints: dict[str, str] | None, hidden_visibility: str) -> dict:
    """One graded submission as Gradescope's results.json."""
    verdicts = _redacted_cells(course, row, hints)
    tests: list[dict] = []
    for cell in row.cells:
        verdict = verdicts.get((cell.notebook, cell.grade_id))
        name = cell.grade_id if len({c.notebook for c in row.cells}) == 1 else f"{cell.notebook}: {cell.grade_id}"
        scored_by_checks = not cell.by_ta and verdict is not None and cell.score is not None
        if not scored_by_checks:
            tests.append(_cell_test(name, cell))
        if verdict is None:
            continue
        hidden_weight = sum(c.weight for c in verdict.checks if c.hidden)
        for check in verdict.checks:
            test: dict[str, object] = {
                "name": f"{name}: {check.name}",
                "status": "passed" if check.passed else "failed",
                "output": check.message or ("passed" if check.passed else "failed"),
                "visibility": hidden_visibility if check.hidden else "visible",
            }
            if scored_by_checks and check.hidden and hidden_weight:
                share = round(cell.max_score * check.weight / hidden_weight, 6)
                test["max_score"] = share
                test["score"] = share if check.passed else 0.0
            tests.append(test)
    summary = f"{row.lab}: {number(row.score_after_penalty)} / {number(row.max_score)}"
    extra = note(row)
    return {
        "score": row.score_after_penalty,
        "execution_time": round(row.result.seconds) if row.result is not None else 0,
        "output": f"{summary} ({extra})" if extra else summary,
        "output_format": "text",
        "test_output_format": "text",
        "test_name_format": "text",
        "stdout_visibility": "hidden",
        "extra_data": {
            "student": row.student.id,
            "lab": row.lab,
            "status": row.status_text,
            "score_before_penalty": row.score,
            "late_penalty": row.penalty,
            "max_score": row.max_score,
        },
        "tests": tests,
    }


def _cell_test(name: str, cell) -> dict:
    """A cell whose score is not its checks' (a TA's, or one awaiting a TA)."""
    test: dict = {"name": name, "max_score": cell.max_score, "visibility": "visible"}
    if cell.score is None:
        test["output"] = "awaiting a TA's grade"
        return test
    test["score"] = cell.score
    test["status"] = "passed" if cell.score >= cell.max_score else "failed"
    test["output"] = (
        f"score set by a TA: {cell.score:g} / {cell.max_score:g}"
        if cell.by_ta
        else f"{cell.score:g} / {cell.max_score:g}"
    )
    return test


def _redacted_cells(course: Course, row: LabScore, hints) -> dict[tuple[str, str], CellScore]:
    """The result's cells with their messages as the feedback page shows them (hidden lines read from
    each autograded notebook, as the page reads them)."""
    if row.result is None:
        return {}
    clear = ClearHiddenTests(config=course.config)
    found = {}
    for notebook in sorted({c.notebook for c in row.result.cells}):
        nb, _ = _read_autograded(course.autograded / row.student.id / row.lab / f"{notebook}.ipynb")
        hidden = _hidden_lines(nb, clear)
        for cell in row.result.cells:
            if cell.notebook == notebook:
                found[(notebook, cell.grade_id)] = _redacted(cell, hidden, hints)
    return found


def _remove_stale(path: Path) -> None:
    """An earlier export's results.json for a submission that has none now (a link is removed, never followed)."""
    if os.path.lexists(path) and (path.is_symlink() or path.is_file()):
        path.unlink()

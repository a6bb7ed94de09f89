"""`autograder grade LAB`: every submission through sanitize → sandbox → verdicts → gradebook.

The coordinator (this process) is the trusted side: it reads the references, sanitizes,
judges and writes the gradebook. Only an executor (autograder/executors/: this machine's slots,
or a Ray cluster) touches student code, in sandboxed kernels that see what kernel_policy.py
allows: the checks package, the virtualenv and the public data. A problem with one submission
becomes that submission's failed result, never a crash of the batch.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import nbformat

from ..atomic_file import write_atomically
from ..cells import is_locked_cell, is_test_cell
from ..checks.observation import MIME_TYPE
from ..course import Course
from ..executors import cell_seconds
from ..outcomes import FailureKind
from .deadlines import LabDeadlines
from .gradebook import apply_deadlines, record_result
from .kernel_policy import make_executor
from .lab import LabContext
from .results import Result, fingerprint, load_result, printable, save_result
from .roster import refuse_unknown_students
from .sanitize import SubmissionError, sanitize
from .submission_files import (
    UnsafeSubmission,
    checked_path,
    read_regular_file,
    student_id_problem,
)
from .verdicts import judge_notebook

log = logging.getLogger(__name__)


def submitted_students(course: Course, lab: str) -> list[str]:
    """Every student with a `submitted/<student>/<lab>` entry (a link there is listed too: grading
    refuses it with its reason, rather than skipping it silently)."""
    if not course.submitted.is_dir():
        return []
    return sorted(p.name for p in course.submitted.iterdir() if os.path.lexists(p / lab))


def grade_lab(
    course: Course,
    lab: str,
    students: list[str] | None = None,
    *,
    force: bool = False,
    workers: int | None = None,
    executor: str | None = None,
    on_result: Callable[[Result, bool], None] | None = None,
) -> list[Result]:
    """Grade the lab for `students` (default: every submission). Returns results in student order.

    executor: "local" or "ray" (default: c.Grading.executor). workers: submissions at once.
    on_result(result, reused) is called as each finishes (progress display).
    """
    context = LabContext.load(course, lab)
    LabDeadlines.load(course, lab)  # a bad due date or extensions file stops the batch before any kernel starts
    if students:  # named ones: an id with no submission and not on the roster is a typo, not a student to add
        refuse_unknown_students(course, lab, students)
    students = students or submitted_students(course, lab)
    results: dict[str, Result] = {}
    stale: dict[str, str] = {}  # student → fingerprint of what is to be graded
    for student in students:
        problem = student_id_problem(student)
        if problem:  # no result file or gradebook row can carry this name: reported, never graded
            results[student] = Result(
                student=student, lab=lab, status="failed", reason=problem, failure=FailureKind.BAD_STUDENT_ID
            )
            if on_result:
                on_result(results[student], False)
            continue
        stamp, previous = _fingerprint_and_previous(context, student)
        if previous is not None and not force:  # unchanged since its last grading: reused, no kernel
            results[student] = previous
            if on_result:
                on_result(previous, True)
        else:
            stale[student] = stamp
    if not stale:
        apply_deadlines(course, lab)  # reused results get an extension or policy changed since
        return [results[s] for s in students]
    context.executor = make_executor(
        context.job_spec(), context.settings, jobs=len(stale), workers=workers, executor=executor
    )
    try:
        # One thread per slot: each sanitizes, waits for its kernel's result, judges, records.
        with ThreadPoolExecutor(max_workers=context.executor.capacity) as pool:
            futures = {
                pool.submit(grade_submission, context, student, stamp): student for student, stamp in stale.items()
            }
            for future in as_completed(futures):
                try:
                    result = future.result()
                except Exception as err:  # even saving failed (disk full...): said, and the batch goes on
                    log.exception("grading %s/%s", futures[future], lab)
                    result = Result(
                        student=futures[future],
                        lab=lab,
                        status="failed",
                        reason=f"internal error while saving the result: {type(err).__name__}: {err}",
                        failure=FailureKind.INTERNAL_ERROR,
                    )
                results[futures[future]] = result
                if on_result:
                    on_result(result, False)
    finally:
        context.executor.close()
    apply_deadlines(course, lab)
    return [results[s] for s in students]


def _submission_file(context: LabContext, student: str, name: str) -> Path:
    """submitted/<student>/<lab>/<name>.ipynb, checked to be a regular file reached without links
    (SubmissionError otherwise; FileNotFoundError when it is absent)."""
    try:
        return checked_path(context.course.submitted, student, context.lab, f"{name}.ipynb")
    except UnsafeSubmission as err:
        raise SubmissionError(str(err), err.failure) from None


def _fingerprint_and_previous(context: LabContext, student: str) -> tuple[str, Result | None]:
    """The submission's fingerprint, and its previous result when that was judged on the same one
    (Result.reusable: not one that recorded an internal error, which the next run tries again).
    A missing or refused file is part of the fingerprint as a marker: nothing unsafe is read."""
    contents = {}
    for name in sorted(context.max_scores):
        contents[name] = _fingerprint_part(
            lambda: _submission_file(context, student, name),  # noqa: B023  (called at once)
            context.submission_limit,
        )
    contents["timestamp.txt"] = _fingerprint_part(
        lambda: checked_path(context.course.submitted, student, context.lab, "timestamp.txt"), 1024
    )
    stamp = fingerprint(contents, context.references_file)
    previous = load_result(context.course.autograded, student, context.lab)
    reusable = previous is not None and previous.fingerprint == stamp and previous.reusable
    return stamp, previous if reusable else None


def _fingerprint_part(find: Callable[[], Path], limit: int) -> bytes:
    try:
        return read_regular_file(find(), limit)
    except FileNotFoundError:
        return b"<missing>"
    except (SubmissionError, UnsafeSubmission) as err:
        return f"<refused: {err}>".encode()


def grade_submission(context: LabContext, student: str, stamp: str) -> Result:
    """Grade one student's submission (fingerprint `stamp`) with context.executor, which grade_lab sets.

    Whatever the submission holds, this returns a Result and records it: a problem with the
    submission is its `failed: <reason>`; anything else is a bug of the grader, recorded as
    "internal error" with its traceback beside the result (internal_error)."""
    course, lab = context.course, context.lab
    folder = course.submitted / student / lab
    start = time.perf_counter()
    result = Result(
        student=student,
        lab=lab,
        status="graded",
        fingerprint=stamp,
        max_score=sum(sum(cells.values()) for cells in context.max_scores.values()),
    )
    timestamp = None
    try:
        timestamp = submission_timestamp(course, student, lab)
        for name in sorted(context.max_scores):
            try:
                path = _submission_file(context, student, name)
            except FileNotFoundError:
                found = ", ".join(sorted(p.name for p in folder.glob("*.ipynb"))) or "no notebooks"
                raise SubmissionError(
                    f"{name}.ipynb is missing from the submission (found: {found})", FailureKind.MISSING_NOTEBOOK
                ) from None
            _grade_notebook(context, student, name, path, result)
    except SubmissionError as err:
        result.fail(printable(str(err)), err.failure)
    except Exception as err:  # a bug on our side must not stop the batch either
        result.fail(internal_error(course, result, "grading", err), FailureKind.INTERNAL_ERROR)
    if result.status == "graded":
        result.score = round(sum(c.score for c in result.cells), 6)
    recorded = time.perf_counter()
    result.seconds = round(recorded - start, 3)
    try:
        record_result(course, result, timestamp=timestamp)
    except Exception as err:  # the gradebook refused this row: the result says so, the batch goes on
        result.fail(internal_error(course, result, "recording the grade", err), FailureKind.INTERNAL_ERROR)
    _add_timing(result, "record", time.perf_counter() - recorded)
    save_result(course.autograded, result)
    return result


def internal_error(course: Course, result: Result, stage: str, err: BaseException) -> str:
    """A bug of the grader while `stage` of one submission: its traceback goes to
    autograded/<student>/<lab>/grader-error.txt and to the log, saying what to report; the
    returned reason is what the result records. Such a result is graded again by the next run."""
    import traceback

    trace = "".join(traceback.format_exception(err))
    path = course.autograded / result.student / result.lab / "grader-error.txt"
    where: Path | None = path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"internal error while {stage} {result.student}/{result.lab}\n{trace}")
    except OSError:
        where = None
    log.error(
        "internal error while %s %s/%s: this is a bug of the grader, please report it with %s and the submission\n%s",
        stage,
        result.student,
        result.lab,
        where or "this traceback",
        trace,
    )
    return printable(f"internal error while {stage}: {type(err).__name__}: {str(err)[:300]} (report it with {where})")


def submission_timestamp(course: Course, student: str, lab: str):
    """nbgrader's submission time (submitted/<student>/<lab>/timestamp.txt, written at collection),
    or None when there is none. Read only from a small regular file reached without links; a file
    that is not a date nbgrader can read fails the submission (a late policy could not judge it)."""
    from nbgrader.utils import parse_utc

    try:
        data = read_regular_file(checked_path(course.submitted, student, lab, "timestamp.txt"), limit=1024)
    except FileNotFoundError:
        return None
    except UnsafeSubmission as err:
        raise SubmissionError(f"timestamp.txt: {err}", FailureKind.BAD_TIMESTAMP) from None
    try:
        return parse_utc(data.decode("utf-8").strip())
    except (UnicodeDecodeError, ValueError, OverflowError, TypeError):
        shown = data[:60].decode("utf-8", "replace")
        raise SubmissionError(
            f"timestamp.txt holds {shown!r}, not a date and time (nbgrader writes it at collection, "
            "e.g. 2026-12-02 14:05:00.000000 UTC): collect the submission again",
            FailureKind.BAD_TIMESTAMP,
        ) from None


def _add_timing(result: Result, stage: str, seconds: float) -> None:
    """Stages: sanitize, wait (for a slot and a ready kernel: ~0 when prepared in time), run (the
    notebook, from hand-over to the end), cells (its own compute), judge (verdicts and the
    autograded copy), record (the gradebook write, after `seconds` was taken); and start,
    the kernel's start and warm-up, which overlapped the previous submission when prepared."""
    result.timings[stage] = round(result.timings.get(stage, 0.0) + seconds, 3)


def _grade_notebook(context: LabContext, student: str, name: str, path: Path, result: Result) -> None:
    began = time.perf_counter()
    nb = sanitize(context.course, context.lab, path, context.submission_limit)
    _add_timing(result, "sanitize", time.perf_counter() - began)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    sources = [cell.source for cell in code_cells]
    # Restored from the gradebook by OverwriteCells: the instructor's code, not the student's.
    trusted = frozenset(i for i, cell in enumerate(code_cells) if is_locked_cell(cell) or is_test_cell(cell))
    assert context.executor is not None  # grade_lab sets it before any submission is graded
    execution = context.executor.execute(nb, f"{student}/{context.lab}/{name}")
    judged = time.perf_counter()
    for stage, seconds in (
        ("wait", execution.wait_seconds),
        ("run", execution.wall_seconds),
        ("cells", cell_seconds(execution.notebook)),
        ("start", execution.start_seconds),
    ):
        _add_timing(result, stage, seconds)
    result.sandboxed = result.sandboxed and execution.sandboxed
    result.warnings.extend(w for w in execution.warnings if w not in result.warnings)
    stopped = execution.reason if execution.status != "completed" else None
    scores = judge_notebook(
        name,
        execution.notebook,
        context.references,
        context.max_scores[name],
        sources=sources,
        trusted_sources=trusted,
        cell_errors=execution.cell_errors,
        stopped=stopped,
        labels_for=context.held_out_labels,
    )
    result.cells.extend(scores)
    write_autograded_notebook(context.course, student, context.lab, name, execution.notebook, scores)
    _add_timing(result, "judge", time.perf_counter() - judged)
    if stopped:
        raise SubmissionError(stopped, execution.failure or FailureKind.EXECUTION_FAILED)


def write_autograded_notebook(course: Course, student: str, lab: str, name: str, executed, scores) -> Path:
    """nbgrader's autograded/ copy for formgrader: observations replaced by the check messages."""
    by_id = {s.grade_id: s for s in scores}
    for cell in executed.cells:
        if cell.get("cell_type") != "code":
            continue
        cell.outputs = [o for o in cell.get("outputs", []) if MIME_TYPE not in o.get("data", {})]
        score = by_id.get(cell.get("metadata", {}).get("nbgrader", {}).get("grade_id"))
        if score is not None:
            lines = [f"autograder: {score.score:g} / {score.max_score:g}"] + [v.message for v in score.checks]
            cell.outputs.append(nbformat.v4.new_output("stream", name="stdout", text="\n".join(lines) + "\n"))
    text = nbformat.writes(executed)  # what nbformat.write would write, whole or not at all
    target = course.autograded / student / lab / f"{name}.ipynb"
    return write_atomically(target, text if text.endswith("\n") else text + "\n")

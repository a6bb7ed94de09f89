"""`autograder validate NOTEBOOK`: run a notebook as the grader will, before it is submitted.

Steps, each reported (the report says everything it found, not only the first problem):

1. the file: JSON, then a valid nbformat notebook;
2. its `metadata["autograder"]` block (checks.notebook_metadata.course_metadata): present and
   not edited;
3. the released cells (the block's "cells", by nbgrader grade_id): a locked or tests cell whose
   source changed (the grader puts the original back, so the edit is lost), a cell deleted;
4. a run in a fresh kernel, cell by cell, on a copy in memory (the student's file is never
   written), with the grader's limits: a timeout per cell and a deadline for the whole notebook;
   errors do not stop the run, as under grading;
5. per graded tests cell: passed, failed (a public check's message), raised (another exception),
   or no public checks here (checked when submitted); code cells elsewhere that raised.

The exit code (Report.exit_code): 0 all ran and every public check passed, 1 a public check
failed or a cell raised, 3 the notebook is unusable (invalid file, missing or edited block,
changed or deleted released cells), 4 a time limit was passed; the highest applicable of
3 > 4 > 1 > 0.

Hidden checks are not in a release notebook: they run only when the notebook is graded.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autograder.checks.notebook_metadata import MetadataProblem, course_metadata, source_sha256

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNUSABLE = 3
EXIT_TIMEOUT = 4

MODE_VARIABLE = "AUTOGRADER_MODE"  # the checks' record mode (grading); a student's run compares at once
SESSION_VARIABLE = "JPY_SESSION_NAME"  # how the checks find the notebook (and its public references)
DEFAULT_KERNEL = "python3"
KERNEL_STARTUP_TIMEOUT = 60
PASSED_PREFIX = "\u2713 "
NO_REFERENCE = "no public reference here"
FAILED_NAMES = ("CheckFailed", "AssertionError")

HIDDEN_NOTE = (
    "Hidden checks run only when the notebook is graded, so passing here is not full marks: "
    "the public checks test a few cases, the hidden ones more."
)

# statuses of a tests cell
PASSED = "passed"
FAILED = "failed"
RAISED = "raised"
NO_PUBLIC = "no public checks"
NOT_RUN = "not run"
TIMED_OUT = "timed out"
DELETED = "deleted"


@dataclass
class CellResult:
    """One code cell's run: every graded tests cell, and any other code cell that raised."""

    position: int | None  # 1-based among all the notebook's cells (None: deleted)
    grade_id: str | None
    role: str  # "tests", "answer", "locked" (from the block), or "code" (a cell the block does not know)
    points: float
    status: str  # PASSED, FAILED, RAISED, NO_PUBLIC, NOT_RUN, TIMED_OUT, DELETED
    message: str = ""
    seconds: float | None = None

    @property
    def name(self) -> str:
        return cell_name(self.position, self.grade_id)


@dataclass
class CellProblem:
    """A released cell that the grader will not see as it was released."""

    grade_id: str
    role: str
    kind: str  # "changed", "deleted" or "duplicated"
    position: int | None
    message: str


@dataclass
class Report:
    notebook: str  # the absolute path validated
    lab: str | None = None
    problems: list[str] = field(default_factory=list)  # the notebook is unusable: why
    cell_problems: list[CellProblem] = field(default_factory=list)
    tests: list[CellResult] = field(default_factory=list)  # every graded tests cell, in notebook order
    errors: list[CellResult] = field(default_factory=list)  # code cells outside tests that raised
    timeout: str | None = None  # which cell ran past which limit
    executed: bool = False
    kernel: str | None = None
    seconds: float = 0.0  # the cells' run time (the kernel's start not included)
    cell_timeout: float | None = None
    notebook_timeout: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.problems or self.cell_problems:
            return EXIT_UNUSABLE
        if self.timeout is not None:
            return EXIT_TIMEOUT
        if any(t.status in (FAILED, RAISED) for t in self.tests) or self.errors:
            return EXIT_FAILED
        return EXIT_OK

    @property
    def points(self) -> float:
        return sum(t.points for t in self.tests)

    @property
    def points_passed(self) -> float:
        """Points of the tests cells whose public checks all passed (not a score: hidden checks decide)."""
        return sum(t.points for t in self.tests if t.status == PASSED)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            exit_code=self.exit_code,
            points=self.points,
            points_passed=self.points_passed,
            hidden_checks=HIDDEN_NOTE,
        )
        return data


def cell_name(position: int | None, grade_id: str | None) -> str:
    where = f"cell {position}" if position is not None else "a deleted cell"
    return f"{where} ({grade_id!r})" if grade_id else where


# ------------------------------------------------------------------------------------ the file


def read_notebook(path: Path, report: Report) -> Any | None:
    """The notebook as nbformat's node (version 4), or None with the reason in report.problems."""
    import nbformat

    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        report.problems.append(f"cannot read {path}: {err.strerror or err}")
        return None
    except UnicodeDecodeError as err:
        report.problems.append(f"{path.name} is not a notebook: not UTF-8 text ({err.reason} at byte {err.start})")
        return None
    try:
        data = json.loads(text)
    except ValueError as err:
        report.problems.append(
            f"{path.name} is not a notebook: it is not valid JSON ({err}); it was probably damaged while "
            "editing or saving: use your last good copy, or copy your answers into a fresh release notebook"
        )
        return None
    if not isinstance(data, dict):
        report.problems.append(f"{path.name} is not a notebook: its JSON is a {type(data).__name__}, not an object")
        return None
    try:
        with warnings.catch_warnings():  # nbformat's repairs (a duplicated cell id) are not the student's problem
            warnings.simplefilter("ignore")
            nbformat.validate(data)
    except nbformat.ValidationError as err:
        report.problems.append(f"{path.name} is not a valid notebook (nbformat): {_first_line(err.message)}")
        return None
    except Exception as err:  # nbformat raises its own kinds for unknown versions
        report.problems.append(f"{path.name} is not a valid notebook (nbformat): {err}")
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nbformat.reads(text, as_version=4)  # sources as strings, an older format upgraded


def _first_line(text: str) -> str:
    return str(text).strip().splitlines()[0] if str(text).strip() else str(text)


def grade_id_of(cell: Any) -> str | None:
    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    return grade_id if isinstance(grade_id, str) and grade_id else None


# --------------------------------------------------------------------------- the released cells


def compare_cells(nb: Any, meta: dict, report: Report) -> None:
    """Changed locked/tests cells, deleted released cells, grade_ids used twice."""
    released: dict = meta.get("cells", {})
    seen: dict[str, int] = {}
    for position, cell in enumerate(nb.cells, start=1):
        grade_id = grade_id_of(cell)
        if grade_id is None or grade_id not in released:
            continue
        role = released[grade_id].get("role", "")
        if grade_id in seen:
            report.cell_problems.append(
                CellProblem(
                    grade_id,
                    role,
                    "duplicated",
                    position,
                    f"{cell_name(position, grade_id)} duplicated: {cell_name(seen[grade_id], grade_id)} has the "
                    "same grade_id; the grader reads one cell per grade_id: delete the copy",
                )
            )
            continue
        seen[grade_id] = position
        if role in ("locked", "tests") and source_sha256(cell.get("source", "")) != released[grade_id].get("sha256"):
            report.cell_problems.append(
                CellProblem(
                    grade_id,
                    role,
                    "changed",
                    position,
                    f"{cell_name(position, grade_id)} changed ({_role_text(role)}): the grader puts the original "
                    "back, your edit there is lost",
                )
            )
    for grade_id, entry in released.items():
        if grade_id in seen:
            continue
        role = entry.get("role", "")
        if role == "answer":
            why = "your answer there is lost and the tests that use it fail"
        elif role == "tests":
            why = f"its {entry.get('points', 0):g} points cannot be earned"
        else:
            why = "the cells after it may not run"
        report.cell_problems.append(
            CellProblem(
                grade_id,
                role,
                "deleted",
                None,
                f"{grade_id!r} ({_role_text(role)}) was deleted: {why}; copy your answers into a fresh copy of "
                "the release notebook",
            )
        )


def _role_text(role: str) -> str:
    return {"locked": "a locked cell", "tests": "a tests cell", "answer": "an answer cell"}.get(role, role)


# ------------------------------------------------------------------------------------- the run


def _kernel_name(nb: Any, report: Report) -> str:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    wanted = nb.metadata.get("kernelspec", {}).get("name") or DEFAULT_KERNEL
    if wanted == DEFAULT_KERNEL:
        return wanted
    try:
        KernelSpecManager().get_kernel_spec(wanted)
    except NoSuchKernel:
        report.notes.append(f"no kernel named {wanted!r} is installed here: {DEFAULT_KERNEL!r} used instead")
        return DEFAULT_KERNEL
    return wanted


def _outputs_text(cell: Any) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and output.get("name") == "stdout":
            text = output.get("text", "")
            parts.append("".join(text) if isinstance(text, list) else text)
    return "".join(parts)


def _error_of(cell: Any) -> tuple[str, str] | None:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return str(output.get("ename", "")), str(output.get("evalue", ""))
    return None


def classify(cell: Any) -> tuple[str, str]:
    """(status, message) of a tests cell that ran, from its outputs."""
    error = _error_of(cell)
    if error is not None:
        ename, evalue = error
        if ename in FAILED_NAMES:
            return FAILED, evalue or ename
        return RAISED, f"{ename}: {evalue}" if evalue else ename
    lines = _outputs_text(cell).splitlines()
    passed = sum(line.startswith(PASSED_PREFIX) for line in lines)
    hidden = sum(NO_REFERENCE in line for line in lines)
    if passed:
        message = f"{passed} public check{'s' * (passed != 1)} passed"
        if hidden:
            message += f"; {hidden} more checked when you submit"
        return PASSED, message
    return NO_PUBLIC, "checked when you submit"


async def _run_cells(
    nb: Any,
    path: Path,
    kernel: str,
    cell_timeout: float,
    notebook_timeout: float,
    released: dict,
    report: Report,
    progress: Callable[[str], None] | None,
) -> None:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    env = {k: v for k, v in os.environ.items() if k != MODE_VARIABLE}
    env[SESSION_VARIABLE] = str(path)
    client = NotebookClient(
        nb,
        timeout=cell_timeout,
        startup_timeout=KERNEL_STARTUP_TIMEOUT,
        kernel_name=kernel,
        allow_errors=True,
        interrupt_on_timeout=False,  # as the grader: a cell past its limit ends the run
        shutdown_kernel="immediate",
        resources={"metadata": {"path": str(path.parent)}},
    )
    tests = {t.grade_id: t for t in report.tests}
    stopped = False
    try:
        # the kernel's own log (ipykernel's warnings) is not the student's business; its outputs come by messages
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        async with client.async_setup_kernel(env=env, cwd=str(path.parent), **quiet):
            began = time.monotonic()
            deadline = began + notebook_timeout
            report.executed = True
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code" or stopped:
                    continue
                position, grade_id = index + 1, grade_id_of(cell)
                role = released.get(grade_id, {}).get("role", "code") if grade_id else "code"
                result = tests.get(grade_id) if role == "tests" else None
                name = cell_name(position, grade_id)
                if progress is not None:
                    progress(name)
                cell_began = time.monotonic()
                error: str | None = None
                past_deadline = False
                task = asyncio.ensure_future(client.async_execute_cell(cell, index))
                done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - cell_began))
                if not done:  # nbclient reads its own cancellation as a dead kernel: the deadline is ours
                    past_deadline = True
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                failure = None if past_deadline or task.cancelled() else task.exception()
                if past_deadline:
                    stopped = True
                    report.timeout = (
                        f"{name} was running when the notebook passed its limit of {notebook_timeout:g} s in all"
                    )
                elif isinstance(failure, CellTimeoutError):
                    stopped = True
                    report.timeout = f"{name} ran longer than the limit of {cell_timeout:g} s per cell"
                elif isinstance(failure, DeadKernelError):
                    stopped = True
                    error = f"the kernel died while this cell ran ({failure})"
                elif failure is not None:
                    raise failure
                seconds = round(time.monotonic() - cell_began, 3)
                if stopped and error is None:
                    status, message = TIMED_OUT, report.timeout or ""
                elif error is not None:
                    status, message = RAISED, error
                else:
                    status, message = classify(cell)
                if result is not None:
                    result.status, result.message, result.seconds = status, message, seconds
                elif status == RAISED:
                    points = float(released.get(grade_id, {}).get("points", 0)) if grade_id else 0.0
                    report.errors.append(CellResult(position, grade_id, role, points, status, message, seconds))
            report.seconds = round(time.monotonic() - began, 3)
    except Exception as err:
        if report.executed:
            raise
        report.problems.append(f"the kernel {kernel!r} did not start: {type(err).__name__}: {err}")


def validate(
    notebook: str | os.PathLike,
    *,
    cell_timeout: float | None = None,
    notebook_timeout: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Check and run `notebook` as the grader will; the student's file is only read.

    cell_timeout / notebook_timeout (seconds) may only lower the grader's limits (quick runs);
    `progress` is called with each code cell's name before it runs."""
    path = Path(notebook).resolve()
    report = Report(notebook=str(path))
    nb = read_notebook(path, report)
    if nb is None:
        return report
    try:
        meta = course_metadata(nb)
    except MetadataProblem as problem:
        report.problems.append(str(problem))
        return report
    report.lab = meta.get("lab")
    compare_cells(nb, meta, report)

    released: dict = meta.get("cells", {})
    positions = {grade_id_of(cell): i for i, cell in enumerate(nb.cells, start=1) if grade_id_of(cell)}
    for grade_id, entry in released.items():
        if entry.get("role") == "tests":
            position = positions.get(grade_id)
            status = NOT_RUN if position is not None else DELETED
            report.tests.append(CellResult(position, grade_id, "tests", float(entry.get("points", 0)), status))
    report.tests.sort(key=lambda t: (t.position is None, t.position or 0))

    limits = meta.get("limits", {})
    try:
        report.cell_timeout = _lowered("--cell-timeout", cell_timeout, limits.get("cell_timeout"), report)
        report.notebook_timeout = _lowered(
            "--notebook-timeout", notebook_timeout, limits.get("notebook_timeout"), report
        )
    except MetadataProblem as problem:
        report.problems.append(str(problem))
        return report
    report.kernel = _kernel_name(nb, report)
    for cell in nb.cells:  # only this run's outputs count
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    run = _run_cells(nb, path, report.kernel, report.cell_timeout, report.notebook_timeout, released, report, progress)
    asyncio.run(run)
    return report


def _lowered(option: str, given: float | None, limit: Any, report: Report) -> float:
    grader = float(limit) if isinstance(limit, (int, float)) and limit > 0 else None
    if given is None:
        if grader is None:
            raise MetadataProblem("this notebook's 'autograder' block has no time limits: use the release notebook")
        return grader
    if given <= 0:
        raise ValueError(f"{option} must be positive")
    if grader is not None and given > grader:
        report.notes.append(f"{option} {given:g} is above the grader's limit: {grader:g} s used (limits only lower)")
        return grader
    return given

"""Reference observations: run the instructor's solution and record what every check sees.

The source notebook runs in a trusted kernel (the instructor's own code, no sandbox) with
checks in record mode. Each observation is attributed to the cell that produced it, which
fixes the check's grade cell, and to the line of its call, which says whether it is public
or hidden. The build fails here, naming the cell, when the solution raises, when a test
cell records nothing, when a check name repeats, when a `check.case("name")` block names no
check its cell records (under grading its exception would fail nothing), or when the solution
fails a check's own declared expectation (a declared shape, an `expected=` value).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import nbformat
import numpy as np
from nbclient import NotebookClient

from ..cells import hidden_lines, is_test_cell, nbgrader_meta
from ..checks.checker import MODE_VARIABLE
from ..checks.compare import Outcome, compare, scored_accuracy, verify_declared
from ..checks.observation import CASE_KIND, RAISED_PREFIX, Observation, observations_in_outputs
from ..references import Reference
from .source_rules import SourceError


def run_trusted(nb, cwd: Path, timeout: int = 1800):
    """Execute an instructor notebook in a plain kernel, checks in record mode. Returns it executed."""
    env = {**os.environ, MODE_VARIABLE: "record", "PYTHONHASHSEED": "0"}
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", allow_errors=True, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute(env=env)
    return nb


def record_references(nb, path: Path, labels_for=None) -> dict[str, Reference]:
    """Reference per check name from an executed source notebook; SourceError on any problem.

    labels_for: data set name → held-out labels, to verify the solution's accuracy checks.
    """
    notebook = path.stem
    references: dict[str, Reference] = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        grade_id = nbgrader_meta(cell).get("grade_id")
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                raise SourceError(path, index, f"the solution raised {output['ename']}: {output['evalue']}", grade_id)
        observations, rejected = observations_in_outputs(cell.get("outputs", []))
        if rejected:
            raise SourceError(path, index, f"an observation was malformed: {rejected[0]}", grade_id)
        if is_test_cell(cell) and not observations:
            raise SourceError(
                path, index, "this test cell records no check: call check.close/shape/equal in it", grade_id
            )
        hidden = hidden_lines(cell.source)
        recorded = {obs.name for obs in observations}
        for name, line in case_names(cell.source):
            if name not in recorded:
                raise SourceError(
                    path,
                    index,
                    f"check.case({name!r}) on line {line} names no check this cell records: an exception "
                    "inside it would fail no check (use the name of the check the block computes)",
                    grade_id,
                )
        for obs in observations:
            if not is_test_cell(cell):
                raise SourceError(
                    path,
                    index,
                    f"check {obs.name!r} is called outside a test cell "
                    "(nbgrader.grade = true): it would never be graded",
                    grade_id,
                )
            if not isinstance(grade_id, str):  # check_source refuses these first
                raise SourceError(path, index, "an nbgrader cell without a grade_id")
            if obs.name in references:
                other = references[obs.name]
                raise SourceError(
                    path,
                    index,
                    f"check name {obs.name!r} repeats: cell {other.cell_index} of {other.notebook} records it too",
                    grade_id,
                )
            if obs.kind == CASE_KIND:
                raised = (obs.problem or "").removeprefix(RAISED_PREFIX)
                raise SourceError(
                    path, index, f"the solution raised {raised} inside check.case({obs.name!r})", grade_id
                )
            if obs.problem:
                raise SourceError(
                    path,
                    index,
                    f"check {obs.name!r} could not record the solution's value: it was {obs.problem}",
                    grade_id,
                )
            declared: Outcome | None
            if obs.kind == "accuracy":
                declared = compare(obs, scored_accuracy(obs, labels_for(obs.params["dataset"])))
            else:
                declared = verify_declared(obs)
            if declared is not None and not declared.passed:
                raise SourceError(path, index, f"the solution fails its own check:\n{declared.message}", grade_id)
            if obs.kind == "accuracy":
                # The judge needs only the params; the solution's predictions would leak test labels.
                obs.value = np.zeros(0, dtype=np.int64)
            references[obs.name] = Reference(obs, notebook, grade_id, index, hidden=obs.line in hidden)
    return references


def case_names(source: str) -> list[tuple[str, int]]:
    """The literal names of the `with check.case("name"):` blocks of a cell, with their lines (a cell
    that does not parse as Python, e.g. one with magics, or a name that is not a literal: none)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.With):
            for item in node.items:
                call = item.context_expr
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr == "case"
                    and isinstance(call.func.value, ast.Name)
                    and call.func.value.id == "check"
                    and call.args
                    and isinstance(call.args[0], ast.Constant)
                    and isinstance(call.args[0].value, str)
                ):
                    found.append((call.args[0].value, node.lineno))
    return found


def check_points_are_hidden(nb, references: dict[str, Reference], path: Path) -> None:
    """What can be copied earns nothing: a test cell's points are shared among its hidden checks
    (public checks are the student's aid, and their references ship with the release). So every
    cell with points needs a hidden check of positive weight, and no hidden check may record a
    value that a public reference already holds (copying it from the release notebook's metadata would
    answer it)."""
    public = [ref.observation for ref in references.values() if not ref.hidden]
    by_cell: dict[str, list[Reference]] = {}
    for ref in references.values():
        by_cell.setdefault(ref.grade_id, []).append(ref)
    for index, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        if not is_test_cell(cell) or not float(meta.get("points", 0) or 0):
            continue
        refs = by_cell.get(meta.get("grade_id", ""), [])
        if not any(ref.hidden and ref.weight > 0 and ref.observation.kind != "by_hand" for ref in refs):
            raise SourceError(
                path,
                index,
                "this test cell has points but no hidden check of positive weight: "
                "its points come from hidden checks only (public references ship with the release, "
                "so a public value can be copied). Add a hidden check between ### BEGIN HIDDEN TESTS "
                "and ### END HIDDEN TESTS.",
                meta.get("grade_id"),
            )
    for ref in references.values():
        if ref.hidden and ref.observation.kind in ("close", "grad", "equal"):
            twin = next((p for p in public if _same_value(p, ref.observation)), None)
            if twin is not None:
                raise SourceError(
                    path,
                    ref.cell_index,
                    f"hidden check {ref.name!r} records the same value as the "
                    f"public check {twin.name!r}: a student could copy it from the release notebook's metadata. "
                    "Test the hidden check on other inputs.",
                    ref.grade_id,
                )


def _same_value(public: Observation, hidden: Observation) -> bool:
    """Whether a hidden value is answered by a public one: equal arrays of more than a couple of
    entries (a lone number or boolean is guessable anyway, and coincides by chance)."""
    a, b = public.value, hidden.value
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)) or b.size < 3:
        return False
    return a.shape == b.shape and np.array_equal(a.astype(np.float64), b.astype(np.float64))


# --------------------------------------------------------------------------- files


def read_notebook(path: Path):
    try:
        return nbformat.read(path, as_version=4)
    except Exception as err:  # nbformat raises several types for broken files
        raise SourceError(path, None, f"not a readable notebook: {err}") from None

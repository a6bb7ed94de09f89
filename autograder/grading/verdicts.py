"""Verdicts: where a submission's score is decided, in the trusted coordinator.

Input: the references recorded from the instructor's solution (private build folder) and
the executed submission (data from the sandbox). Each check's observation is taken only
from the test cell the build attributed it to (found by grade_id; sanitizing restored
those cells), compared with `checks.compare` using the build's tolerances, never the
submission's. A test cell's points are shared among its checks by weight.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from ..build.references import Reference
from ..build.source_rules import nbgrader_meta
from ..checks.by_hand import function_violations
from ..checks.compare import compare, scored_accuracy
from ..checks.observation import Observation, observations_in_outputs


@dataclass
class CheckVerdict:
    name: str
    passed: bool
    message: str
    weight: float
    hidden: bool


@dataclass
class CellScore:
    notebook: str
    grade_id: str
    score: float
    max_score: float
    checks: list[CheckVerdict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def judge_notebook(notebook: str, executed, references: dict[str, Reference], max_scores: dict[str, float],
                   *, sources: list[str], cell_errors: dict[int, str], stopped: str | None,
                   labels_for: Callable[[str], np.ndarray] | None = None) -> list[CellScore]:
    """Scores of every test cell of one notebook.

    executed:    the executed, sanitized notebook (outputs hold the observations).
    max_scores:  grade_id → points, from the gradebook (what the build stored).
    sources:     the code cells of the sanitized submission, for static rules (by_hand).
    cell_errors: cell index → "ename: evalue" for cells that raised.
    stopped:     why the run ended early (timeout, kernel died), or None.
    labels_for:  data set name → held-out labels (coordinator-side files), for accuracy checks.
    """
    cells = {nbgrader_meta(c).get("grade_id"): (i, c) for i, c in enumerate(executed.cells)}
    by_cell: dict[str, list[Reference]] = {}
    for ref in references.values():
        if ref.notebook == notebook:
            by_cell.setdefault(ref.grade_id, []).append(ref)

    scores = []
    for grade_id, refs in by_cell.items():
        index, cell = cells.get(grade_id, (None, None))
        observed, rejected = observations_in_outputs(cell.get("outputs", [])) if cell is not None else ([], [])
        latest: dict[str, Observation] = {obs.name: obs for obs in observed}
        verdicts = []
        for ref in refs:
            got = latest.get(ref.name)
            if ref.observation.kind == "by_hand" and got is not None:
                got = _read_by_hand(ref, sources)   # the file decides, not the kernel
            if ref.observation.kind == "accuracy" and got is not None:
                got = _score_accuracy(ref, got, labels_for)
            if got is None:
                message = _why_missing(ref, index, cell_errors, stopped, rejected)
                verdicts.append(CheckVerdict(ref.name, False, message, ref.weight, ref.hidden))
                continue
            outcome = compare(ref.observation, got, reveal=not ref.hidden)
            verdicts.append(CheckVerdict(ref.name, outcome.passed, outcome.message, ref.weight, ref.hidden))
        max_score = float(max_scores.get(grade_id, 0.0))
        total = sum(v.weight for v in verdicts) or 1.0
        earned = sum(v.weight for v in verdicts if v.passed)
        if any(not v.passed for v, r in zip(verdicts, refs) if r.observation.kind == "by_hand"):
            earned = 0.0   # autograd in a by-hand exercise: the cell's checks do not count
        scores.append(CellScore(notebook, grade_id, round(max_score * earned / total, 6), max_score, verdicts))
    return scores


def _score_accuracy(ref: Reference, got: Observation, labels_for) -> Observation:
    dataset = ref.observation.params["dataset"]
    try:
        labels = labels_for(dataset)
    except Exception as err:  # a missing label file is the course's problem: say which
        raise RuntimeError(f"labels for {dataset!r} are not available to the grader: {err}") from None
    return scored_accuracy(got, labels)


def _read_by_hand(ref: Reference, sources: list[str]) -> Observation:
    function = ref.observation.params["function"]
    found, violations = function_violations(sources, function)
    return Observation(ref.name, "by_hand", {"function": function, "found": found, "violations": violations})


def _why_missing(ref: Reference, index, cell_errors, stopped, rejected) -> str:
    prefix = f"check {ref.name!r} failed: it was never recorded"
    if index is None:
        return f"{prefix}: its test cell is missing from the notebook"
    if index in cell_errors:
        return f"{prefix}: the test cell raised {cell_errors[index]}"
    if rejected:
        return f"{prefix}: an observation was malformed ({rejected[0]})"
    if stopped:
        return f"{prefix}: the notebook stopped early ({stopped})"
    return f"{prefix}: the check call did not run"

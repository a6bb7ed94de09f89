"""Verdicts: where a submission's score is decided, in the trusted coordinator.

Input: the references recorded from the instructor's solution (private build folder) and
the executed submission (data from the sandbox). Each check's observation is taken only
from the test cell the build attributed it to (found by grade_id; sanitizing restored
those cells), compared with `checks.compare` using the build's tolerances, never the
submission's. A test cell's points are shared among its HIDDEN checks by weight: public
checks are judged and shown (the student's aid), but their references ship with the release,
so a value copied from there earns nothing. A by-hand violation zeroes its cell. An
observation that does not follow its schema fails that check alone, with the reason. A check
never recorded says why (the cell raised: the exception's last line) and still shows its hint; a
`check.case` block that raised fails its own check only, and the cell's other checks count.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from ..cells import nbgrader_meta
from ..checks.by_hand import function_violations
from ..checks.compare import compare, scored_accuracy
from ..checks.observation import (
    CASE_KIND,
    MalformedObservation,
    Observation,
    observations_in_outputs,
    raised_text,
)
from ..references import Reference
from .results import CellScore, CheckVerdict


def judge_notebook(
    notebook: str,
    executed,
    references: dict[str, Reference],
    max_scores: dict[str, float],
    *,
    sources: list[str],
    cell_errors: dict[int, str],
    stopped: str | None,
    labels_for: Callable[[str], np.ndarray] | None = None,
    trusted_sources: frozenset[int] = frozenset(),
) -> list[CellScore]:
    """Scores of every test cell of one notebook.

    executed:    the executed, sanitized notebook (outputs hold the observations).
    max_scores:  grade_id → points, from the gradebook (what the build stored).
    sources:     the code cells of the sanitized submission, for static rules (by_hand).
    trusted_sources: indices into `sources` of the cells restored from the instructor's copy.
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
        cases = [obs for obs in observed if obs.kind == CASE_KIND and obs.problem]
        why_missing = partial(
            _why_missing, index=index, cell_errors=cell_errors, stopped=stopped, rejected=rejected, cases=cases
        )
        verdicts = [
            _verdict(ref, latest.get(ref.name), sources, trusted_sources, labels_for, why_missing) for ref in refs
        ]
        max_score = float(max_scores.get(grade_id, 0.0))
        total = sum(v.weight for v in verdicts if v.hidden)
        earned = sum(v.weight for v in verdicts if v.hidden and v.passed)
        if any(not v.passed for v, r in zip(verdicts, refs, strict=True) if r.observation.kind == "by_hand"):
            earned = 0.0  # autograd in a by-hand exercise: the cell's checks do not count
        score = round(max_score * earned / total, 6) if total else 0.0
        scores.append(CellScore(notebook, grade_id, score, max_score, verdicts))
    return scores


def _verdict(
    ref: Reference, got: Observation | None, sources, trusted_sources, labels_for, why_missing
) -> CheckVerdict:
    """One check's verdict. Whatever the kernel sent is data: a value of the wrong form fails
    this check with the reason and never stops the judging of the others."""
    try:
        if ref.observation.kind == "by_hand" and got is not None:
            got = _read_by_hand(ref, sources, trusted_sources)  # the file decides, not the kernel
        if ref.observation.kind == "accuracy" and got is not None and not got.problem:
            got = _score_accuracy(ref, got, labels_for)
        if got is None:
            return CheckVerdict(ref.name, False, why_missing(ref), ref.weight, ref.hidden)
        outcome = compare(ref.observation, got, reveal=not ref.hidden)
    except (MalformedObservation, TypeError, ValueError, KeyError, IndexError) as err:
        # decode() validates each kind's schema; this catches what slips through, for this check alone
        return CheckVerdict(
            ref.name,
            False,
            f"check {ref.name!r} failed: its observation was malformed ({type(err).__name__}: {err})",
            ref.weight,
            ref.hidden,
        )
    return CheckVerdict(ref.name, outcome.passed, outcome.message, ref.weight, ref.hidden)


def _score_accuracy(ref: Reference, got: Observation, labels_for) -> Observation:
    dataset = ref.observation.params["dataset"]
    try:
        labels = labels_for(dataset)
    except Exception as err:  # a missing label file is the course's problem: say which
        raise RuntimeError(f"labels for {dataset!r} are not available to the grader: {err}") from None
    return scored_accuracy(got, labels)


def _read_by_hand(ref: Reference, sources: list[str], trusted_sources: frozenset[int]) -> Observation:
    function = ref.observation.params["function"]
    found, violations = function_violations(sources, function, trusted=trusted_sources)
    return Observation(ref.name, "by_hand", {"function": function, "found": found, "violations": violations})


def _why_missing(ref: Reference, index, cell_errors, stopped, rejected, cases: list[Observation]) -> str:
    """Why a check has no observation, and its hint: written for the mistake that stopped it, often
    (a shape error in a matmul raises before the check whose hint says "dx has the shape of x")."""
    reason = _missing_reason(index, cell_errors, stopped, rejected, cases)
    message = f"check {ref.name!r} failed: it was never recorded: {reason}"
    hint = ref.observation.params.get("hint")
    return f"{message}\n  hint: {hint}" if hint else message


def _missing_reason(index, cell_errors, stopped, rejected, cases: list[Observation]) -> str:
    if index is None:
        return "its test cell is missing from the notebook"
    if index in cell_errors:
        ename, _, evalue = cell_errors[index].partition(":")  # "ename: evalue", as the kernel reported it
        return raised_text(ename, evalue)
    if rejected:
        return f"an observation was malformed ({rejected[0]})"
    if stopped:
        return f"the notebook stopped early ({stopped})"
    if cases:  # the call may sit inside (or after) a check.case block that stopped at an exception
        return f"the check call did not run; in check.case({cases[-1].name!r}), {cases[-1].problem}"
    return "the check call did not run"

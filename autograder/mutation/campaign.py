"""Grade a lab's mutants with the normal grader, each as a hidden student, and classify them.

The run happens in a scratch copy of the course (its config, the lab's source, release and
private references, a copy of an SQLite gradebook or a fresh build where the gradebook is a
server, the staged data linked read-only), so the course's own gradebook, results and feedback
never see a mutant. The instructor's solution is graded first as the baseline: it must score
full marks there, or no mutant means anything.

A mutant is killed when it scores less than the solution or its run fails (timeout, kernel
died); survived when it keeps full marks; equivalent when the instructor declared its change
harmless (with a reason): equivalents leave the kill rate's denominator, and one that is killed
anyway is flagged, since the declaration is then wrong.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from ..cells import is_solution_cell, nbgrader_meta, without_solution_markers
from ..course import Course, CourseError
from ..grading.results import Result
from .mutants import Equivalent, Mutant, lab_mutants, sample

BASELINE = "solution"
CAUSE_MARKERS = ("likely cause:", "hint:")


@dataclass
class MutantOutcome:
    mutant: Mutant
    verdict: str  # "killed", "survived", "equivalent", "equivalent but killed"
    score: float = 0.0
    max_score: float = 0.0
    failed_checks: list[tuple[str, str]] = field(default_factory=list)  # (check, message) of the lost points
    run_failure: str | None = None  # the run itself failed: timeout, kernel died ...
    names_cause: bool = False
    reason: str = ""  # an equivalent's reason
    public_failures: list[str] = field(default_factory=list)  # a survivor's failed public checks (no points)

    @property
    def killed(self) -> bool:
        return self.verdict in ("killed", "equivalent but killed")


@dataclass
class MutationReport:
    lab: str
    outcomes: list[MutantOutcome]
    problems: list[str]  # declarations that do not apply
    total_mutants: int  # before sampling (of the chosen cells)
    seconds: float = 0.0
    cells: tuple[str, ...] = ()  # the grade_id patterns chosen (none: every cell)

    def count(self, verdict: str) -> int:
        return sum(o.verdict == verdict for o in self.outcomes)

    @property
    def judged(self) -> list[MutantOutcome]:
        """The kill rate's denominator: every mutant not declared equivalent."""
        return [o for o in self.outcomes if o.verdict in ("killed", "survived")]

    @property
    def kill_rate(self) -> float:
        judged = self.judged
        return sum(o.killed for o in judged) / len(judged) if judged else 0.0

    @property
    def named_rate(self) -> float:
        kills = [o for o in self.judged if o.killed]
        return sum(o.names_cause for o in kills) / len(kills) if kills else 0.0


def mutate_lab(
    course: Course,
    lab: str,
    *,
    limit: int | None = None,
    cells: Sequence[str] = (),
    workers: int | None = None,
    executor: str | None = None,
    on_result: Callable[[Result, bool], None] | None = None,
    scratch: Path | None = None,
) -> MutationReport:
    """Grade the lab's mutants (those of the solution cells whose grade_id matches one of the
    `cells` patterns, default all; at most `limit`, spread over its cells) and classify each."""
    from ..grading.batch import grade_lab  # grading imports nbgrader: only when mutants are graded

    course.check_lab(lab)
    if not course.references_file(lab).is_file():
        raise CourseError(f"lab {lab!r} is not built here: run `autograder build {lab}` first")
    everything, equivalents, problems = lab_mutants(course.source_notebooks(lab))
    everything = of_cells(everything, cells, lab)
    mutants = sample(everything, limit)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"mutate-{lab}-", dir=scratch) as folder:
        copy = scratch_course(course, lab, Path(folder))
        students = {f"mutant-{i:03d}": m for i, m in enumerate(mutants, start=1)}
        write_submission(copy, lab, BASELINE, None)
        for student, mutant in students.items():
            write_submission(copy, lab, student, mutant)
        # The solution first, alone: when it does not score full marks no mutant means anything.
        (baseline,) = grade_lab(copy, lab, [BASELINE], force=True, workers=1, executor=executor)
        if baseline.status != "graded" or baseline.score < baseline.max_score:
            lost = "; ".join(message.splitlines()[0] for _, message in _lost(baseline)[:3])
            raise CourseError(
                f"the solution of {lab} does not score full marks as a student ({baseline.status_text}, "
                f"{baseline.score:g}/{baseline.max_score:g}{': ' + lost if lost else ''}): no mutant can be judged; "
                f"was the source edited since the last build? rebuild with `autograder build {lab}`"
            )
        graded = (  # an empty list would mean "every submission" to grade_lab
            grade_lab(copy, lab, list(students), force=True, workers=workers, executor=executor, on_result=on_result)
            if students
            else []
        )
        results = {r.student: r for r in graded}
    outcomes = [classify(mutant, results[student], baseline, equivalents) for student, mutant in students.items()]
    return MutationReport(lab, outcomes, problems, len(everything), round(time.perf_counter() - start, 1), tuple(cells))


def of_cells(mutants: list[Mutant], patterns: Sequence[str], lab: str) -> list[Mutant]:
    """The mutants of the solution cells whose grade_id matches a pattern (fnmatch); a pattern
    that matches no cell with mutants is an error naming those cells (a typo measures nothing)."""
    if not patterns:
        return mutants
    known = list(dict.fromkeys(m.cell for m in mutants))
    chosen = {cell for cell in known if any(fnmatch.fnmatchcase(cell, p) for p in patterns)}
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(cell, p) for cell in known)]
    if unmatched:
        raise CourseError(
            f"no solution cell of {lab} with mutants matches {', '.join(map(repr, unmatched))}; "
            f"its cells with mutants: {', '.join(known)}"
        )
    return [m for m in mutants if m.cell in chosen]


def classify(mutant: Mutant, result: Result, baseline: Result, equivalents: list[Equivalent]) -> MutantOutcome:
    declared = next((e for e in equivalents if e.cell == mutant.cell and e.change == mutant.change), None)
    outcome = MutantOutcome(mutant, "survived", result.score, result.max_score)
    if result.status != "graded":
        outcome.run_failure = result.reason or result.status
    elif result.score < baseline.score:
        outcome.failed_checks = _lost(result)
    killed = outcome.run_failure is not None or bool(outcome.failed_checks)
    if not killed and result.status == "graded":  # public checks earn no points: they cannot kill
        outcome.public_failures = [
            c.name for cell in result.cells for c in cell.checks if not c.passed and not c.hidden
        ]
    if declared is not None:
        outcome.reason = declared.reason
        outcome.verdict = "equivalent but killed" if killed else "equivalent"
    elif killed:
        outcome.verdict = "killed"
    outcome.names_cause = killed and _names_cause(mutant, outcome)
    return outcome


def scratch_course(course: Course, lab: str, folder: Path) -> Course:
    """A course in `folder` that grades like `course` and shares nothing it could write."""
    from ..authoring.pipeline import build_lab

    shutil.copy(course.root / "nbgrader_config.py", folder / "nbgrader_config.py")
    for part in ("source", "release"):
        shutil.copytree(course.root / part / lab, folder / part / lab)
    shutil.copytree(course.private / lab, folder / course.private.name / lab)
    if course.data.is_dir():
        os.symlink(course.data, folder / "data", target_is_directory=True)
    gradebook = folder / "gradebook.db"
    # The scratch gradebook, whatever the course's config says (a PostgreSQL server, say).
    with open(folder / "nbgrader_config.py", "a") as config:
        config.write(
            f"\n# autograder mutate: a scratch gradebook\nc.CourseDirectory.db_url = 'sqlite:///{gradebook}'\n"
        )
    url = course.db_url
    if url.startswith("sqlite:///") and Path(url.removeprefix("sqlite:///")).is_file():
        shutil.copy(url.removeprefix("sqlite:///"), gradebook)
        return Course.load(folder)
    copy = Course.load(folder)
    build_lab(copy, lab)  # a server gradebook is not copied: the lab is built again into the scratch one
    return copy


def write_submission(course: Course, lab: str, student: str, mutant: Mutant | None) -> None:
    """The release notebooks with every answer cell holding the solution, and the mutant's cell
    (when there is one) its mutated source: what a student with exactly that bug hands in."""
    folder = course.submitted / student / lab
    folder.mkdir(parents=True)
    for source_path in course.source_notebooks(lab):
        release = nbformat.read(course.release / lab / source_path.name, as_version=4)
        source = nbformat.read(source_path, as_version=4)
        answers = {nbgrader_meta(c)["grade_id"]: c.source for c in source.cells if is_solution_cell(c)}
        if mutant is not None and mutant.notebook == source_path.stem:
            answers[mutant.cell] = mutant.source
        for cell in release.cells:
            if is_solution_cell(cell):
                cell.source = without_solution_markers(answers[nbgrader_meta(cell)["grade_id"]])
        nbformat.write(release, folder / source_path.name)


def _lost(result: Result) -> list[tuple[str, str]]:
    """The failed checks of the cells that lost points."""
    return [
        (check.name, check.message)
        for cell in result.cells
        if cell.score < cell.max_score
        for check in cell.checks
        if not check.passed
    ]


def _names_cause(mutant: Mutant, outcome: MutantOutcome) -> bool:
    """A kill names its cause when a failed check's message carries a likely cause or a hint
    (or, for a declared mutant with `names`, that phrase)."""
    messages = [message for _, message in outcome.failed_checks]
    if mutant.names:
        return any(mutant.names.lower() in m.lower() for m in messages)
    return any(marker in m for m in messages for marker in CAUSE_MARKERS)

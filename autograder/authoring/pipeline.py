"""`autograder build`: source notebooks → release, solutions and references, all checked.

Order (each step a function below; the first failure stops the lab with a SourceError):
  1. the source follows the authoring rules            (source_rules.check_source)
  2. the solution runs and its checks are recorded     (references.run_trusted / record_references)
     every test cell's points come from hidden checks that no public value can answer
  3. nbgrader writes the student release and the gradebook's copy of every cell, both without
     reference code (`expected=` arguments and what feeds only them: reference_code)
  4. the release holds no solution or hidden-test text (check_release)
  5. each release notebook carries its public references, limits and cells in its metadata
     (release_metadata), and its due date (c.Deadlines.due) as a first markdown line, also set
     in the gradebook as nbgrader's Assignment.duedate; all references go to the private folder
  6. executed solution notebooks, hidden tests removed, go to solutions/
  7. the rubrics of the written answers (manually graded answer cells) go to the private folder
     (rubrics.py); neither the release nor the solutions carry them

Rebuilds are reproducible: a references file or a solution notebook whose new content agrees
with the file already there keeps the existing bytes (write_references, write_solution; "agrees"
is each check's own tolerance: README, "Instructor workflow"), so rebuilding an unchanged course
on another machine leaves the committed release/ and solutions/ as they were.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook
from nbgrader.converters import GenerateAssignment
from nbgrader.utils import capture_log
from traitlets.config import Config

from ..atomic_file import write_atomically
from ..cells import BEGIN_HIDDEN, BEGIN_SOLUTION, END_HIDDEN, END_SOLUTION, marker_lines
from ..checks.observation import strip_observations
from ..course import Course
from ..mutation.mutants import strip_declarations
from ..references import Reference, save_references
from ..rubrics import Rubric, rubrics_file, save_rubrics
from ..settings import Deadlines, DueDate, DueDateError
from .agreement import references_agree
from .record import (
    check_points_are_hidden,
    read_notebook,
    record_references,
    run_trusted,
)
from .reference_code import StripReferenceCode, strip_reference_code
from .release_metadata import old_public_references, write_release_metadata
from .rubrics import rubrics_in, strip_rubrics
from .source_rules import SourceError, check_source


@dataclass
class BuildReport:
    lab: str
    notebooks: list[str]
    checks: int
    hidden_checks: int
    points: float
    seconds: float

    def summary(self) -> str:
        return (
            f"{self.lab}: {len(self.notebooks)} notebook(s), {self.checks} checks "
            f"({self.hidden_checks} hidden), {self.points:g} points, built in {self.seconds:.1f} s"
        )


def build_lab(course: Course, lab: str) -> BuildReport:
    start = time.perf_counter()
    course.check_lab(lab)
    due = lab_due_date(course, lab)  # a bad one stops the build before the solution runs
    sources = course.source_notebooks(lab)
    references: dict[str, Reference] = {}
    executed = {}
    rubrics: dict[str, Rubric] = {}
    points = 0.0
    for path in sources:
        nb = read_notebook(path)
        check_source(nb, path)
        for rubric in rubrics_in(nb, path.stem):  # `autograder review --question` names it by grade_id
            if rubric.grade_id in rubrics:
                raise SourceError(
                    path,
                    None,
                    f"written answer {rubric.grade_id!r} repeats: {rubrics[rubric.grade_id].notebook} has it too",
                    rubric.grade_id,
                )
            rubrics[rubric.grade_id] = rubric
        points += sum(
            float(c.metadata.get("nbgrader", {}).get("points", 0))
            for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade")
        )
        strip_reference_code(copy.deepcopy(nb), path)  # refuses reference code it cannot move, before the run
        executed[path] = run_trusted(copy.deepcopy(nb), cwd=path.parent)
        recorded = record_references(executed[path], path, course.held_out_labels)
        check_points_are_hidden(nb, recorded, path)
        for name, ref in recorded.items():
            if name in references:
                raise SourceError(
                    path,
                    ref.cell_index,
                    f"check name {name!r} repeats: notebook {references[name].notebook} records it too",
                    ref.grade_id,
                )
            references[name] = ref

    private_file = course.references_file(lab)
    # before nbgrader replaces release/<lab>/ as a whole
    old_public = {path: old_public_references(course.release / lab / path.name) for path in sources}
    generate_release(course, lab, due)
    grading = course.grading
    limits = {"cell_timeout": grading.cell_timeout, "notebook_timeout": grading.notebook_timeout}
    agree = True
    for path in sources:
        release_notebook = course.release / lab / path.name
        check_release(read_notebook(path), read_notebook(release_notebook), path)
        kept = write_release_metadata(
            release_notebook, lab, references, limits, old_public[path], due=due.shown() if due else None
        )
        agree = agree and (kept or old_public[path] is None)
    old_private = _read_bytes(private_file)
    # A solution notebook keeps its old outputs only when no reference moved beyond its tolerance.
    agree = (write_references(references, private_file, old_private) or old_private is None) and agree
    for path, nb in executed.items():
        write_solution(nb, course.solutions / lab / path.name, keep_outputs=agree)
    save_rubrics(list(rubrics.values()), rubrics_file(course, lab))

    hidden = sum(ref.hidden for ref in references.values())
    return BuildReport(lab, [p.stem for p in sources], len(references), hidden, points, time.perf_counter() - start)


def lab_due_date(course: Course, lab: str) -> DueDate | None:
    """The lab's due date in c.Deadlines.due (None: none set there)."""
    try:
        return Deadlines(config=course.config).lab_due(lab)
    except DueDateError as err:
        raise SourceError(course.source / lab, None, f"{err} (nbgrader_config.py)") from None


def generate_release(course: Course, lab: str, due: DueDate | None = None) -> None:
    """nbgrader's generate_assignment: release/<lab>/ and the gradebook's copy of every cell; and the
    gradebook assignment's duedate when the course sets one (else it keeps the one it has)."""
    config = Config(course.config)
    # Reference code leaves every test cell before nbgrader saves it to the gradebook (SaveCells):
    # what OverwriteCells restores under grading, and the release, compute no reference.
    nbgrader_preprocessors = GenerateAssignment.class_traits()["preprocessors"].make_dynamic_default()
    config.GenerateAssignment.preprocessors = [StripReferenceCode, *nbgrader_preprocessors]
    coursedir = course.coursedir()
    coursedir.assignment_id = lab
    app = GenerateAssignment(coursedir=coursedir, config=config)
    app.force = True
    app.create_assignment = True
    result = capture_log(app)
    if not result["success"]:
        raise SourceError(
            course.source / lab,
            None,
            f"nbgrader generate_assignment failed:\n{result.get('log', '')}{result.get('error', '')}",
        )
    if due is not None:
        with Gradebook(course.db_url, coursedir.course_id) as gb:
            gb.update_or_create_assignment(lab, duedate=due.utc)


def check_release(source, release, path: Path) -> None:
    """No line that exists only inside a solution or hidden-test region may reach the release."""
    secret = _region_only_lines(source)
    for index, cell in enumerate(release.cells):
        for line in cell.source.splitlines():
            if BEGIN_SOLUTION in line or BEGIN_HIDDEN in line:
                raise SourceError(path, index, "the release still contains a marker line: " + line.strip())
            if line.strip() in secret:
                raise SourceError(path, index, f"the release contains solution or hidden-test code: {line.strip()!r}")


def _region_only_lines(nb) -> set[str]:
    inside: set[str] = set()
    outside: set[str] = set()
    for cell in nb.cells:
        lines = cell.source.splitlines()
        regions = marker_lines(cell.source, BEGIN_SOLUTION, END_SOLUTION) + marker_lines(
            cell.source, BEGIN_HIDDEN, END_HIDDEN
        )
        numbers = {n for a, b in regions for n in range(a + 1, b)}
        for number, line in enumerate(lines, start=1):
            (inside if number in numbers else outside).add(line.strip())
    # Short or common lines (`return x`, `pass`, comments) prove nothing.
    return {line for line in inside - outside if len(line) >= 12 and not line.startswith("#")}


def write_solution(executed, target: Path, *, keep_outputs: bool = False) -> bool:
    """The executed source with hidden tests and markers removed, ready to publish.

    keep_outputs: the lab's references agree with the previous build's, so a solution file
    already there whose cells and metadata (everything but outputs) are the same is kept as it
    is: its outputs differ from this run's by machine noise only. Returns whether it was kept.
    """
    nb = copy.deepcopy(executed)
    strip_observations(nb)
    strip_declarations(nb)  # `autograder mutate`'s declarations: the instructor's, not the students
    strip_rubrics(nb)  # published while students may still be waiting for their written answers' grades
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # nbclient's timestamps: noise in every rebuild's diff
        lines = cell.source.splitlines()
        drop = {n for a, b in marker_lines(cell.source, BEGIN_HIDDEN, END_HIDDEN) for n in range(a, b + 1)}
        kept = [
            line
            for number, line in enumerate(lines, start=1)
            if number not in drop and BEGIN_SOLUTION not in line and END_SOLUTION not in line
        ]
        cell.source = "\n".join(kept)
    if keep_outputs and target.is_file():
        try:
            old = nbformat.read(target, as_version=4)
        except Exception:  # nbformat raises several types for broken files: rewrite it
            old = None
        if old is not None and _without_outputs(old) == _without_outputs(nb):
            return True
    text = nbformat.writes(nb)
    write_atomically(target, text if text.endswith("\n") else text + "\n")  # as nbformat.write
    return False


# --------------------------------------------------------------------------- reproducible builds


def write_references(references: dict[str, Reference], file: Path, old: bytes | None) -> bool:
    """Write a references file, unless `old` (the file's previous bytes) agrees with it: then
    the old bytes stay (are put back where nbgrader removed them). Returns whether they did."""
    new = file.with_name(file.name + ".new")
    save_references(references, new)
    if old is not None and references_agree(old, new.read_bytes()):
        new.unlink()
        if _read_bytes(file) != old:
            write_atomically(file, old)
        return True
    os.replace(new, file)
    return False


def _without_outputs(nb) -> dict:
    """A notebook minus what running it produces: outputs, execution counts and the kernel's
    language_info (its Python's patch version)."""
    document = copy.deepcopy(dict(nb))
    document["metadata"] = {k: v for k, v in document.get("metadata", {}).items() if k != "language_info"}
    document["cells"] = [
        {k: v for k, v in cell.items() if k not in ("outputs", "execution_count")} for cell in document.get("cells", [])
    ]
    return json.loads(json.dumps(document))


def _read_bytes(file: Path) -> bytes | None:
    return file.read_bytes() if file.is_file() else None


def build_course(course: Course, labs: list[str] | None = None) -> list[BuildReport]:
    return [build_lab(course, lab) for lab in (labs or course.labs())]


def copy_course_skeleton(course_root: Path, target: Path, labs: list[str] | None = None) -> Path:
    """Copy the inputs of a build (config and source/) into `target` (tests and benchmarks)."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(course_root / "nbgrader_config.py", target / "nbgrader_config.py")
    for lab in labs or [p.name for p in (course_root / "source").iterdir() if p.is_dir()]:
        shutil.copytree(course_root / "source" / lab, target / "source" / lab, dirs_exist_ok=True)
    return target

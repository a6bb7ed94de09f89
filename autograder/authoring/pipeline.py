"""`autograder build`: source notebooks → release, solutions and references, all checked.

Order (each step a function below; the first failure stops the lab with a SourceError):
  1. the source follows the authoring rules            (source_rules.check_source)
  2. the solution runs and its checks are recorded     (references.run_trusted / record_references)
     every test cell's points come from hidden checks that no public value can answer
  3. nbgrader writes the student release and the gradebook's copy of every cell, both without
     reference code (`expected=` arguments and what feeds only them: reference_code)
  4. the release holds no solution or hidden-test text (check_release)
  5. public references ship beside the release; all references go to the private build folder
  6. executed solution notebooks, hidden tests removed, go to solutions/
"""

from __future__ import annotations

import copy
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbgrader.converters import GenerateAssignment
from nbgrader.utils import capture_log
from traitlets.config import Config

from ..cells import BEGIN_HIDDEN, BEGIN_SOLUTION, END_HIDDEN, END_SOLUTION, marker_lines
from ..checks.checker import PUBLIC_REFERENCES
from ..checks.observation import strip_observations
from ..course import Course
from ..references import Reference, save_references
from .record import (
    check_points_are_hidden,
    read_notebook,
    record_references,
    run_trusted,
)
from .reference_code import StripReferenceCode, strip_reference_code
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
        return (f"{self.lab}: {len(self.notebooks)} notebook(s), {self.checks} checks "
                f"({self.hidden_checks} hidden), {self.points:g} points, built in {self.seconds:.1f} s")


def build_lab(course: Course, lab: str) -> BuildReport:
    start = time.perf_counter()
    course.check_lab(lab)
    sources = course.source_notebooks(lab)
    references: dict[str, Reference] = {}
    executed = {}
    points = 0.0
    for path in sources:
        nb = read_notebook(path)
        check_source(nb, path)
        points += sum(float(c.metadata.get("nbgrader", {}).get("points", 0))
                      for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade"))
        strip_reference_code(copy.deepcopy(nb), path)   # refuses reference code it cannot move, before the run
        executed[path] = run_trusted(copy.deepcopy(nb), cwd=path.parent)
        recorded = record_references(executed[path], path, course.held_out_labels)
        check_points_are_hidden(nb, recorded, path)
        for name, ref in recorded.items():
            if name in references:
                raise SourceError(path, ref.cell_index, f"check name {name!r} repeats: notebook "
                                  f"{references[name].notebook} records it too", ref.grade_id)
            references[name] = ref

    generate_release(course, lab)
    for path in sources:
        check_release(read_notebook(path), read_notebook(course.release / lab / path.name), path)
    save_references(references, course.release / lab / PUBLIC_REFERENCES, public_only=True)
    save_references(references, course.references_file(lab))
    for path, nb in executed.items():
        write_solution(nb, course.solutions / lab / path.name)

    hidden = sum(ref.hidden for ref in references.values())
    return BuildReport(lab, [p.stem for p in sources], len(references), hidden, points,
                       time.perf_counter() - start)


def generate_release(course: Course, lab: str) -> None:
    """nbgrader's generate_assignment: release/<lab>/ and the gradebook's copy of every cell."""
    config = Config(course.config)
    # Reference code leaves every test cell before nbgrader saves it to the gradebook (SaveCells):
    # what OverwriteCells restores under grading, and the release, compute no reference.
    config.GenerateAssignment.preprocessors = [StripReferenceCode, *GenerateAssignment.class_traits()["preprocessors"].make_dynamic_default()]
    coursedir = course.coursedir()
    coursedir.assignment_id = lab
    app = GenerateAssignment(coursedir=coursedir, config=config)
    app.force = True
    app.create_assignment = True
    result = capture_log(app)
    if not result["success"]:
        raise SourceError(course.source / lab, None,
                          f"nbgrader generate_assignment failed:\n{result.get('log', '')}{result.get('error', '')}")


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
    inside, outside = set(), set()
    for cell in nb.cells:
        lines = cell.source.splitlines()
        regions = marker_lines(cell.source, BEGIN_SOLUTION, END_SOLUTION) + \
            marker_lines(cell.source, BEGIN_HIDDEN, END_HIDDEN)
        numbers = {n for a, b in regions for n in range(a + 1, b)}
        for number, line in enumerate(lines, start=1):
            (inside if number in numbers else outside).add(line.strip())
    # Short or common lines (`return x`, `pass`, comments) prove nothing.
    return {line for line in inside - outside if len(line) >= 12 and not line.startswith("#")}


def write_solution(executed, target: Path) -> None:
    """The executed source with hidden tests and markers removed, ready to publish."""
    nb = copy.deepcopy(executed)
    strip_observations(nb)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)   # nbclient's timestamps: noise in every rebuild's diff
        lines = cell.source.splitlines()
        drop = {n for a, b in marker_lines(cell.source, BEGIN_HIDDEN, END_HIDDEN) for n in range(a, b + 1)}
        kept = [line for number, line in enumerate(lines, start=1)
                if number not in drop and BEGIN_SOLUTION not in line and END_SOLUTION not in line]
        cell.source = "\n".join(kept)
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)


def build_course(course: Course, labs: list[str] | None = None) -> list[BuildReport]:
    return [build_lab(course, lab) for lab in (labs or course.labs())]


def copy_course_skeleton(course_root: Path, target: Path, labs: list[str] | None = None) -> Path:
    """Copy the inputs of a build (config and source/) into `target` (tests and benchmarks)."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(course_root / "nbgrader_config.py", target / "nbgrader_config.py")
    for lab in labs or [p.name for p in (course_root / "source").iterdir() if p.is_dir()]:
        shutil.copytree(course_root / "source" / lab, target / "source" / lab, dirs_exist_ok=True)
    return target

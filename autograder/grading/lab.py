"""What every submission of one lab is judged against, loaded once per batch: LabContext.

The references, the points per test cell (the gradebook's), the settings, the held-out labels;
and the course-level checks that stop a batch before any kernel starts (a lab not built, a
required data set not staged, labels missing), so that no student is failed in turn for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from ..course import Course, CourseError
from ..executors import Executor, JobSpec
from ..references import Reference, load_references
from ..settings import Grading
from .gradebook import max_scores
from .kernel_policy import job_spec


@dataclass
class LabContext:
    """What every submission of one lab is judged against (loaded once per batch)."""

    course: Course
    lab: str
    references: dict[str, Reference]
    references_file: Path
    max_scores: dict[str, dict[str, float]]
    settings: Grading
    executor: Executor | None = None
    labels: dict = field(default_factory=dict)  # data set → held-out labels, loaded once (check_course_data)

    @classmethod
    def load(cls, course: Course, lab: str) -> LabContext:
        course.check_lab(lab)
        file = course.references_file(lab)
        scores = max_scores(course, lab)
        if not file.is_file() or not scores:
            raise CourseError(
                f"lab {lab!r} is not built here (no references or gradebook entry): run `autograder build {lab}` first"
            )
        context = cls(course, lab, load_references(file), file, scores, course.grading)
        context.check_course_data()
        return context

    @property
    def submission_limit(self) -> int:
        return int(self.settings.max_submission_mib * 2**20)

    def check_course_data(self) -> None:
        """Stop the batch once, before any kernel starts, when the course lacks what every
        submission needs: a required data set the lab's source names (data/<key>/) or the held-out
        labels an accuracy check is judged with. Otherwise each student would get a silent 0 in turn."""
        from ..data import REGISTRY, read_manifest

        text = "\n".join(
            cell.source
            for path in self.course.source_notebooks(self.lab)
            for cell in nbformat.read(path, as_version=4).cells
            if cell.cell_type == "code"
        )
        staged = read_manifest(self.course.data)
        for dataset in REGISTRY:  # a required data set the source names (optional ones, like MNIST, it may skip)
            if (
                dataset.required
                and (f'"{dataset.key}"' in text or f"'{dataset.key}'" in text)
                and (dataset.key not in staged or not (self.course.data / dataset.key).is_dir())
            ):
                raise CourseError(
                    f"lab {self.lab!r} reads the data set {dataset.key!r} ({dataset.title}), which is "
                    f"not staged in {self.course.data}: run `autograder data` first"
                )
        for reference in self.references.values():
            if reference.observation.kind == "accuracy":
                name = reference.observation.params["dataset"]  # every accuracy check records its data set
                if name not in self.labels:
                    try:  # missing: CourseError names the fix
                        self.labels[name] = self.course.held_out_labels(name)
                    except (OSError, ValueError) as err:
                        raise CourseError(
                            f"the held-out labels of {name!r} cannot be read ({err}): run "
                            "`autograder data` to stage them again"
                        ) from None

    def held_out_labels(self, dataset: str):
        """The labels loaded by check_course_data (once per batch, not once per student)."""
        return self.labels[dataset] if dataset in self.labels else self.course.held_out_labels(dataset)

    def job_spec(self) -> JobSpec:
        """How this lab's kernels start (kernel_policy decides what they may see)."""
        return job_spec(self.course, self.lab, self.settings)

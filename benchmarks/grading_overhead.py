"""Grading overhead per submission beyond the notebook's own compute, and serial nbgrader.

Grades N honest copies of a lab's solution one at a time, each in a kernel started cold
(no kernel prepared ahead: benchmarks/throughput.py measures those), splitting each
grade into its stages (sanitize, sandboxed execution, verdicts + gradebook write), and
subtracts the notebook's own cell time (nbclient's per-cell timing) to get the overhead:
sanitize + sandbox + kernel start + verdicts + gradebook. Then runs `nbgrader autograde`
on the same submissions in the same course for comparison.

    .venv/bin/python benchmarks/grading_overhead.py [LAB] [-n N]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autograder.authoring.pipeline import build_lab, copy_course_skeleton
from autograder.course import Course
from autograder.demo import DemoStudent, make_submission
from autograder.executors.sandbox import probe
from autograder.executors.session import cell_seconds, execute_notebook
from autograder.grading import kernel_policy
from autograder.grading.gradebook import record_result
from autograder.grading.lab import LabContext
from autograder.grading.results import Result
from autograder.grading.sanitize import sanitize
from autograder.grading.verdicts import judge_notebook

# The course config turns nbgrader's in-kernel engine off (nbgrader_guard); the comparison runs it on purpose,
# on demo students who do not attack the grader.
NBGRADER_ENGINE_ON = ["--Autograde.exporter_class=nbconvert.exporters.NotebookExporter"]

REPO = Path(__file__).resolve().parent.parent


def grade_in_stages(context: LabContext, student: str) -> dict[str, float]:
    name = next(iter(context.max_scores))
    path = context.course.submitted / student / context.lab / f"{name}.ipynb"
    stages = {}
    t0 = time.perf_counter()
    nb = sanitize(context.course, context.lab, path)
    t1 = time.perf_counter()
    job = Path(tempfile.mkdtemp())
    execution = execute_notebook(
        nb,
        job_dir=job,
        limits=kernel_policy.limits_from(context.settings),
        env=kernel_policy.kernel_environment(context.settings),
        read_only=kernel_policy.read_only_binds(context.course),
    )
    shutil.rmtree(job, ignore_errors=True)
    t2 = time.perf_counter()
    scores = judge_notebook(
        name,
        execution.notebook,
        context.references,
        context.max_scores[name],
        sources=[c.source for c in nb.cells if c.cell_type == "code"],
        cell_errors=execution.cell_errors,
        stopped=None,
        labels_for=context.course.held_out_labels,
    )
    result = Result(student, context.lab, "graded", cells=list(scores))
    record_result(context.course, result)
    t3 = time.perf_counter()
    assert execution.status == "completed", execution.reason
    compute = cell_seconds(execution.notebook)
    stages.update(
        sanitize=t1 - t0,
        execute=t2 - t1,
        cells=compute,
        verdicts_gradebook=t3 - t2,
        total=t3 - t0,
        overhead=(t3 - t0) - compute,
        score=sum(s.score for s in scores),
    )
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("lab", nargs="?", default="lab1_cross_entropy")
    parser.add_argument("-n", type=int, default=5, help="submissions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        course = Course.load(copy_course_skeleton(REPO, Path(tmp), [args.lab]))
        if (REPO / "data").is_dir():
            os.symlink(REPO / "data", course.data)
        build_lab(course, args.lab)
        students = [f"student{i:03d}" for i in range(args.n)]
        for student in students:
            make_submission(course, args.lab, DemoStudent(student, "correct"))
        context = LabContext.load(course, args.lab)
        grade_in_stages(context, students[0])  # warm the page cache once
        rows = [grade_in_stages(context, s) for s in students]

        def med(key):
            return statistics.median(r[key] for r in rows)

        sandbox = probe()
        print(
            f"machine: {platform.node()}, {os.cpu_count()} cores; sandbox: "
            f"{'bubblewrap' if sandbox.available else 'NONE (' + sandbox.reason + ')'}"
        )
        print(f"{args.lab}, {args.n} honest submissions graded one at a time (median per submission):")
        print(f"  total {med('total'):.2f} s = notebook cells {med('cells'):.2f} s + overhead {med('overhead'):.2f} s")
        print(
            f"  overhead: sanitize {med('sanitize'):.3f} s, kernel start + sandbox + transport "
            f"{med('execute') - med('cells'):.2f} s, verdicts + gradebook {med('verdicts_gradebook'):.3f} s"
        )
        print(f"  scores: {sorted(set(r['score'] for r in rows))}")

        # nbgrader autograde, serially, on the same submissions (its own kernel, no sandbox).
        nbgrader = str(Path(sys.executable).with_name("nbgrader"))
        start = time.perf_counter()
        for student in students:
            subprocess.run(
                [nbgrader, "autograde", args.lab, "--student", student, "--force", "--create", *NBGRADER_ENGINE_ON],
                cwd=course.root,
                check=True,
                capture_output=True,
            )
        serial = (time.perf_counter() - start) / len(students)
        print(f"  nbgrader autograde (serial, same machine, same submissions): {serial:.2f} s per submission")


if __name__ == "__main__":
    main()

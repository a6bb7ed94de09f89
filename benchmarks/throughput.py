"""Grading throughput: this runner against serial `nbgrader autograde`, same machine, same run.

Builds LAB in a temporary course, makes N submissions (honest copies of the solution and a
share of buggy or blank ones), then grades them

  (a) with the runner: every slot of this machine, kernels prepared ahead (the default);
  (b) with the runner, kernels started cold when their submission comes (prepared_per_slot = 0);
  (c) with `nbgrader autograde`, one submission after another (its own kernel, no sandbox);

and prints submissions per minute, the ratio to nbgrader, and the overhead per submission
beyond the notebook's own compute (the submission's grading time minus its cells' time as
nbclient recorded it: sanitize, kernel hand-over or start, transport, verdicts, gradebook).
Scores must agree between (a) and (b); the script fails otherwise.

    .venv/bin/python benchmarks/throughput.py [--lab LAB] [-n N] [--workers W] [--nbgrader-n M]

CI-sized on CPU with lab 1 (the default); on a GPU machine use --lab lab3_mnist_lenet (LeNet,
data staged from Debian's dataset-fashion-mnist).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from traitlets.config import Config

from autograder.authoring.pipeline import build_lab, copy_course_skeleton
from autograder.course import Course
from autograder.data import stage_all
from autograder.demo import (
    NO_BATCH_MEAN,
    UNSTABLE_SOFTMAX,
    DemoStudent,
    make_submission,
)
from autograder.executors.sandbox import probe
from autograder.grading.batch import grade_lab
from autograder.grading.kernel_policy import grading_gpus

# The course config turns nbgrader's in-kernel engine off (nbgrader_guard); the comparison runs it on purpose,
# on demo students who do not attack the grader.
NBGRADER_ENGINE_ON = ["--Autograde.exporter_class=nbconvert.exporters.NotebookExporter"]

REPO = Path(__file__).resolve().parent.parent
DATA_FOR = {"lab3_mnist_lenet": ["fashion_mnist"], "lab5_vae_debiasing": ["fashion_mnist", "colored_fashion_mnist"]}
BUGS = {"lab1_cross_entropy": [{"cross_entropy_batch": NO_BATCH_MEAN}, {"softmax": UNSTABLE_SOFTMAX}]}


def class_of(lab: str, n: int, buggy_share: float) -> list[DemoStudent]:
    """Honest students, and every k-th one blank or with one of the lab's typical bugs."""
    kinds = [DemoStudent("", "blank", answers="blank")] + [DemoStudent("", "bug", replace=b) for b in BUGS.get(lab, [])]
    every = max(1, round(1 / buggy_share)) if buggy_share > 0 else n + 1
    students = []
    for i in range(n):
        name = f"s{i:03d}"
        if i % every == every - 1:
            kind = kinds[(i // every) % len(kinds)]
            students.append(DemoStudent(name, kind.story, answers=kind.answers, replace=kind.replace))
        else:
            students.append(DemoStudent(name, "honest"))
    return students


def grade_with(course: Course, lab: str, students: list[str], workers: int | None, **grading) -> dict:
    config = Config(course.config)
    for key, value in grading.items():
        setattr(config.Grading, key, value)
    began = time.perf_counter()
    results = grade_lab(Course(course.root, config), lab, students, force=True, workers=workers)
    wall = time.perf_counter() - began
    # Beyond the notebook's compute: every stage of grade_submission (grading/batch.py) but the cells.
    overheads = [r.seconds + r.timings.get("record", 0) - r.timings.get("cells", 0) for r in results]
    stages = {
        stage: statistics.median(r.timings.get(stage, 0) for r in results)
        for stage in ("sanitize", "wait", "run", "cells", "judge", "record", "start")
    }
    return {
        "wall": wall,
        "per_minute": 60 * len(results) / wall,
        "overhead": statistics.median(overheads),
        "stages": stages,
        "scores": {r.student: (r.status, r.score) for r in results},
    }


def nbgrader_serial(course: Course, lab: str, students: list[str]) -> dict:
    nbgrader = str(Path(sys.executable).with_name("nbgrader"))
    began = time.perf_counter()
    for student in students:
        subprocess.run(
            [nbgrader, "autograde", lab, "--student", student, "--force", "--create", *NBGRADER_ENGINE_ON],
            cwd=course.root,
            check=True,
            capture_output=True,
        )
    wall = time.perf_counter() - began
    return {"wall": wall, "per_minute": 60 * len(students) / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", default="lab1_cross_entropy")
    parser.add_argument("-n", type=int, default=12, help="submissions (default 12)")
    parser.add_argument("--buggy-share", type=float, default=0.34, help="share of blank or buggy submissions")
    parser.add_argument("--workers", type=int, default=0, help="submissions at once (0: the machine's slots)")
    parser.add_argument("--nbgrader-n", type=int, default=0, help="submissions for nbgrader (0: all N)")
    parser.add_argument("--skip-cold", action="store_true", help="skip run (b)")
    parser.add_argument("--ahead", type=int, default=1, help="kernels each slot prepares ahead in run (a)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        course = Course.load(copy_course_skeleton(REPO, Path(tmp), [args.lab]))
        if args.lab in DATA_FOR:
            stage_all(course.data, datasets=DATA_FOR[args.lab], download=False)
        build_lab(course, args.lab)
        students = class_of(args.lab, args.n, args.buggy_share)
        for student in students:
            make_submission(course, args.lab, student)
        names = [s.name for s in students]
        workers = args.workers or None

        prepared = grade_with(course, args.lab, names, workers, prepared_per_slot=args.ahead)
        cold = None if args.skip_cold else grade_with(course, args.lab, names, workers, prepared_per_slot=0)
        if cold is not None and cold["scores"] != prepared["scores"]:
            raise SystemExit(
                f"scores differ between prepared and cold kernels:\n{prepared['scores']}\n{cold['scores']}"
            )
        serial_names = names[: args.nbgrader_n or len(names)]
        serial = nbgrader_serial(course, args.lab, serial_names)

        gpus = grading_gpus("auto")
        sandbox = probe()
        honest = sum(s.story == "honest" for s in students)
        print(
            f"machine: {platform.node()}, {os.cpu_count()} cores, GPUs: {gpus or 'none'}; sandbox: "
            f"{'bubblewrap' if sandbox.available else 'NONE (' + sandbox.reason + ')'}"
        )
        print(
            f"{args.lab}: {len(names)} submissions ({honest} honest, {len(names) - honest} blank or buggy), "
            f"workers: {workers or 'all slots'}"
        )
        rows = [
            (f"runner, {args.ahead} kernel(s) per slot prepared ahead", prepared),
            ("runner, cold kernels", cold),
            (f"nbgrader autograde, serial ({len(serial_names)} submissions)", serial),
        ]
        for label, row in rows:
            if row is None:
                continue
            extra = (
                f", overhead beyond the notebook's compute {row['overhead']:.2f} s (median)"
                if "overhead" in row
                else ""
            )
            print(f"  {label:45} {row['per_minute']:6.1f} submissions/min ({row['wall']:.1f} s){extra}")
            if "stages" in row:
                print(
                    "      median s per submission: "
                    + ", ".join(f"{k} {v:.2f}" for k, v in row["stages"].items())
                    + "  (run - cells: kernel hand-over, transport, output handling)"
                )
        print(f"  ratio, prepared runner / serial nbgrader: {prepared['per_minute'] / serial['per_minute']:.1f}x")
        print(
            f"  scores: {sorted(set(score for _, score in prepared['scores'].values()))}, "
            f"statuses: {sorted(set(status for status, _ in prepared['scores'].values()))}"
        )


if __name__ == "__main__":
    main()

"""Forked kernels against fresh ones and serial nbgrader: same submissions, same machine, one run.

Builds LAB in a temporary course, makes N submissions (honest, blank and buggy, as
benchmarks/throughput.py does), then grades them

  (a) with the runner, c.Grading.kernel_start = "fork" (kernels forked from a per-slot zygote);
  (b) with the runner, kernel_start = "fresh" (a new sandbox and Python per kernel);
  (c) with `nbgrader autograde`, one submission after another;

and prints, for each, submissions per minute, the overhead per submission beyond the notebook's
own compute (median), the memory of one kernel while it waits or runs (PSS, median of samples;
the zygote's own once per slot), the machine's limit from the cells' own time
(cores x 60 / median cell seconds) and the ratio to it. Scores and statuses must agree between
(a) and (b); the script fails otherwise. No figure is asserted: the machine may be shared.

    .venv/bin/python benchmarks/kernel_start.py [--lab LAB] [-n N] [--nbgrader-n M] [--ahead K]
        [--skip-nbgrader] [--jobs-per-gpu J]

On a GPU machine the limit counts GPU slots (GPUs x jobs_per_gpu), which share the GPU's time:
read it as an upper bound there.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from traitlets.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import DATA_FOR, REPO, class_of, nbgrader_serial  # noqa: E402

from autograder.authoring.pipeline import build_lab, copy_course_skeleton  # noqa: E402
from autograder.course import Course  # noqa: E402
from autograder.data import stage_all  # noqa: E402
from autograder.demo import make_submission  # noqa: E402
from autograder.executors.processes import process_tree  # noqa: E402
from autograder.executors.sandbox import probe  # noqa: E402
from autograder.executors.zygote import ZYGOTE_INSIDE  # noqa: E402
from autograder.grading.batch import grade_lab  # noqa: E402
from autograder.grading.kernel_policy import cpu_jobs, grading_gpus  # noqa: E402
from autograder.settings import Grading  # noqa: E402


class MemorySampler:
    """Samples the PSS of this process's kernels (and zygotes), once a second."""

    def __init__(self):
        self.kernels: list[float] = []  # MiB per kernel process, one per process per sample
        self.zygotes: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.wait(1.0):
            ours = set(process_tree(os.getpid()))  # not the kernels of other graders on this machine
            for pid, kind in kernel_processes():
                if pid not in ours:
                    continue
                pss = pss_mib(pid)
                if pss is not None:
                    (self.zygotes if kind == "zygote" else self.kernels).append(pss)


def kernel_processes() -> list[tuple[int, str]]:
    """(pid, "kernel" | "zygote"): fresh kernels (python ... ipykernel_launcher), forked kernels
    (pid 2 of a job's own pid namespace under a zygote) and the zygotes themselves."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "comm").read_text().startswith("python"):
                continue
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            nspid = next(
                line.split()[1:] for line in (entry / "status").read_text().splitlines() if line.startswith("NSpid")
            )
        except (OSError, StopIteration):
            continue
        if ZYGOTE_INSIDE in cmdline:
            if len(nspid) >= 3 and nspid[-1] == "2":
                found.append((int(entry.name), "kernel"))
            elif len(nspid) == 2 and nspid[-1] == "2":
                found.append((int(entry.name), "zygote"))
        elif "ipykernel_launcher" in cmdline and len(nspid) >= 2:
            found.append((int(entry.name), "kernel"))
    return found


def pss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def grade_with(course: Course, lab: str, students: list[str], **grading) -> dict:
    config = Config(course.config)
    for key, value in grading.items():
        setattr(config.Grading, key, value)
    with MemorySampler() as memory:
        began = time.perf_counter()
        results = grade_lab(Course(course.root, config), lab, students, force=True)
        wall = time.perf_counter() - began
    overheads = [r.seconds + r.timings.get("record", 0) - r.timings.get("cells", 0) for r in results]
    return {
        "wall": wall,
        "per_minute": 60 * len(results) / wall,
        "overhead": statistics.median(overheads),
        "cells": statistics.median(r.timings.get("cells", 0) for r in results),
        "stages": {
            stage: statistics.median(r.timings.get(stage, 0) for r in results)
            for stage in ("sanitize", "wait", "run", "cells", "judge", "record", "start")
        },
        "pss": statistics.median(memory.kernels) if memory.kernels else None,
        "zygote_pss": max(memory.zygotes) if memory.zygotes else None,
        "verdicts": {r.student: (r.status, r.score, r.reason) for r in results},
        "warnings": sorted({w for r in results for w in r.warnings}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", default="lab1_cross_entropy")
    parser.add_argument("-n", type=int, default=12, help="submissions (default 12)")
    parser.add_argument("--buggy-share", type=float, default=0.34, help="share of blank or buggy submissions")
    parser.add_argument("--nbgrader-n", type=int, default=4, help="submissions for nbgrader (0: all N)")
    parser.add_argument("--ahead", type=int, default=1, help="kernels each slot prepares ahead")
    parser.add_argument("--skip-nbgrader", action="store_true")
    parser.add_argument("--jobs-per-gpu", type=int, default=1, help="c.Grading.jobs_per_gpu on a GPU machine")
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

        common = {"prepared_per_slot": args.ahead, "jobs_per_gpu": args.jobs_per_gpu}
        forked = grade_with(course, args.lab, names, kernel_start="fork", **common)
        fresh = grade_with(course, args.lab, names, kernel_start="fresh", **common)
        if forked["verdicts"] != fresh["verdicts"]:
            raise SystemExit(f"verdicts differ between fork and fresh:\n{forked['verdicts']}\n{fresh['verdicts']}")
        serial_names = names[: args.nbgrader_n or len(names)]
        serial = None if args.skip_nbgrader else nbgrader_serial(course, args.lab, serial_names)

        gpus = grading_gpus("auto")
        slots = len(gpus) * args.jobs_per_gpu if gpus else cpu_jobs(Grading(config=course.config))
        cores = os.cpu_count() or 1
        cell_seconds = statistics.median([forked["cells"], fresh["cells"]])
        limit = slots * 60 / cell_seconds if cell_seconds else float("inf")
        for row in (forked, fresh):  # each run against its own cells' time: the load may change between runs
            row["limit"] = slots * 60 / row["cells"] if row["cells"] else float("inf")
        sandbox = probe()
        honest = sum(s.story == "honest" for s in students)
        load = os.getloadavg()
        print(
            f"machine: {platform.node()}, {cores} cores, {slots} slots, GPUs: {gpus or 'none'}; sandbox: "
            f"{'bubblewrap' if sandbox.available else 'NONE (' + sandbox.reason + ')'}; "
            f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
        )
        print(
            f"{args.lab}: {len(names)} submissions ({honest} honest, {len(names) - honest} blank or buggy), "
            f"{args.ahead} kernel(s) per slot prepared ahead; the notebook's cells {cell_seconds:.2f} s (median of "
            f"both runs): limit {limit:.1f} / min ({slots} slots x 60 / cell seconds)"
        )
        for label, row in (("fork", forked), ("fresh", fresh)):
            pss = f"{row['pss']:.0f} MiB" if row["pss"] is not None else "n/a"
            zygote = f", zygote {row['zygote_pss']:.0f} MiB" if row["zygote_pss"] is not None else ""
            print(
                f"  kernel_start={label:6} {row['per_minute']:6.1f} / min ({row['wall']:.1f} s), "
                f"{100 * row['per_minute'] / row['limit']:5.1f} % of its limit ({row['limit']:.1f} / min from its "
                f"cells' {row['cells']:.2f} s), overhead {row['overhead']:.2f} s "
                f"per submission (median), PSS per kernel {pss}{zygote}"
            )
            print("      median s: " + ", ".join(f"{k} {v:.2f}" for k, v in row["stages"].items()))
            for warning in row["warnings"]:
                print(f"      warning: {warning}")
        if serial is not None:
            print(
                f"  nbgrader autograde, serial ({len(serial_names)} submissions) {serial['per_minute']:6.1f} / min; "
                f"fork {forked['per_minute'] / serial['per_minute']:.1f}x, "
                f"fresh {fresh['per_minute'] / serial['per_minute']:.1f}x"
            )
        print(f"  fork / fresh: {forked['per_minute'] / fresh['per_minute']:.2f}x; verdicts identical")


if __name__ == "__main__":
    main()

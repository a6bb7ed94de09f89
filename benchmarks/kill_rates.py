"""Kill rates of every lab's hidden tests (`autograder mutate`), for the README's Measured table.

Builds each lab of this repository from scratch in a temporary course (its data sets staged
there), grades every mutant (or `--limit` of them, spread over the cells) as a hidden student
and prints, per lab, the summary line, the survivors in words and the seconds it took.

    .venv/bin/python benchmarks/kill_rates.py [LAB ...] [--limit N] [--cell GRADE_ID ...] [--workers W]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import datetime
from pathlib import Path

from autograder.authoring.pipeline import build_lab, copy_course_skeleton
from autograder.course import Course
from autograder.data import stage_all
from autograder.mutation.campaign import mutate_lab
from autograder.mutation.report import save_report, summary_line, survivor_lines

REPO = Path(__file__).resolve().parent.parent
#: What each lab's source reads from data/ (the labs' tests stage the same).
DATASETS = {
    "lab2_backprop_xor": ["xor"],
    "lab3_mnist_lenet": ["fashion_mnist"],
    "lab5_vae_debiasing": ["fashion_mnist", "colored_fashion_mnist"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labs", nargs="*", help="labs (default: all)")
    parser.add_argument("--limit", type=int, default=None, help="mutants per lab (default: every one)")
    parser.add_argument(
        "--cell", action="append", default=[], help="only the mutants of these solution cells (glob; repeatable)"
    )
    parser.add_argument("--workers", type=int, default=None, help="mutants graded at once (default: config)")
    parser.add_argument("--keep", type=Path, default=None, help="copy each lab's mutation.json into this folder")
    args = parser.parse_args()
    known = sorted(p.name for p in (REPO / "source").iterdir() if p.is_dir())
    if unknown := sorted(set(args.labs) - set(known)):
        parser.error(f"no such lab: {', '.join(unknown)} (labs: {', '.join(known)})")
    labs = args.labs or known
    print(f"{datetime.now():%Y-%m-%d %H:%M}, {platform.node()}, {os.cpu_count()} cores")
    for lab in labs:
        with tempfile.TemporaryDirectory(prefix=f"kill-rates-{lab}-") as folder:
            course = Course.load(copy_course_skeleton(REPO, Path(folder), [lab]))
            if DATASETS.get(lab):
                stage_all(course.data, datasets=DATASETS[lab])
            start = time.perf_counter()
            build_lab(course, lab)
            built = time.perf_counter() - start
            report = mutate_lab(course, lab, limit=args.limit, cells=args.cell, workers=args.workers)
            print(f"{summary_line(report)} (build {built:.0f} s)", flush=True)
            for line in survivor_lines(report):
                print(f"  {line}", flush=True)
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                save_report(report, args.keep / f"{lab}.json")


if __name__ == "__main__":
    main()

"""Wall time of `autograder build` for a lab, in a fresh temporary course (prints figures).

.venv/bin/python benchmarks/build_time.py [LAB] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from autograder.authoring.pipeline import build_lab, copy_course_skeleton
from autograder.course import Course

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("lab", nargs="?", default="lab1_cross_entropy")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    times = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            course = Course.load(copy_course_skeleton(REPO, Path(tmp), [args.lab]))
            if (REPO / "data").is_dir():
                os.symlink(REPO / "data", course.data)
            start = time.perf_counter()
            report = build_lab(course, args.lab)
            times.append(time.perf_counter() - start)
    print(f"machine: {platform.node()} {os.cpu_count()} cores, {platform.processor() or platform.machine()}")
    print(
        f"build {args.lab}: {report.checks} checks; wall time over {args.repeat} runs: "
        f"median {statistics.median(times):.1f} s, min {min(times):.1f} s, max {max(times):.1f} s"
    )


if __name__ == "__main__":
    main()

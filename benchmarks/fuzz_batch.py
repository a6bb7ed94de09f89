"""A large malformed batch: N generated bad submissions (tests/malformed.py) and a few honest ones.

Builds the tiny test lab in a temporary course, writes N malformed submissions (truncated
files, wrong types, missing keys, random bytes, huge strings, other nbformat versions, deep
nesting, bad encodings, links and special files) plus --honest honest ones, grades them as one
batch and prints: seconds, submissions per second, the coordinator's peak memory, failure
kinds, and the number of grader crashes and internal errors (both must be 0), and whether the
honest students got full marks.

    .venv/bin/python benchmarks/fuzz_batch.py --count 3000
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # conftest, malformed, notebooks

from autograder.authoring.pipeline import build_lab
from autograder.demo import DemoStudent, make_submission
from autograder.grading.batch import grade_lab
from conftest import new_course
from malformed import malformed_submissions
from notebooks import mean_square_lab, write_lab

LAB = "tiny"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="malformed submissions")
    parser.add_argument("--honest", type=int, default=4, help="honest submissions in the same batch")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--workers", type=int, default=0, help="submissions at once (0: one per core)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fuzz-batch-") as folder:
        course = new_course(Path(folder) / "course")
        write_lab(course.root, LAB, mean_square_lab())
        build_lab(course, LAB)
        honest = [f"honest{i}" for i in range(args.honest)]
        for student in honest:
            make_submission(course, LAB, DemoStudent(student, "", answers="solution"))
        release = json.loads((course.release / LAB / f"{LAB}.ipynb").read_text())
        honest_file = course.submitted / honest[0] / LAB / f"{LAB}.ipynb"
        labels = {}
        for index, (label, write) in enumerate(malformed_submissions(release, args.count, honest_file, args.seed)):
            student = f"fuzz{index:05d}"
            (course.submitted / student / LAB).mkdir(parents=True)
            write(course.submitted / student / LAB / f"{LAB}.ipynb")
            labels[student] = label

        started = time.perf_counter()
        try:
            results = {r.student: r for r in grade_lab(course, LAB, workers=args.workers or None)}
            crashed = None
        except Exception as err:  # what this benchmark exists to show never happens
            results, crashed = {}, f"{type(err).__name__}: {err}"
        seconds = time.perf_counter() - started

    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kinds = Counter(r.failure_kind for s, r in results.items() if s in labels)
    graded_malformed = [labels[s] for s, r in results.items() if s in labels and r.status == "graded"]
    honest_ok = all(
        results.get(s) is not None and (results[s].status, results[s].score) == ("graded", 3.0) for s in honest
    )
    total = args.count + args.honest
    print(
        f"machine: {platform.node()}, {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    print(
        f"{args.count} malformed + {args.honest} honest submissions graded in {seconds:.1f} s "
        f"({total / seconds:.1f} per second); coordinator peak RSS {peak_mib:.0f} MiB"
    )
    print(
        f"batch crashed: {crashed or 'no'}; internal errors: {kinds.get('internal error', 0)}; "
        f"malformed ones graded: {len(graded_malformed)} {sorted(set(graded_malformed))[:5]}; "
        f"honest full marks: {honest_ok}"
    )
    for kind, count in kinds.most_common():
        print(f"  {count:6d}  {kind}")
    return 0 if not crashed and not kinds.get("internal error") and not graded_malformed and honest_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Wall time of lab 3's solution notebook (LeNet-5 on Fashion-MNIST), on CPU and on a GPU when there is one.

Runs source/lab3_mnist_lenet/lab3_mnist_lenet.ipynb in a fresh kernel, checks in record mode
(as the build does), once per configuration:

- cpu, every core            (CUDA hidden; what a student's laptop does)
- cpu, 1 thread              (CUDA hidden; OMP/MKL threads = 1, as each grading job runs)
- cuda                       (only when torch sees a GPU)

and prints the wall time (kernel start included), the time of the slowest cells and the
LeNet-5 test accuracy the run reached (scored here with the held-out labels).

    .venv/bin/python benchmarks/lab3_solution_time.py [--repeat N]

Fashion-MNIST comes from the course's data/ when staged there, else it is staged into a
temporary folder from Debian's dataset-fashion-mnist.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from autograder.authoring.record import read_notebook, run_trusted
from autograder.checks.compare import scored_accuracy
from autograder.checks.observation import observations_in_outputs
from autograder.data import read_manifest, stage_all

REPO = Path(__file__).resolve().parent.parent
LAB = "lab3_mnist_lenet"
SOURCE = REPO / "source" / LAB / f"{LAB}.ipynb"
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def configurations() -> list[tuple[str, dict[str, str]]]:
    import torch

    configs = [
        ("cpu, every core", {"CUDA_VISIBLE_DEVICES": ""}),
        ("cpu, 1 thread (as graded)", {"CUDA_VISIBLE_DEVICES": "", **ONE_THREAD}),
    ]
    if torch.cuda.is_available():
        configs.append((f"cuda ({torch.cuda.get_device_name(0)})", {}))
    return configs


def data_folder(tmp: Path) -> Path:
    if "fashion_mnist" in read_manifest(REPO / "data"):
        return REPO / "data"
    stage_all(tmp / "data", datasets=["fashion_mnist"], log=print)
    return tmp / "data"


def cell_seconds(cell) -> float:
    timing = cell.get("metadata", {}).get("execution", {})
    if "iopub.execute_input" not in timing or "shell.execute_reply" not in timing:
        return 0.0
    start, end = (
        datetime.fromisoformat(timing[k].replace("Z", "+00:00")) for k in ("iopub.execute_input", "shell.execute_reply")
    )
    return (end - start).total_seconds()


def run_once(env: dict[str, str], data: Path) -> tuple[float, object]:
    saved = {k: os.environ.get(k) for k in [*env, "AUTOGRADER_DATA"]}
    os.environ.update({**env, "AUTOGRADER_DATA": str(data)})
    try:
        nb = copy.deepcopy(read_notebook(SOURCE))
        start = time.perf_counter()
        run_trusted(nb, cwd=SOURCE.parent)
        return time.perf_counter() - start, nb
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_accuracy(nb, data: Path) -> float | None:
    labels = np.load(data / "labels" / "fashion_mnist_test.npy")
    for cell in nb.cells:
        for obs in observations_in_outputs(cell.get("outputs", []))[0]:
            if obs.kind == "accuracy":
                return scored_accuracy(obs, labels).value["accuracy"]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print(
        f"machine: {platform.node()}, {os.cpu_count()} cores, {platform.processor() or platform.machine()}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        data = data_folder(Path(tmp))
        for name, env in configurations():
            times, accuracies, slow = [], [], {}
            for _ in range(args.repeat):
                seconds, nb = run_once(env, data)
                errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
                if errors:
                    raise SystemExit(f"{name}: the solution raised {errors[0]['ename']}: {errors[0]['evalue']}")
                times.append(seconds)
                accuracies.append(test_accuracy(nb, data))
                for cell in nb.cells:
                    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                    if grade_id:
                        slow.setdefault(grade_id, []).append(cell_seconds(cell))
            top = sorted(slow.items(), key=lambda item: -statistics.median(item[1]))[:4]
            print(
                f"{name}: wall time over {args.repeat} run(s) (kernel start included): median "
                f"{statistics.median(times):.1f} s, min {min(times):.1f} s, max {max(times):.1f} s; "
                f"LeNet-5 test accuracy {', '.join(f'{a:.2%}' for a in accuracies if a is not None)}"
            )
            print("  slowest cells (median s): " + ", ".join(f"{g} {statistics.median(s):.1f}" for g, s in top))


if __name__ == "__main__":
    main()

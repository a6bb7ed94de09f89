"""GPU memory shares enforced from outside the kernel.

On this CPU machine NVML cannot run, so the watchdog reads memory from a stand-in that
charges a fixed amount to the processes it is told about; everything else is real (a real
sandboxed kernel, its real pids from the cgroup or /proc, a real kill). On a machine with a
GPU the last tests grade a real GPU memory hog and compare CPU and GPU verdicts.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time

import pytest
from nbformat.v4 import new_code_cell, new_notebook

from autograder.executors import gpu_watchdog
from autograder.executors.gpu_watchdog import GiB, MemoryLimit, job_usage
from autograder.executors.sandbox import probe
from autograder.executors.session import KernelSession
from autograder.executors.slots import visible_gpus
from job_limits import default_limits

HAS_GPU = bool(visible_gpus()) and not isinstance(gpu_watchdog.GpuMemory.open(), str)


class ChargedMemory:
    """Stands in for NVML: `per_process` bytes for each pid in `charged()`, plus `others`."""

    def __init__(self, charged, per_process: int, total: int = 80 * GiB, others: dict[int, int] | None = None):
        self.charged, self.per_process, self._total, self.others = charged, per_process, total, others or {}

    def total(self, minor):
        return self._total

    def used_by_process(self, minor):
        return {**self.others, **{pid: self.per_process for pid in self.charged()}}

    def used(self, minor):
        return sum(self.used_by_process(minor).values())


def test_usage_is_the_jobs_own_processes():
    limit = MemoryLimit(0, 10 * GiB, exclusive=False, total_bytes=80 * GiB)
    me = os.getpid()
    reader = ChargedMemory(lambda: [me], 3 * GiB, others={os.getppid(): 50 * GiB})
    assert job_usage(reader, limit, {me}) == (3 * GiB, None)
    assert job_usage(reader, limit, {12345678}) == (0, None)  # another job's memory is not ours


def test_pids_from_another_namespace_charge_an_exclusive_job_the_whole_device():
    stranger = 2**22 + 17  # above pid_max: no such process here
    reader = ChargedMemory(lambda: [], 0, others={stranger: 7 * GiB})
    used, note = job_usage(reader, MemoryLimit(0, 10 * GiB, exclusive=True, total_bytes=80 * GiB), {os.getpid()})
    assert (used, note) == (7 * GiB, None)
    used, note = job_usage(reader, MemoryLimit(0, 10 * GiB, exclusive=False, total_bytes=80 * GiB), {os.getpid()})
    assert used is None and "cannot be charged to one job" in note


def test_the_watchdog_kills_a_process_over_its_share_and_spares_one_under_it():
    hog = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    calm = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed = []

    def kill(reason, process):
        killed.append((process.pid, reason))
        process.kill()

    async def watch_both():
        limit = MemoryLimit(0, 4 * GiB, exclusive=False, total_bytes=80 * GiB)
        tasks = [
            asyncio.ensure_future(
                gpu_watchdog.watch(
                    ChargedMemory(lambda p=p: [p.pid], used),
                    limit,
                    lambda p=p: [p.pid],
                    lambda r, p=p: kill(r, p),
                    interval=0.05,
                )
            )
            for p, used in ((hog, 6 * GiB), (calm, 3 * GiB))
        ]
        await asyncio.sleep(1.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    try:
        asyncio.run(watch_both())
        assert hog.wait(timeout=5) != 0 and calm.poll() is None
        assert killed == [
            (hog.pid, "GPU memory over its share: 6.00 GiB in use on GPU 0, limit 4.00 GiB (5% of 80.0 GiB)")
        ]
    finally:
        for process in (hog, calm):
            process.kill()
            process.wait()


@pytest.mark.skipif(not probe().available, reason=f"no sandbox here: {probe().reason}")
def test_a_sandboxed_kernel_over_its_share_fails_with_the_reason(tmp_path):
    """The session's own pids (cgroup or process tree) are what the watchdog charges and kills."""
    session = KernelSession(
        job_dir=tmp_path / "job", limits=default_limits(cell_timeout=60, notebook_timeout=60), env={}, sandbox=True
    )
    notebook = new_notebook(cells=[new_code_cell("import time\ntime.sleep(40)"), new_code_cell("print('after')")])

    async def run_watched():
        await session.start()
        assert session.pids(), "a started kernel has processes"
        reader = ChargedMemory(session.pids, 2 * GiB)
        limit = MemoryLimit(0, 1 * GiB, exclusive=True, total_bytes=80 * GiB)
        watch = asyncio.ensure_future(gpu_watchdog.watch(reader, limit, session.pids, session.kill, interval=0.2))
        try:
            return await session.run(notebook)
        finally:
            watch.cancel()
            await session.close()

    began = time.monotonic()
    result = asyncio.run(run_watched())
    assert time.monotonic() - began < 30
    # 2 GiB charged to each of the sandbox's processes (lifeline shell, bwrap, the kernel...)
    assert result.status == "failed"
    assert re.fullmatch(
        r"GPU memory over its share: \d+\.00 GiB in use on GPU 0, limit 1\.00 GiB \(1% of 80\.0 GiB\)", result.reason
    ), result.reason
    assert result.notebook.cells[1].outputs == []


# --------------------------------------------------------------------------- on a GPU machine

GPU_ONLY = pytest.mark.skipif(not HAS_GPU, reason="no NVIDIA GPU with NVML on this machine")


@GPU_ONLY
def test_a_real_gpu_memory_hog_is_killed_and_recorded(tmp_path):
    from traitlets.config import Config

    from autograder.authoring.pipeline import build_lab
    from autograder.course import Course
    from autograder.demo import DemoStudent, make_submission
    from autograder.grading.batch import grade_lab
    from conftest import new_course
    from notebooks import mean_square_lab, write_lab

    course = new_course(tmp_path)
    write_lab(course.root, "tiny", mean_square_lab())
    build_lab(course, "tiny")
    total = gpu_watchdog.GpuMemory.open().total(visible_gpus()[0])
    hog = (
        f"import torch, time\nblock = torch.empty({int(total * 0.75)}, dtype=torch.uint8, device='cuda')\n"
        "time.sleep(30)"
    )
    make_submission(course, "tiny", DemoStudent("hog", "takes 75 % of the GPU", extra_cell=hog))
    make_submission(course, "tiny", DemoStudent("honest", "correct"))
    config = Config(course.config)
    config.Grading.jobs_per_gpu = 2  # a share of one half
    config.Grading.gpus = str(visible_gpus()[0])
    results = {r.student: r for r in grade_lab(Course(course.root, config), "tiny", force=True)}
    assert results["hog"].status == "failed" and "GPU memory over its share" in results["hog"].reason
    assert (results["honest"].status, results["honest"].score) == ("graded", 3.0)


@GPU_ONLY
def test_a_gpu_slot_kernel_sees_exactly_its_gpu(tmp_path):
    from autograder.executors.local import LocalExecutor
    from autograder.executors.slots import SlotPool
    from autograder.executors.spec import JobSpec

    gpu = visible_gpus()[-1]
    uuid = gpu_watchdog.gpu_uuids().get(gpu)
    notebook = new_notebook(
        cells=[
            new_code_cell(
                "import glob, os, torch\nprint(torch.cuda.device_count(), os.environ['CUDA_VISIBLE_DEVICES'], "
                "sorted(glob.glob('/dev/nvidia[0-9]*')))"
            )
        ]
    )
    spec = JobSpec(limits=default_limits(memory_bytes=None), env={"PYTHONPATH": ""}, sandbox=True)
    with LocalExecutor(spec, SlotPool.for_machine(gpus=[gpu]), jobs=1) as executor:
        result = executor.execute(notebook, "gpu")
    assert result.status == "completed", result.reason
    assert result.notebook.cells[0].outputs[0]["text"].strip() == f"1 {uuid or 0} ['/dev/nvidia{gpu}']"


@GPU_ONLY
@pytest.mark.parametrize("lab", ["lab1_cross_entropy", "lab3_mnist_lenet"])
def test_grading_on_gpu_gives_the_verdicts_of_grading_on_cpu(tmp_path, lab):
    """The same submissions graded with CPU slots only and with GPU slots: every check, the same verdict."""
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
    from autograder.grading.batch import grade_lab
    from conftest import REPO

    course = Course.load(copy_course_skeleton(REPO, tmp_path, [lab]))
    if lab == "lab3_mnist_lenet":
        stage_all(course.data, datasets=["fashion_mnist"], download=False)
    build_lab(course, lab)
    students = [DemoStudent("solution", ""), DemoStudent("blank", "", answers="blank")]
    if lab == "lab1_cross_entropy":
        students += [
            DemoStudent("no_mean", "", replace={"cross_entropy_batch": NO_BATCH_MEAN}),
            DemoStudent("overflow", "", replace={"softmax": UNSTABLE_SOFTMAX}),
        ]
    for student in students:
        make_submission(course, lab, student)

    def verdicts(gpus: str):
        config = Config(course.config)
        config.Grading.gpus = gpus
        results = grade_lab(Course(course.root, config), lab, force=True)
        assert all(r.status == "graded" for r in results), [(r.student, r.reason) for r in results]
        return {(r.student, check.name): check.passed for r in results for c in r.cells for check in c.checks}

    on_cpu, on_gpu = verdicts("none"), verdicts("auto")
    assert on_cpu == on_gpu
    assert on_cpu[("solution", next(name for student, name in on_cpu if student == "solution"))]

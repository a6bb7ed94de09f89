"""The executors' contract: the local executor (prepared kernels on this machine's slots) and the
Ray executor (here on a local Ray instance with fake GPUs: actors that fork kernels from their
zygote with kernel_start "fork", one task per submission with "fresh") grade alike.

Real kernels, real bubblewrap, real Ray. Ray's GPUs here are logical resources only (this
machine has none): a task or actor that gets one runs its kernels without a GPU device, and the
test checks Ray's assignment from the result's `where`.
"""

from __future__ import annotations

import dataclasses
import re
import time

import pytest
from nbformat.v4 import new_code_cell, new_notebook
from test_sandbox import processes_left, processes_with
from test_zygote import CLASS as FORK_CLASS
from test_zygote import (
    CLASS_SCORES,
    CLEAN,
    DIRTY,
    assert_completed_forked,
    cell_text,
    forking,  # noqa: F401  (a fixture: skips where this machine cannot fork kernels)
    notebook,
    verdicts,
)
from traitlets.config import Config

from autograder.authoring.pipeline import build_lab
from autograder.course import Course
from autograder.demo import DemoStudent, make_submission
from autograder.executors.local import LocalExecutor
from autograder.executors.sandbox import probe
from autograder.executors.slots import SlotPool
from autograder.executors.spec import JobSpec
from autograder.grading.batch import grade_lab
from autograder.grading.lab import LabContext
from autograder.outcomes import FailureKind
from conftest import new_course
from notebooks import mean_square_lab, write_lab

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[test]')")

LAB = "tiny"
pytestmark = pytest.mark.skipif(not probe().available, reason=f"no sandbox here: {probe().reason}")


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray with 4 logical CPUs and 2 fake GPUs (what CI can have)."""
    ray.init(num_cpus=4, num_gpus=2, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Course:
    course = new_course(tmp_path_factory.mktemp("executors"))
    write_lab(course.root, LAB, mean_square_lab())
    build_lab(course, LAB)
    return course


def with_limits(course: Course, **grading) -> Course:
    config = Config(course.config)
    for key, value in grading.items():
        setattr(config.Grading, key, value)
    return Course(course.root, config)


CLASS = [
    DemoStudent("honest", "correct"),
    DemoStudent("blank", "blank release", answers="blank"),
    DemoStudent(
        "summer", "sum instead of mean", replace={"mean_square": "def mean_square(x):\n    return (x ** 2).sum()"}
    ),
    DemoStudent("looper", "infinite loop", extra_cell="while True:\n    pass"),
    DemoStudent("crasher", "kills its kernel", extra_cell="import os\nos._exit(3)"),
]


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_both_executors_grade_the_same_class_alike(course, executor, request):
    if executor == "ray":
        request.getfixturevalue("ray_cluster")
    for student in CLASS:
        make_submission(course, LAB, student)
    fast = with_limits(course, cell_timeout=8, notebook_timeout=30)
    results = {
        r.student: r for r in grade_lab(fast, LAB, [s.name for s in CLASS], force=True, workers=2, executor=executor)
    }
    assert {s: (r.status, r.score) for s, r in results.items()} == {
        "honest": ("graded", 3.0),
        "blank": ("graded", 0.0),
        "summer": ("graded", 1.0),
        "looper": ("failed", 0.0),
        "crasher": ("failed", 0.0),
    }
    assert results["looper"].reason.startswith("timeout: cell ")
    assert "kernel died while running cell" in results["crasher"].reason
    assert (results["looper"].failure_kind, results["crasher"].failure_kind) == ("timeout", "kernel died")
    assert all(r.sandboxed for r in results.values())
    summer = {k.name: k.message for c in results["summer"].cells for k in c.checks}
    assert "exactly 3x too large" in summer["mean_square_small"]
    timings = results["honest"].timings
    assert set(timings) == {"sanitize", "wait", "run", "cells", "judge", "record", "start"}
    assert 0 < timings["cells"] <= timings["run"] < results["honest"].seconds


# --------------------------------------------------------------------------- kernels


def probe_notebook(seconds: float = 0.0):
    """Prints what a fresh kernel must show, then sleeps: for overlap and isolation checks."""
    return new_notebook(
        cells=[
            new_code_cell(
                "import glob, os, sys, time\n"
                "began = time.time()\n"
                "print('fresh', 'torch' in globals(), len(In), os.path.exists('/tmp/marker'))\n"
                "print('warm', 'torch' in sys.modules)\n"
                "print('gpu', repr(os.environ.get('CUDA_VISIBLE_DEVICES')), glob.glob('/dev/nvidia*'))\n"
                "open('/tmp/marker', 'w').write('a previous submission was here')\n"
                f"time.sleep({seconds})\n"
                "print('span', began, time.time())"
            )
        ]
    )


def outputs(result) -> dict[str, str]:
    text = "".join(o.get("text", "") for o in result.notebook.cells[0].outputs)
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in text.splitlines() if " " in line}


def spec_for(course: Course, kernel_start: str = "fresh", **limits) -> JobSpec:
    context = LabContext.load(course, LAB)
    spec = context.job_spec()
    return JobSpec(
        limits=dataclasses.replace(spec.limits, **limits),
        env=spec.env,
        read_only=spec.read_only,
        sandbox=True,
        warm_up_modules=("numpy", "torch"),
        kernel_start=kernel_start,
    )


def test_local_kernels_are_prepared_ahead_fresh_and_never_reused(course):
    jobs = 6
    with LocalExecutor(spec_for(course), SlotPool.for_machine(gpus=[], cpu_jobs=2), jobs=jobs) as executor:
        time.sleep(8)  # the batch's first kernels get ready before any submission comes
        results = [executor.execute(probe_notebook(), f"job{i}") for i in range(jobs)]
    assert all(r.status == "completed" and r.sandboxed for r in results), [r.reason for r in results]
    for r in results:
        seen = outputs(r)
        # No names and no history from the warm-up (In holds '' and this cell, as in a cold kernel),
        # and no trace of another submission's /tmp.
        assert seen["fresh"] == "False 2 False" and r.notebook.cells[0].execution_count == 1
        assert seen["warm"] == "True"  # torch was imported before the notebook came
        assert seen["gpu"] == "'' []"  # a CPU slot: no GPU device, CUDA hidden
        assert r.start_seconds > 0
    # Run one after another, each job finds the kernel its slot prepared while the previous one ran.
    assert [r.prepared for r in results] == [True] * jobs
    assert {r.where for r in results} <= {"slot 0, CPU", "slot 1, CPU"}


def test_kernels_import_ahead_what_the_labs_source_imports(course):
    modules = LabContext.load(course, LAB).job_spec().warm_up_modules
    assert modules == ("torch", "autograder.checks")  # the tiny lab's set-up cell


def test_two_kernels_per_slot_prepared_ahead(course):
    jobs = 5
    with LocalExecutor(
        spec_for(course), SlotPool.for_machine(gpus=[], cpu_jobs=1), jobs=jobs, prepare_ahead=2
    ) as executor:
        results = [executor.execute(probe_notebook(), f"job{i}") for i in range(jobs)]
    assert [r.prepared for r in results] == [True] * jobs
    assert all(outputs(r)["fresh"] == "False 2 False" for r in results)


def test_a_kernel_that_cannot_start_is_a_failed_result_not_an_exception(course, tmp_path):
    spec = spec_for(course)
    broken = JobSpec(
        limits=spec.limits,
        env=spec.env,
        sandbox=True,
        read_only=spec.read_only + ((str(tmp_path / "gone"), "/opt/gone"),),
    )
    with LocalExecutor(broken, SlotPool.for_machine(gpus=[], cpu_jobs=1), jobs=1) as executor:
        result = executor.execute(probe_notebook(), "job")
    assert result.status == "failed" and result.reason.startswith("kernel did not start")
    assert "gone does not exist" in result.reason


def overlaps(spans: list[tuple[float, float]]) -> int:
    """The largest number of spans running at one instant."""
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def run_concurrently(executor, count: int, seconds: float):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda i: executor.execute(probe_notebook(seconds), f"job{i}"), range(count)))


def spans(results) -> list[tuple[float, float]]:
    return [tuple(map(float, outputs(r)["span"].split())) for r in results]


def test_local_slots_are_never_oversubscribed_and_cpu_jobs_see_no_gpu(course):
    with LocalExecutor(spec_for(course), SlotPool.for_machine(gpus=[], cpu_jobs=2), jobs=6) as executor:
        results = run_concurrently(executor, 6, 1.5)
    assert all(r.status == "completed" for r in results), [r.reason for r in results]
    assert overlaps(spans(results)) <= 2
    assert all(outputs(r)["gpu"] == "'' []" for r in results)


@pytest.mark.parametrize("kernel_start", ["fresh", "fork"])
def test_ray_jobs_get_fractional_gpus_clean_kernels_and_the_same_sandbox(course, ray_cluster, kernel_start, request):
    """ "fresh": a task per submission in a fresh worker; "fork": actors holding half a GPU each,
    each forking its kernels from its own zygote."""
    from autograder.executors.ray_cluster import RayExecutor

    if kernel_start == "fork":
        request.getfixturevalue("forking")
    executor = RayExecutor(spec_for(course, kernel_start=kernel_start), gpus_per_job=0.5)
    assert executor.capacity == 4  # 2 fake GPUs / 0.5, and 4 logical CPUs
    results = run_concurrently(executor, 6, 2.0)
    executor.close()  # leaves the test's Ray running: the executor did not start it
    assert ray.is_initialized()
    assert all(r.status == "completed" and r.sandboxed for r in results), [r.reason for r in results]
    gpus = [re.search(r"Ray GPU (\d+)", r.where).group(1) for r in results]
    assert set(gpus) <= {"0", "1"}
    for gpu in set(gpus):  # never more than two half-GPU jobs on one GPU at once
        assert overlaps([s for s, g in zip(spans(results), gpus, strict=True) if g == gpu]) <= 2
    for r in results:
        assert outputs(r)["fresh"] == "False 2 False"
        assert outputs(r)["gpu"] == "'' []"  # a logical GPU: no device node to expose
        assert any("no device for" in w for w in r.warnings)
        assert r.where.endswith(", forked") == (kernel_start == "fork"), r.where
        assert not [w for w in r.warnings if "kernel_start" in w]


def test_ray_force_cancels_a_task_past_its_time(course, ray_cluster):
    from autograder.executors.ray_cluster import RayExecutor

    # The task's clock (8 s) runs out before the kernel's own (60 s): Ray must stop it.
    executor = RayExecutor(spec_for(course, kernel_start="fresh", notebook_timeout=60, cell_timeout=60), task_timeout=8)
    began = time.monotonic()
    result = executor.execute(probe_notebook(seconds=60), "sleeper")
    assert result.status == "failed" and "was cancelled" in result.reason
    assert time.monotonic() - began < 30
    executor.close()


# --------------------------------------------------------------------------- Ray actors forking kernels

MARKER = "autograder-ray-actor-test-leftover"


@pytest.mark.usefixtures("forking")
def test_ray_actors_grade_the_same_class_alike_forked_and_fresh(course, ray_cluster):
    for student in FORK_CLASS:
        make_submission(course, LAB, student)

    forked, fresh = verdicts(course, "fork", executor="ray"), verdicts(course, "fresh", executor="ray")
    assert forked == fresh
    assert {s: v[:2] for s, v in forked.items()} == CLASS_SCORES


@pytest.mark.usefixtures("forking")
def test_nothing_of_one_job_reaches_the_next_on_the_same_ray_actor(course, ray_cluster):
    from autograder.executors.ray_cluster import RayExecutor

    executor = RayExecutor(spec_for(course, kernel_start="fork"), max_concurrent=1)
    try:
        (actor,) = executor._actors
        results = [executor.execute(notebook(source), f"job{i}") for i, source in enumerate([DIRTY, CLEAN] * 2)]
        assert executor._actors == {actor}  # one actor ran them all
    finally:
        executor.close()
    assert_completed_forked(results)  # forked, and no kernel_start warning
    assert all(re.fullmatch(r"Ray node \w{12}, Ray GPU [01], forked", r.where) for r in results), results[0].where
    assert [r.prepared for r in results] == [True] * 4  # the actor's slot prepared each kernel ahead
    dirty, clean = (int(cell_text(results[i]).split()[1]) for i in (0, 1))
    assert clean == dirty - 1  # the same threads as any kernel has, less the leftover


SLEEPER = f"""
import subprocess, sys, time
subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1000)', {MARKER!r}], start_new_session=True)
time.sleep(300)
"""


@pytest.mark.usefixtures("forking")
def test_ray_kills_and_replaces_an_actor_past_its_time(course, ray_cluster):
    from autograder.executors.ray_cluster import RayExecutor

    # The job's clock (20 s) runs out before the kernel's own (300 s): the actor is killed.
    spec = spec_for(course, kernel_start="fork", notebook_timeout=300, cell_timeout=300)
    executor = RayExecutor(spec, task_timeout=20, max_concurrent=1)
    try:
        warm = executor.execute(notebook("print(6 * 7)"), "warm")  # the actor, its zygote, its first kernel
        (actor,) = executor._actors
        began = time.monotonic()
        result = executor.execute(notebook(SLEEPER), "sleeper")
        assert time.monotonic() - began < 40
        (replacement,) = executor._actors
        after = executor.execute(notebook("print(6 * 7)"), "after")
    finally:
        executor.close()
    assert_completed_forked([warm, after])
    assert cell_text(after) == "42\n"
    assert (result.status, result.failure) == ("failed", FailureKind.TIMEOUT)
    assert result.reason == "timeout: the Ray actor ran it longer than 20 s and was killed (and replaced)"
    assert replacement != actor
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(actor.close.remote(), timeout=30)
    # the killed actor's zygote, kernel and what it started go with it
    assert processes_left(MARKER, within=15) == []


@pytest.mark.usefixtures("forking")
def test_a_ray_actor_that_dies_mid_job_is_a_failed_result_and_is_replaced(course, ray_cluster):
    from concurrent.futures import ThreadPoolExecutor

    from autograder.executors.ray_cluster import RayExecutor

    spec = spec_for(course, kernel_start="fork", notebook_timeout=300, cell_timeout=300)
    executor = RayExecutor(spec, max_concurrent=1)
    try:
        (actor,) = executor._actors
        with ThreadPoolExecutor(max_workers=1) as pool:
            running = pool.submit(executor.execute, notebook(SLEEPER), "sleeper")
            deadline = time.monotonic() + 120
            while not processes_with(MARKER) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert processes_with(MARKER), "the job did not start"
            ray.kill(actor)  # as the node's OOM killer or a lost node would
            result = running.result(timeout=60)
        (replacement,) = executor._actors
        after = executor.execute(notebook("print(6 * 7)"), "after")
    finally:
        executor.close()
    assert (result.status, result.failure) == ("failed", FailureKind.RAY_WORKER_FAILED)
    assert result.reason.startswith("the Ray worker failed: "), result.reason
    assert replacement != actor
    assert_completed_forked([after])
    assert processes_left(MARKER, within=15) == []


def test_a_ray_actor_whose_slot_cannot_fork_starts_fresh_kernels_and_says_so(course, ray_cluster):
    from autograder.executors.ray_cluster import RayExecutor

    # Unsandboxed kernels cannot be forked (fork_unavailable): the actor's slot starts them fresh.
    spec = dataclasses.replace(spec_for(course, kernel_start="fork"), sandbox=False)
    executor = RayExecutor(spec, max_concurrent=1)
    try:
        result = executor.execute(notebook("print(6 * 7)"), "job")
    finally:
        executor.close()
    assert (result.status, cell_text(result), result.sandboxed) == ("completed", "42\n", False)
    assert re.fullmatch(r"Ray node \w{12}, Ray GPU [01]", result.where), result.where
    assert (
        "c.Grading.kernel_start = 'fork' is not possible here, kernels start fresh (slower): kernels run unsandboxed"
        in result.warnings
    )

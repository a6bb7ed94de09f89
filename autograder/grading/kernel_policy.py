"""What a grading kernel may see and where it runs: the coordinator's policy, decided here alone.

The executors (autograder/executors/) carry out a JobSpec without judging it; this module
writes it: the limits (from c.Grading), the environment (record mode, threads, no course
paths), the read-only binds (the checks package and the public data sets; never source/,
private/, the gradebook or data/labels/), the modules a prepared kernel imports ahead (what
the instructor's source imports), and which executor runs the batch.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat

from ..checks.accuracy import LABELS_FOLDER
from ..checks.by_hand import without_magics
from ..checks.checker import MODE_VARIABLE
from ..course import Course, CourseError
from ..executors import Executor, JobSpec, Limits, LocalExecutor, RayExecutor, SlotPool, visible_gpus
from ..settings import Grading


def job_spec(course: Course, lab: str, settings: Grading) -> JobSpec:
    """How this lab's kernels start: the same for every submission and slot."""
    modules = dict.fromkeys([*source_imports(course.source_notebooks(lab)), *settings.warm_up_modules])
    return JobSpec(
        limits=limits_from(settings),
        env=kernel_environment(settings),
        read_only=tuple((str(host), inside) for host, inside in read_only_binds(course)),
        sandbox=True if settings.require_sandbox else None,
        warm_up_modules=tuple(modules),
        kernel_start=settings.kernel_start,
    )


CHECKS_PACKAGE = Path(__file__).resolve().parent.parent / "checks"
SANDBOX_LIBRARY = "/opt/autograder-lib"  # PYTHONPATH inside: holds autograder/checks only
SANDBOX_DATA = "/course-data"


def source_imports(notebooks: list[Path]) -> list[str]:
    """The modules the instructor's notebooks import at the top level of their cells, in order:
    what a prepared kernel imports ahead (the trusted source, not the submission, decides)."""
    import ast

    found: list[str] = []
    for path in notebooks:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            try:
                tree = ast.parse(without_magics(cell.source))
            except SyntaxError:
                continue
            for node in tree.body:
                if isinstance(node, ast.Import):
                    found += [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.append(node.module)
    return list(dict.fromkeys(found))


def make_executor(
    spec: JobSpec,
    settings: Grading,
    *,
    jobs: int | None = None,
    workers: int | None = None,
    executor: str | None = None,
) -> Executor:
    """The executor the settings (or the CLI) ask for, sized for `jobs` submissions."""
    kind = executor or settings.executor
    if kind == "ray":
        return RayExecutor(
            spec,
            address=settings.ray_address or None,
            gpus_per_job=settings.ray_gpus_per_job,
            jobs_per_gpu=settings.jobs_per_gpu,
            max_concurrent=workers or settings.workers or None,
        )
    if kind != "local":
        raise CourseError(f"unknown executor {kind!r} (local or ray)")
    slots = SlotPool.for_machine(
        gpus=grading_gpus(settings.gpus), jobs_per_gpu=settings.jobs_per_gpu, cpu_jobs=cpu_jobs(settings, workers)
    )
    return LocalExecutor(spec, slots, jobs=jobs, prepare_ahead=settings.prepared_per_slot)


def cpu_jobs(settings: Grading, workers: int | None = None) -> int:
    """CPU slots: --workers, else c.Grading.workers, else the cores shared out between jobs of
    threads_per_job threads each (the one place this count is made)."""
    return workers or settings.workers or max(1, (os.cpu_count() or 1) // max(1, settings.threads_per_job))


def grading_gpus(setting: str) -> list[int]:
    """c.Grading.gpus: 'auto' → every visible GPU, 'none' → [], '0,2' → those (each must exist)."""
    text = setting.strip().lower()
    if text in ("auto", ""):
        return visible_gpus()
    if text == "none":
        return []
    try:
        wanted = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CourseError(f"c.Grading.gpus = {setting!r}: expected 'auto', 'none' or numbers like '0,2'") from None
    missing = sorted(set(wanted) - set(visible_gpus()))
    if missing:
        raise CourseError(
            f"c.Grading.gpus names GPU(s) {missing} that this machine does not have "
            f"(visible: {visible_gpus() or 'none'})"
        )
    return wanted


def limits_from(settings: Grading) -> Limits:
    """A CPU job's limits, every field from c.Grading: the one place settings become limits (a GPU
    slot drops RLIMIT_AS: JobSpec.limits_for)."""
    return Limits(
        cell_timeout=settings.cell_timeout,
        notebook_timeout=settings.notebook_timeout,
        cpu_seconds=settings.cpu_seconds,
        memory_bytes=int(settings.memory_gib * 2**30) if settings.memory_gib else None,
        file_size_bytes=settings.file_size_mib * 2**20,
        tmpfs_bytes=settings.tmpfs_mib * 2**20,
        max_processes=settings.max_processes,
        max_output_bytes=settings.max_output_mib * 2**20,
        job_folder_bytes=settings.job_folder_mib * 2**20,
        job_folder_inodes=settings.job_folder_inodes,
    )


def kernel_environment(settings: Grading) -> dict[str, str]:
    threads = str(settings.threads_per_job)
    return {
        MODE_VARIABLE: "record",
        "PYTHONPATH": SANDBOX_LIBRARY,
        "AUTOGRADER_DATA": SANDBOX_DATA,
        "PYTHONHASHSEED": "0",
        "USER": "student",
        "LOGNAME": "student",  # no /etc/passwd inside: getpass (torch.compile) reads these
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    }


def read_only_binds(course: Course) -> list[tuple[Path, str]]:
    """The checks package alone (not the course: source/ and private/ hold the answers), and every
    staged data set except data/labels/, the held-out labels the coordinator keeps."""
    binds = [(CHECKS_PACKAGE, f"{SANDBOX_LIBRARY}/autograder/checks")]
    if course.data.is_dir():
        binds += [
            (p, f"{SANDBOX_DATA}/{p.name}")
            for p in sorted(course.data.iterdir())
            if p.is_dir() and p.name != LABELS_FOLDER
        ]
    return binds

"""Why a submission failed, as a type: set where the failure happens, carried to every report.

A failed submission's `reason` is for people ("timeout: cell 7 ran longer than 300 s"); its
FailureKind is for programs: the executors set it on an ExecutionResult, the coordinator on a
SubmissionError, and it travels unchanged into result.json, the table's summary, the CSV and
the gradebook's flag. Nothing recovers it by reading the reason's text. A shared contract of
both sides of grading, so it imports nothing.
"""

from __future__ import annotations

from enum import StrEnum


class FailureKind(StrEnum):
    """The value is the short name tables and the CSV show."""

    # The submission's files (the coordinator, before any kernel)
    NOT_A_REGULAR_FILE = "not a regular file"  # a FIFO, device, socket or folder
    SYMBOLIC_LINK = "symbolic link"  # the notebook or a folder above it is a link
    MISSING_NOTEBOOK = "missing from the submission"
    TOO_LARGE = "over the size cap"  # c.Grading.max_submission_mib
    NOT_TEXT = "not a text file"  # not UTF-8
    NOT_JSON = "not valid JSON"
    NOT_A_NOTEBOOK = "not a valid notebook"  # JSON of the wrong shape, depth, lone surrogates
    NOT_SANITIZABLE = "could not be sanitized"  # nbgrader's preprocessors refused its metadata
    BAD_TIMESTAMP = "bad timestamp"  # timestamp.txt is not a date
    BAD_STUDENT_ID = "unusable student id"  # the folder name under submitted/
    # The run (the executors)
    SANDBOX_UNAVAILABLE = "sandbox unavailable"  # c.Grading.require_sandbox and no bubblewrap
    KERNEL_DID_NOT_START = "kernel did not start"
    KERNEL_STOPPED = "kernel stopped"  # before the first cell
    KERNEL_DIED = "kernel died"
    TIMEOUT = "timeout"
    OUTPUT_OVER = "output over"  # the outputs' cap (64 MiB)
    JOB_FOLDER_FULL = "job folder full"  # c.Grading.job_folder_mib / job_folder_inodes
    GPU_MEMORY = "GPU memory over its share"
    EXECUTION_FAILED = "execution failed"  # the kernel broke the protocol, or was cancelled
    RAY_WORKER_FAILED = "Ray worker failed"
    # Ours
    INTERNAL_ERROR = "internal error"  # a bug of the grader: graded again next run

    @property
    def regraded(self) -> bool:
        """A result failed this way is not reused by the next run (it says nothing of the file)."""
        return self is FailureKind.INTERNAL_ERROR

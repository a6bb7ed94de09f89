"""One grading outcome per student and lab, kept in `autograded/<student>/<lab>/result.json`.

The file is written last and atomically, so a batch killed at any moment leaves either a
complete result or none; a rerun skips submissions whose result matches the same
submission file and the same references (resume), and `--force` regrades them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..atomic_file import write_atomically
from ..outcomes import FailureKind

RESULT_FILE = "result.json"


@dataclass
class CheckVerdict:
    """One check's verdict (verdicts.py): passed or not, and the message the student reads."""

    name: str
    passed: bool
    message: str
    weight: float
    hidden: bool


@dataclass
class CellScore:
    """One test cell's score and its checks' verdicts."""

    notebook: str
    grade_id: str
    score: float
    max_score: float
    checks: list[CheckVerdict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CellScore:
        return cls(
            str(data["notebook"]),
            str(data["grade_id"]),
            float(data["score"]),
            float(data["max_score"]),
            [CheckVerdict(**check) for check in data.get("checks", [])],
        )


@dataclass
class Result:
    student: str
    lab: str
    status: str  # "graded" or "failed"
    reason: str | None = None  # why it failed, for people (or a warning, such as "unsandboxed")
    score: float = 0.0
    max_score: float = 0.0
    sandboxed: bool = True
    cells: list[CellScore] = field(default_factory=list)  # every test cell judged
    fingerprint: str = ""  # hash of the submission files and the references it was judged with
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # what the run went on despite (no GPU memory limit...)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage (see batch.grade_submission)
    failure: FailureKind | None = None  # why it failed, for programs: set where it failed, never parsed

    def __post_init__(self):  # from result.json: plain values become the types
        self.cells = [c if isinstance(c, CellScore) else CellScore.from_dict(c) for c in self.cells]
        if self.failure is not None and not isinstance(self.failure, FailureKind):
            self.failure = FailureKind(self.failure)

    def fail(self, reason: str, failure: FailureKind) -> None:
        self.status, self.reason, self.failure = "failed", reason, failure

    @property
    def failure_kind(self) -> FailureKind | None:
        """Why it failed (for summaries, the CSV, reuse), or None when graded."""
        return None if self.status == "graded" else self.failure

    @property
    def reusable(self) -> bool:
        """Whether a later run may keep this result for the same files: graded, or failed for a
        reason of the submission's own (a result of an older grader that carries no failure kind,
        or an internal error, is graded again)."""
        return self.status == "graded" or (self.failure is not None and not self.failure.regraded)

    @property
    def status_text(self) -> str:
        text = self.status if self.status == "graded" else f"failed: {self.reason}"
        return text if self.sandboxed else f"{text} (UNSANDBOXED)"


def printable(text: str) -> str:
    """Text any terminal, file or page can carry: lone surrogates (from file names or notebook
    content in a reason) written as \\udXXX escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def result_path(autograded: Path, student: str, lab: str) -> Path:
    return autograded / student / lab / RESULT_FILE


def save_result(autograded: Path, result: Result) -> Path:
    path = result_path(autograded, result.student, result.lab)
    return write_atomically(path, json.dumps(asdict(result), indent=1) + "\n")  # FailureKind is a str


def load_result(autograded: Path, student: str, lab: str) -> Result | None:
    path = result_path(autograded, student, lab)
    try:
        if path.is_symlink() or not path.is_file():
            return None
        return Result(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, RecursionError):  # ValueError: bad JSON or UTF-8
        return None  # a damaged result is regraded, not trusted


def fingerprint(contents: dict[str, bytes], references_file: Path) -> str:
    """A hash of the submission (file name → its bytes, or a marker for a missing or refused
    file) and of the references it is judged with."""
    digest = hashlib.sha256()
    for name, data in sorted(contents.items()):
        digest.update(name.encode())
        digest.update(data)
    digest.update(references_file.name.encode())
    digest.update(references_file.read_bytes() if references_file.is_file() else b"<missing>")
    return digest.hexdigest()

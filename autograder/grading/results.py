"""One grading outcome per student and lab, kept in `autograded/<student>/<lab>/result.json`.

The file is written last and atomically, so a batch killed at any moment leaves either a
complete result or none; a rerun skips submissions whose result matches the same
submission file and the same references (resume), and `--force` regrades them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

RESULT_FILE = "result.json"
# What failed results' reasons say (runner, execute, sanitize, executors), shortest first where nested.
FAILURE_KINDS = ("kernel did not start", "kernel stopped", "kernel died", "timeout", "not valid JSON",
                 "not a valid notebook", "not a text file", "timestamp.txt", "a submission may have",
                 "not a regular file", "symbolic link", "missing from the submission", "GPU memory over its share", "output over", "sandbox unavailable",
                 "Ray worker failed", "internal error")


@dataclass
class Result:
    student: str
    lab: str
    status: str                  # "graded" or "failed"
    reason: str | None = None    # why it failed (or a warning, such as "unsandboxed")
    score: float = 0.0
    max_score: float = 0.0
    sandboxed: bool = True
    cells: list[dict] = field(default_factory=list)   # CellScore.to_dict() of every test cell
    fingerprint: str = ""        # hash of the submission files and the references it was judged with
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)   # what the run went on despite (no GPU memory limit...)
    timings: dict[str, float] = field(default_factory=dict)   # seconds per stage (see batch.grade_submission)

    @property
    def failure_kind(self) -> str | None:
        """A short name for why it failed (for summaries), or None when graded."""
        if self.status == "graded":
            return None
        reason = self.reason or "no reason given"
        for phrase in FAILURE_KINDS:
            if phrase in reason:
                return phrase
        return reason.split(":")[0][:40]

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
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(result), indent=1) + "\n")
    os.replace(temporary, path)
    return path


def load_result(autograded: Path, student: str, lab: str) -> Result | None:
    path = result_path(autograded, student, lab)
    try:
        if path.is_symlink() or not path.is_file():
            return None
        return Result(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, RecursionError):   # ValueError: bad JSON or UTF-8
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

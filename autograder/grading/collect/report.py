"""What a collection finds and reports: the notebooks collected, the files skipped with the rule
that skipped them, and the candidate notebooks found on the way."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class Collected:
    student: str
    notebook: str
    source: str
    timestamp: datetime | None
    note: str = ""


@dataclass
class Skipped:
    source: str
    reason: str
    student: str | None = None


@dataclass
class CollectReport:
    lab: str
    layout: str
    collected: list[Collected] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def students(self) -> list[str]:
        return sorted({c.student for c in self.collected})


@dataclass
class _Candidate:
    student: str
    notebook: str
    source: str
    file: str  # its name in the temporary folder
    digest: str
    time: datetime | None
    order: int | datetime | None  # Canvas: its attachment id; the other layouts: the entry's date
    late: bool


def _when(c: _Candidate) -> str:
    if isinstance(c.order, datetime):
        return f"dated {c.order:%Y-%m-%d %H:%M:%S} UTC"
    return f"a later upload, attachment {c.order}"

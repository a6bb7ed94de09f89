"""The references: what the build recorded from the instructor's solution, what grading judges with.

The contract between the two pipelines. `authoring/record.py` writes it (every check's
observation, its test cell, public or hidden); the coordinator reads it (grading/verdicts.py)
and never lets it into a sandbox. The public document, inside each release notebook's metadata
(authoring/release_metadata.py), holds that notebook's public checks only, without grade ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .checks.observation import Observation, decode, encode

REFERENCES_VERSION = 1


@dataclass
class Reference:
    """A check as the build recorded it: the solution's observation and where it belongs."""

    observation: Observation
    notebook: str  # notebook name without .ipynb
    grade_id: str  # the test cell it was recorded in
    cell_index: int
    hidden: bool

    @property
    def name(self) -> str:
        return self.observation.name

    @property
    def weight(self) -> float:
        return float(self.observation.params.get("weight", 1.0))


def references_document(references: dict[str, Reference], *, public_only: bool = False) -> dict:
    """References as JSON (observation payloads, safetensors inside).

    public_only: the public checks alone, with no grade_id or notebook fields (students need
    nothing else): what a release notebook carries.
    """
    checks = {}
    for name, ref in sorted(references.items()):
        if public_only and ref.hidden:
            continue
        entry = encode(ref.observation)
        if not public_only:
            entry.update(notebook=ref.notebook, grade_id=ref.grade_id, cell_index=ref.cell_index, hidden=ref.hidden)
        checks[name] = entry
    return {"version": REFERENCES_VERSION, "checks": checks}


def public_document(references: dict[str, Reference]) -> dict:
    return references_document(references, public_only=True)


def save_references(references: dict[str, Reference], file: Path, *, public_only: bool = False) -> None:
    """The private references file (public_only: the public document alone, as a file)."""
    document = references_document(references, public_only=public_only)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")


def load_references(file: Path) -> dict[str, Reference]:
    document = json.loads(Path(file).read_text())
    references = {}
    for name, entry in document["checks"].items():
        references[name] = Reference(
            decode(entry), entry["notebook"], entry["grade_id"], entry["cell_index"], entry["hidden"]
        )
    return references

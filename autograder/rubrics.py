"""The rubrics file: the written questions of a lab and their rubrics, private to the course.

A contract of the build and of grading alike (authoring/rubrics.py writes it from the source's
manually graded answer cells; `autograder review` and the feedback pages read it), so it lives
above both, like references.py. The file, private/<lab>/rubrics.json, is the course's and never
reaches a student: it holds the rubric and the instructor's model answer of every question.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .atomic_file import write_atomically
from .cells import nbgrader_meta

RUBRIC_KEY = "rubric"  # the source cell's metadata key (authoring/rubrics.py: the format)
RUBRICS_FILE = "rubrics.json"
FORMAT = 1


class RubricError(Exception):
    """A rubrics file that cannot be read, or a question it does not hold; str() says which and why."""


@dataclass(frozen=True)
class Criterion:
    points: float
    text: str
    comment: str = ""  # an example comment for a TA to give when the criterion is missed


@dataclass(frozen=True)
class Rubric:
    """One written question: where it is, its points, its criteria and the instructor's answer."""

    notebook: str
    grade_id: str
    points: float
    criteria: tuple[Criterion, ...]
    model_answer: str = ""
    cell_type: str = "markdown"


def is_manual_answer_cell(cell) -> bool:
    """nbgrader's manually graded answer: a solution cell that is graded too (markdown or code)."""
    meta = nbgrader_meta(cell)
    return bool(meta.get("solution")) and bool(meta.get("grade"))


def rubrics_file(course, lab: str) -> Path:
    return course.private / lab / RUBRICS_FILE


def save_rubrics(rubrics: list[Rubric], file: Path) -> Path:
    """private/<lab>/rubrics.json; the same rubrics give the same bytes (rebuilds leave it as it was)."""
    document = {"format": FORMAT, "questions": {r.grade_id: asdict(r) for r in rubrics}}
    text = json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if file.is_file() and file.read_text(encoding="utf-8") == text:
        return file
    return write_atomically(file, text)


def load_rubrics(file: Path) -> dict[str, Rubric]:
    """grade_id → Rubric, from a rubrics file the build wrote; RubricError when it cannot be read."""
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
        if document.get("format") != FORMAT:
            raise ValueError(f"format {document.get('format')!r}, expected {FORMAT}")
        return {
            grade_id: Rubric(**{**entry, "criteria": tuple(Criterion(**c) for c in entry["criteria"])})
            for grade_id, entry in document["questions"].items()
        }
    except FileNotFoundError:
        raise RubricError(f"{file} does not exist: build the lab (autograder build) first") from None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise RubricError(f"{file} cannot be read ({type(err).__name__}: {err}): build the lab again") from None

"""`autograder export --format canvas`: Canvas's gradebook import CSV.

The layout Canvas documents for Grades > Import (and writes in its own export): the columns Student,
ID, SIS User ID, SIS Login ID and Section, then one column per assignment; a "Points Possible" row
under the header, as Canvas's export has it. Canvas matches a row to a student by ID (its own user
id: the roster's lms_user_id) or SIS User ID (our student id). A lab column that names no existing
assignment becomes a new one. A failed or missing run leaves its cell empty, which Canvas imports as
no grade (never a 0); Canvas has no comment column to say why, so the export's report lists them.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ...atomic_file import write_atomically
from ..export import spreadsheet_safe
from .columns import grade_columns, number
from .scores import Scores

IDENTITY_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
POINTS_POSSIBLE = "    Points Possible"  # Canvas's export writes it indented so; its import skips the row


def write_canvas(scores: Scores, target: Path, per_cell: bool = False) -> int:
    """Write the file (atomically); returns how many student rows."""
    columns = grade_columns(scores, per_cell)
    with io.StringIO(newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([spreadsheet_safe(v) for v in [*IDENTITY_COLUMNS, *(c.title for c in columns)]])
        writer.writerow([POINTS_POSSIBLE, "", "", "", "", *(number(c.points) for c in columns)])
        for student in scores.students:
            values = [number(c.value(scores.of(c.lab, student.id))) for c in columns]
            identity = [student.sortable_name, student.lms_user_id, student.id, "", ""]
            writer.writerow([spreadsheet_safe(v) for v in [*identity, *values]])
        write_atomically(target, handle.getvalue())
    return len(scores.students)

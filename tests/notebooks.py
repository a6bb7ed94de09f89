"""Tiny notebooks written in code, for tests that need a lab without running a real one."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

SETUP = "import torch\nfrom autograder.checks import Checker\ncheck = Checker()"


def solution_cell(grade_id: str, source: str):
    return new_code_cell(
        source,
        metadata={
            "nbgrader": {"grade": False, "solution": True, "locked": False, "grade_id": grade_id, "schema_version": 3}
        },
    )


def grade_cell(grade_id: str, source: str, points: float = 1):
    return new_code_cell(
        source,
        metadata={
            "nbgrader": {
                "grade": True,
                "solution": False,
                "locked": True,
                "grade_id": grade_id,
                "points": points,
                "schema_version": 3,
            }
        },
    )


def locked_cell(grade_id: str, source: str):
    return new_code_cell(
        source,
        metadata={
            "nbgrader": {"grade": False, "solution": False, "locked": True, "grade_id": grade_id, "schema_version": 3}
        },
    )


def mean_square_lab():
    """A two-function lab: mean of squares (2 points) and a shape check (1 point). The mean's checks
    declare their inputs, so that a sum in its place is named "exactly 3x too large: a sum where a
    mean over 3 items is expected?" (a single number says nothing about how many items it averages)."""
    return new_notebook(
        cells=[
            new_markdown_cell("# Tiny lab"),
            locked_cell("setup", SETUP),
            solution_cell(
                "mean_square_solution",
                'def mean_square(x):\n    """x: (N,) -> scalar"""\n    ### BEGIN SOLUTION\n'
                "    return (x ** 2).mean()\n    ### END SOLUTION",
            ),
            grade_cell(
                "mean_square_tests",
                "ms_x = torch.tensor([1.0, 2.0, 3.0])\n"
                "check.close('mean_square_small', mean_square(ms_x), inputs=ms_x)\n"
                "### BEGIN HIDDEN TESTS\n"
                "ms_hidden_x = torch.tensor([-1.0, -3.0, 2.0, 0.5])\n"
                "check.close('mean_square_negative', mean_square(ms_hidden_x), inputs=ms_hidden_x)\n"
                "### END HIDDEN TESTS",
                points=2,
            ),
            solution_cell(
                "outer_solution",
                'def outer(a, b):\n    """a: (N,), b: (M,) -> (N, M)"""\n    ### BEGIN SOLUTION\n'
                "    return a[:, None] * b[None, :]\n    ### END SOLUTION",
            ),
            grade_cell(
                "outer_tests",
                "check.shape('outer_shape', outer(torch.ones(3), torch.ones(4)), (3, 4))\n"
                "### BEGIN HIDDEN TESTS\n"
                "check.close('outer_values', outer(torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.5, 4.0])))\n"
                "### END HIDDEN TESTS",
            ),
        ]
    )


SOFTMAX_HINT = "exp(z - max) / sum(exp(z - max)) along the last dimension (dim=-1): z is (N, C)"
ROW_MAX_HINT = "the largest entry of each row: z.max(dim=-1).values, shape (N,)"


def case_lab():
    """A lab whose first test cell keeps its checks independent with check.case: a softmax that raises
    costs the softmax checks only, and the row maximum's hidden check after them still scores (each
    hidden check is half of the cell's 2 points). The second test cell has no case: there a raising
    row_max() leaves its hidden check never recorded, with its hint and the exception's last line."""
    return new_notebook(
        cells=[
            new_markdown_cell("# Softmax and row maxima"),
            locked_cell("setup", SETUP),
            solution_cell(
                "softmax_solution",
                'def softmax(z):\n    """z: (N, C) -> (N, C), rows sum to 1"""\n    ### BEGIN SOLUTION\n'
                "    return torch.softmax(z, dim=-1)\n    ### END SOLUTION",
            ),
            solution_cell(
                "row_max_solution",
                'def row_max(z):\n    """z: (N, C) -> (N,)"""\n    ### BEGIN SOLUTION\n'
                "    return z.max(dim=-1).values\n    ### END SOLUTION",
            ),
            grade_cell(
                "softmax_tests",
                "with check.case('softmax_small'):\n"
                "    check.close('softmax_small', softmax(torch.tensor([[1.0, 2.0, 0.5]])))\n"
                "### BEGIN HIDDEN TESTS\n"
                "z = torch.tensor([[1.0, -2.0], [3.0, 0.5]])\n"
                "with check.case('softmax_rows'):\n"
                f"    check.close('softmax_rows', softmax(z), hint={SOFTMAX_HINT!r})\n"
                f"check.close('row_max_rows', row_max(z.T), hint={ROW_MAX_HINT!r})\n"
                "### END HIDDEN TESTS",
                points=2,
            ),
            grade_cell(
                "row_max_tests",
                "check.shape('row_max_shape', row_max(torch.ones(3, 4)), (3,))\n"
                "### BEGIN HIDDEN TESTS\n"
                "wide = torch.linspace(-1, 1, 12).reshape(3, 4)\n"
                f"check.close('row_max_wide', row_max(wide), hint={ROW_MAX_HINT!r})\n"
                "### END HIDDEN TESTS",
            ),
        ]
    )


def write_lab(course_root: Path, lab: str, nb, name: str | None = None) -> Path:
    path = course_root / "source" / lab / f"{name or lab}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path

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
    """A two-function lab: mean of squares (2 points) and a shape check (1 point)."""
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
                "check.close('mean_square_small', mean_square(torch.tensor([1.0, 2.0, 3.0])))\n"
                "### BEGIN HIDDEN TESTS\n"
                "check.close('mean_square_negative', mean_square(torch.tensor([-1.0, -3.0, 2.0, 0.5])))\n"
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


def write_lab(course_root: Path, lab: str, nb, name: str | None = None) -> Path:
    path = course_root / "source" / lab / f"{name or lab}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path

"""The student's `autograder` command: `autograder validate NOTEBOOK` (typer, rich for the table).

Exit codes: 0 every public check passed, 1 a public check failed or a cell raised, 3 the
notebook is unusable (see the reasons), 4 a time limit was passed; 2 is a usage error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .validate import (
    FAILED,
    HIDDEN_NOTE,
    NO_PUBLIC,
    PASSED,
    RAISED,
    Report,
)
from .validate import (
    validate as validate_notebook,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Check a lab notebook before you submit it: run it as the grader will, with its public checks.",
)

STYLES = {PASSED: "green", FAILED: "red", RAISED: "red", NO_PUBLIC: "cyan"}


@app.callback()
def main() -> None:
    """Check a lab notebook before you submit it (`autograder validate NOTEBOOK`)."""


@app.command()
def validate(
    notebook: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The notebook (.ipynb) to check.")
    ],
    cell_timeout: Annotated[
        float | None,
        typer.Option("--cell-timeout", min=0.1, help="Seconds per cell (may only lower the grader's limit)."),
    ] = None,
    notebook_timeout: Annotated[
        float | None,
        typer.Option("--notebook-timeout", min=0.1, help="Seconds for the whole notebook (may only lower it)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON (for scripts).")] = False,
) -> None:
    """Run NOTEBOOK in a fresh kernel as the grader will (your file is not changed) and report its public checks.

    Exit code: 0 all passed, 1 a check failed or a cell raised, 3 the notebook is unusable, 4 too slow."""
    if as_json:
        report = validate_notebook(notebook, cell_timeout=cell_timeout, notebook_timeout=notebook_timeout)
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        console = Console(stderr=True)
        with console.status(f"checking {notebook.name}...") as status:

            def progress(cell: str) -> None:
                status.update(f"running {escape(notebook.name)}: {escape(cell)}")

            report = validate_notebook(
                notebook, cell_timeout=cell_timeout, notebook_timeout=notebook_timeout, progress=progress
            )
        show(report, Console())
    raise typer.Exit(report.exit_code)


def show(report: Report, console: Console) -> None:
    """The report for a person: problems first, the tests cells' table, other errors, time, hidden checks."""
    say = console.print
    say(f"[bold]{escape(Path(report.notebook).name)}[/]" + (f" (lab {escape(report.lab)})" if report.lab else ""))
    for problem in report.problems:
        say(f"[bold red]unusable:[/] {escape(problem)}", soft_wrap=True)
    for cell in report.cell_problems:
        say(f"[bold red]{cell.kind}:[/] {escape(cell.message)}", soft_wrap=True)
    for note in report.notes:
        say(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    if report.tests and report.executed:
        table = Table(title="graded cells (public checks)", title_justify="left")
        table.add_column("cell")
        table.add_column("points", justify="right")
        table.add_column("result")
        table.add_column("message", overflow="fold")
        for test in report.tests:
            style = STYLES.get(test.status, "yellow")
            table.add_row(escape(test.name), f"{test.points:g}", f"[{style}]{test.status}[/]", escape(test.message))
        say(table)
    for error in report.errors:
        say(f"[red]raised:[/] {escape(error.name)}: {escape(error.message)}", soft_wrap=True)
    if report.timeout:
        say(f"[bold red]time limit:[/] {escape(report.timeout)}", soft_wrap=True)
    if report.executed:
        say(
            f"ran in {report.seconds:.1f} s (the grader's limit: {report.notebook_timeout:g} s for the notebook, "
            f"{report.cell_timeout:g} s per cell)"
        )
        say(
            f"public checks passed in cells worth {report.points_passed:g} of {report.points:g} points. {HIDDEN_NOTE}",
            soft_wrap=True,
        )
    verdict = {
        0: "[green]ready to submit[/]: every public check passed",
        1: "[red]not yet[/]: a public check failed or a cell raised",
        3: "[bold red]unusable[/]: fix the problems above before you submit",
        4: "[bold red]too slow[/]: the notebook passed the grader's time limit",
    }[report.exit_code]
    say(f"{verdict} (exit {report.exit_code})")


if __name__ == "__main__":
    app()

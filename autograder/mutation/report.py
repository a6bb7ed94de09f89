"""What `autograder mutate` prints and keeps: a table per lab, the survivors in words, the rates.

The JSON copy goes to private/<lab>/mutation.json: it quotes solution code, so it stays with
the course's private material.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from rich.table import Table

from ..atomic_file import write_atomically
from .campaign import MutantOutcome, MutationReport

STYLE = {"killed": "green", "survived": "bold red", "equivalent": "dim", "equivalent but killed": "yellow"}


def outcome_table(report: MutationReport) -> Table:
    table = Table(title=f"mutants of {report.lab}", show_lines=False)
    for column in ("verdict", "cell:line", "operator", "change", "what the student reads"):
        table.add_column(column, overflow="fold")
    for o in report.outcomes:
        m = o.mutant
        table.add_row(
            f"[{STYLE[o.verdict]}]{o.verdict}[/]" + (" (cause named)" if o.names_cause else ""),
            f"{m.cell}:{m.line}",
            m.operator,
            m.name or m.change,
            _evidence(o),
        )
    return table


def survivor_lines(report: MutationReport) -> list[str]:
    return [_survivor_line(o) for o in report.outcomes if o.verdict == "survived"] + [
        f"declared equivalent but killed: {o.mutant.change!r} in cell {o.mutant.cell!r} ({o.reason}): "
        "the declaration is wrong, or a check is stricter than the docstring"
        for o in report.outcomes
        if o.verdict == "equivalent but killed"
    ]


def _survivor_line(o: MutantOutcome) -> str:
    where = f"in cell {o.mutant.cell!r} (line {o.mutant.line}{', ' + o.mutant.name if o.mutant.name else ''})"
    if o.public_failures:
        return (
            f"only public checks, which earn no points, tell {o.mutant.change!r} from the solution {where}: "
            f"{', '.join(o.public_failures)} failed; give that promise a hidden check too"
        )
    return f"no check distinguishes {o.mutant.change!r} from the solution {where}"


def summary_line(report: MutationReport) -> str:
    judged = len(report.judged)
    kills = sum(o.killed for o in report.judged)
    sampled = f" (a sample of {report.total_mutants})" if len(report.outcomes) < report.total_mutants else ""
    chosen = f" of the cells {', '.join(report.cells)}" if report.cells else ""
    return (
        f"{report.lab}: {len(report.outcomes)} mutants{chosen}{sampled}: killed {report.count('killed')}, "
        f"survived {report.count('survived')}, equivalent {report.count('equivalent')}"
        + (
            f", equivalent but killed {report.count('equivalent but killed')}"
            if report.count("equivalent but killed")
            else ""
        )
        + f"; kill rate {kills}/{judged} = {100 * report.kill_rate:.1f} %; "
        f"kills naming the cause {100 * report.named_rate:.1f} %; {report.seconds:.0f} s"
    )


def save_report(report: MutationReport, file: Path) -> Path:
    document = {
        "lab": report.lab,
        "date": datetime.date.today().isoformat(),
        "mutants": len(report.outcomes),
        "total_mutants": report.total_mutants,
        "cells": list(report.cells) or "all",
        "kill_rate": report.kill_rate,
        "named_rate": report.named_rate,
        "seconds": report.seconds,
        "problems": report.problems,
        "outcomes": [_as_dict(o) for o in report.outcomes],
    }
    return write_atomically(file, json.dumps(document, indent=1) + "\n")


def _evidence(o: MutantOutcome) -> str:
    if o.verdict.startswith("equivalent") and not o.killed:
        return f"declared equivalent: {o.reason}"
    if o.run_failure:
        return f"the run failed: {o.run_failure}"
    if not o.failed_checks:
        return f"full marks ({o.score:g}/{o.max_score:g})"
    name, message = o.failed_checks[0]
    more = f" (+{len(o.failed_checks) - 1} more)" if len(o.failed_checks) > 1 else ""
    return f"{o.score:g}/{o.max_score:g}: {message}{more}"


def _as_dict(o: MutantOutcome) -> dict:
    m = o.mutant
    return {
        "verdict": o.verdict,
        "notebook": m.notebook,
        "cell": m.cell,
        "line": m.line,
        "operator": m.operator,
        "name": m.name,
        "change": m.change,
        "score": o.score,
        "max_score": o.max_score,
        "names_cause": o.names_cause,
        "run_failure": o.run_failure,
        "failed_checks": [{"check": c, "message": msg} for c, msg in o.failed_checks],
        "reason": o.reason,
        "public_failures": o.public_failures,
    }

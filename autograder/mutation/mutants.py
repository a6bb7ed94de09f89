"""The mutants of one lab: the catalogue's edits of every solution region, plus the instructor's own.

An instructor declares, in a solution cell's metadata of the SOURCE notebook (the build strips
the key from the release and the published solutions), what no operator makes and what is
harmless:

    "mutation": {
      "mutants": [{"name": "the identity path is a bare Linear",
                   "replace": "nn.Sequential(nn.Linear(D, M), nn.Sigmoid())", "with": "nn.Linear(D, M)",
                   "names": "sigmoid"}],
      "equivalent": [{"change": "x.detach().clone() -> x.detach()",
                      "reason": "the path is stacked into a new tensor: no alias survives"}]
    }

`replace` must occur in the cell once (else the mutant is reported as not applicable, never
silently dropped); `names`, optional, is a phrase the failing message must contain for the kill
to count as naming the cause. An equivalent's `change` is a mutant's change exactly as the
report prints it ("before -> after", in that cell).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat

from ..cells import BEGIN_SOLUTION, END_SOLUTION, is_solution_cell, marker_lines, nbgrader_meta
from .operators import solution_edits

METADATA_KEY = "mutation"
ARROW = " -> "


class DeclarationError(ValueError):
    """A declared mutant that cannot be read or applied: why (the caller names the cell)."""


@dataclass(frozen=True)
class Mutant:
    """One buggy version of one solution cell."""

    notebook: str  # the notebook's stem
    cell: str  # grade_id of the solution cell
    line: int  # line of the change in that cell (1-based)
    operator: str  # the catalogue's family, or "declared"
    before: str
    after: str
    source: str  # the whole mutated cell, markers kept (the submission strips them)
    name: str = ""  # a declared mutant's name
    names: str = ""  # a phrase the failing message must contain (declared mutants)

    @property
    def change(self) -> str:
        return f"{self.before}{ARROW}{self.after}"

    @property
    def label(self) -> str:
        what = self.name or self.change
        return f"{self.cell}:{self.line} [{self.operator}] {what}"


@dataclass(frozen=True)
class Equivalent:
    cell: str
    change: str
    reason: str


def lab_mutants(notebooks: list[Path]) -> tuple[list[Mutant], list[Equivalent], list[str]]:
    """Every mutant of the lab's source notebooks, the declared equivalents, and the problems of
    declarations that do not apply (to report)."""
    mutants: list[Mutant] = []
    equivalents: list[Equivalent] = []
    problems: list[str] = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "code" or not is_solution_cell(cell):
                continue
            grade_id = nbgrader_meta(cell)["grade_id"]
            for edit in solution_edits(cell.source):
                mutated = edit.apply(cell.source)
                mutants.append(Mutant(path.stem, grade_id, edit.line, edit.operator, edit.before, edit.after, mutated))
            found, equal, wrong = _declared(path.stem, grade_id, cell.source, cell.metadata.get(METADATA_KEY, {}))
            mutants.extend(found)
            equivalents.extend(equal)
            problems.extend(wrong)
    return _unique(mutants), equivalents, problems


def sample(mutants: list[Mutant], limit: int | None) -> list[Mutant]:
    """At most `limit` mutants, spread over cells and, within a cell, over operators (round
    robin, in source order), declared ones always kept: a small run still visits every cell."""
    if limit is None or len(mutants) <= limit:
        return list(mutants)
    chosen = [m for m in mutants if m.operator == "declared"]
    queues: dict[str, dict[str, list[Mutant]]] = {}
    for m in mutants:
        if m.operator != "declared":
            queues.setdefault(m.cell, {}).setdefault(m.operator, []).append(m)
    rounds = [_round_robin(list(by_operator.values())) for by_operator in queues.values()]
    while len(chosen) < limit and any(rounds):
        for queue in rounds:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    order = {id(m): i for i, m in enumerate(mutants)}
    return sorted(chosen, key=lambda m: order[id(m)])


def strip_declarations(nb) -> None:
    """The build's part: what the instructor declared never reaches a student."""
    for cell in nb.cells:
        cell.metadata.pop(METADATA_KEY, None)


# --------------------------------------------------------------------------- helpers


def _declared(notebook: str, cell: str, source: str, declared) -> tuple[list[Mutant], list[Equivalent], list[str]]:
    """The cell's declarations; each one that cannot apply is a problem (said), the others stand."""
    where = f"cell {cell!r} of {notebook}"
    if not isinstance(declared, dict) or set(declared) - {"mutants", "equivalent"}:
        return [], [], [f"{where}: metadata {METADATA_KEY!r} must be {{'mutants': [...], 'equivalent': [...]}}"]
    mutants, equivalents, problems = [], [], []
    for entry in declared.get("mutants", []):
        try:
            mutants.append(_declared_mutant(notebook, cell, source, entry))
        except DeclarationError as err:
            problems.append(f"{where}: {err}")
    for entry in declared.get("equivalent", []):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("change", "reason")):
            problems.append(f"{where}: an equivalent needs the strings 'change' and 'reason'")
        elif not entry["reason"].strip():
            problems.append(f"{where}: equivalent {entry['change']!r} needs a reason")
        else:
            equivalents.append(Equivalent(cell, entry["change"], entry["reason"]))
    return mutants, equivalents, problems


def _declared_mutant(notebook: str, cell: str, source: str, entry) -> Mutant:
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("name", "replace", "with")):
        raise DeclarationError("a declared mutant needs the strings 'name', 'replace' and 'with'")
    old, new = entry["replace"], entry["with"]
    count = source.count(old)
    if count != 1:
        raise DeclarationError(
            f"declared mutant {entry['name']!r} replaces {old!r}, which occurs {count} times in the cell "
            "(it must occur once)"
        )
    line = source[: source.index(old)].count("\n") + 1
    if not _in_solution(source, line):
        raise DeclarationError(f"declared mutant {entry['name']!r} changes line {line}, outside the solution")
    mutated = source.replace(old, new)
    return Mutant(
        notebook, cell, line, "declared", old, new, mutated, name=entry["name"], names=str(entry.get("names", ""))
    )


def _in_solution(source: str, line: int) -> bool:
    return any(a < line < b for a, b in marker_lines(source, BEGIN_SOLUTION, END_SOLUTION))


def _unique(mutants: list[Mutant]) -> list[Mutant]:
    """Two edits that give the same cell are one mutant (the first named)."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for m in mutants:
        if (m.cell, m.source) not in seen:
            seen.add((m.cell, m.source))
            kept.append(m)
    return kept


def _round_robin(queues: list[list[Mutant]]) -> list[Mutant]:
    out: list[Mutant] = []
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out

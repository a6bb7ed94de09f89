"""The rule's entry point: `function_violations`, a notebook read once and judged for each graded
function (its reach and the notebook-wide refusals, as sorted sentences)."""

from __future__ import annotations

import functools

from .reach import _Reach
from .refusals import _Refusals
from .vocabulary import _natural


def function_violations(sources: list[str], function: str, trusted=frozenset()) -> tuple[bool, list[str]]:
    """(found, violations) for `function` defined in the notebook whose code cells are `sources`.

    trusted: indices into `sources` of the instructor's cells (locked setup cells, test cells, as
    restored from the gradebook): exempt from the notebook-wide rules. Their bindings still count:
    an instructor cell that binds a graded name is a conflict like any other.
    found: whether `function` is bound anywhere (or could be: a cell that does not parse).
    violations: sorted short sentences, each naming the construct, its function or cell, and line.
    """
    return _notebook(tuple(sources), frozenset(trusted)).judge(function)


@functools.lru_cache(maxsize=16)
def _notebook(sources: tuple[str, ...], trusted: frozenset[int]) -> _Notebook:
    """One reading per notebook: a notebook's by-hand checks (five in lab 2) share it."""
    return _Notebook(list(sources), trusted)


class _Notebook(_Reach, _Refusals):
    """A notebook's cells, read once: judged for each of its graded functions."""

    # ------------------------------------------------------------------ judging one function

    def judge(self, function: str) -> tuple[bool, list[str]]:
        if function not in self.bindings:
            return (True, sorted(set(self.parse_errors), key=_natural)) if self.parse_errors else (False, [])
        violations = set(self.parse_errors) | set(self.notebook_problems()) | set(self.reach_problems(function))
        return True, sorted(violations, key=_natural)

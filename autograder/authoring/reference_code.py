"""Reference code runs in the build only: test cells as graded carry no `expected=` computation.

A check's `expected=` value (autograd's gradient, finite differences, a value from torch.nn)
is evaluated when the build runs the instructor's solution, which verifies the solution
against it. Under grading the same expression would compute a reference inside the student's
kernel, where their code can read it (the caller's frame, globals, a patched checker) and
record it as their answer. So the build writes every test cell twice: as the instructor wrote
it (the trusted run) and without its reference code (the gradebook's copy, which nbgrader's
OverwriteCells restores before a submission runs, and the release).

Reference code is:
- every `expected=` keyword argument of a call in a test cell;
- every statement of a test cell whose only job is to feed those arguments: an assignment,
  def or import binding names that nothing in the notebook uses outside `expected=`
  arguments (`tl_autograd = torch.func.grad(loss)(params)` used only in `expected=`).

Any other way of binding such a name (a loop variable, tuple unpacking shared with a value the
test uses, an augmented assignment) is refused with a SourceError: compute the reference
inside `expected=` or in an assignment of its own.
"""

from __future__ import annotations

import ast

from nbgrader.preprocessors import NbGraderPreprocessor

from ..cells import is_test_cell, nbgrader_meta
from ..checks.by_hand import parse_python, without_magics
from .source_rules import SourceError

EXPECTED = "expected"


def strip_expected_arguments(source: str) -> str:
    """`source` without any `expected=` keyword argument (the local half of the rule: safe on any
    test cell, used again when a submission is sanitized)."""
    return _strip(source, reference_only=frozenset(), path="", where=(None, None))


def reference_only_names(cells: list[str]) -> frozenset[str]:
    """Names whose every use, anywhere in the notebook (`cells`: the code cells' sources), is inside
    an `expected=` argument or in a statement that only binds such names (transitively: a loss
    function used only to compute an autograd reference is one too)."""
    records: list[tuple[set[str] | None, set[str]]] = []  # (names a removable statement binds, its loads)
    inside: set[str] = set()
    bound: set[str] = set()
    for source in cells:
        tree = _parse(source)
        if tree is None:
            continue
        in_expected = _expected_value_nodes(tree)
        inside |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) in in_expected}
        for body in _statement_lists(tree):
            for stmt in body:
                binds = _bound_by(stmt)
                parts = [stmt] if binds is not None or not _is_compound(stmt) else _header_parts(stmt)
                loads = {
                    n.id
                    for part in parts
                    for n in ast.walk(part)
                    if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Store) and id(n) not in in_expected
                }
                records.append((binds, loads))
                bound |= binds or set()
    names = set(bound)
    while True:  # shrink to the largest set whose every use is reference code
        outside = set().union(*(loads for binds, loads in records if binds is None or not binds <= names))
        used = inside.union(*(loads for binds, loads in records if binds is not None and binds <= names))
        smaller = {n for n in names if n not in outside and n in used}
        if smaller == names:
            return frozenset(names)
        names = smaller


def _is_compound(stmt) -> bool:
    return isinstance(stmt, (ast.For, ast.AsyncFor, ast.While, ast.If, ast.With, ast.AsyncWith, ast.Try))


def _header_parts(stmt) -> list:
    """The parts of a compound statement outside its bodies (a loop's target and iterable, a test)."""
    skip = {id(s) for field in ("body", "orelse", "finalbody") for s in getattr(stmt, field, []) or []}
    skip |= {id(h) for h in getattr(stmt, "handlers", []) or []}
    return [child for child in ast.iter_child_nodes(stmt) if id(child) not in skip]


def strip_reference_code(nb, path="") -> None:
    """Remove reference code from every test cell of `nb`, in place; SourceError naming the cell
    where a reference-only name is bound in a way that cannot be removed on its own."""
    codes = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    reference_only = reference_only_names(codes)
    for index, cell in enumerate(nb.cells):
        if is_test_cell(cell):
            cell.source = _strip(cell.source, reference_only, path, (index, nbgrader_meta(cell).get("grade_id")))


class StripReferenceCode(NbGraderPreprocessor):
    """nbgrader preprocessor form of strip_reference_code, first in generate_assignment's chain:
    the gradebook's copy of each test cell (SaveCells) and the release get the stripped source."""

    def preprocess(self, nb, resources):
        strip_reference_code(nb, resources.get("nbgrader", {}).get("notebook", ""))
        return nb, resources


# --------------------------------------------------------------------------- text surgery


def _strip(source: str, reference_only: frozenset[str], path, where: tuple) -> str:
    """where: (cell index, grade_id) for messages."""
    tree = _parse(source)
    if tree is None:
        return source
    spans: list[tuple[int, int, str]] = []  # (start, end, replacement) character offsets
    offsets = _LineOffsets(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == EXPECTED:
                    spans.append(_keyword_span(source, offsets.start(keyword), offsets.end(keyword)))
    for body in _statement_lists(tree):
        removed = [stmt for stmt in body if _is_reference_statement(stmt, reference_only, path, where)]
        for number, stmt in enumerate(removed):
            # A body left empty keeps one `pass`, at the first removed statement's place.
            keep_pass = len(removed) == len(body) and number == 0
            spans.append(
                (
                    offsets.line_start(stmt),
                    offsets.line_end(stmt),
                    _indent_of(source, offsets, stmt) + "pass\n" if keep_pass else "",
                )
            )
    if not spans:
        return source
    text = source
    for start, end, replacement in sorted(spans, reverse=True):
        text = text[:start] + replacement + text[end:]
    if _parse(text) is None:
        raise SourceError(
            path,
            where[0],
            "removing the reference code (expected= arguments) leaves a test cell that "
            "does not parse: keep each check call on lines of its own",
            where[1],
        )
    return text


def _is_reference_statement(stmt, reference_only, path, where) -> bool:
    names = _bound_by(stmt)
    if names is None:  # binds through attributes or subscripts, or does not bind
        hidden = {
            n.id
            for n in ast.walk(stmt)
            if isinstance(n, ast.Name)
            and isinstance(n.ctx, ast.Store)
            and n.id in reference_only
            and not _nested_in_function(stmt, n)
        }
        if hidden and not isinstance(
            stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.For, ast.While, ast.If, ast.With, ast.Try)
        ):
            _refuse(path, where, stmt, hidden)
        if isinstance(stmt, (ast.For, ast.AsyncFor)):
            target = {n.id for n in ast.walk(stmt.target) if isinstance(n, ast.Name)} & reference_only
            if target:
                _refuse(path, where, stmt, target)
        return False
    inside = names & reference_only
    if not inside:
        return False
    if inside != names:
        _refuse(path, where, stmt, inside)
    return True


def _refuse(path, where, stmt, names) -> None:
    listed = ", ".join(sorted(names))
    raise SourceError(
        path,
        where[0],
        f"line {stmt.lineno} binds {listed}, used only in expected= arguments, together "
        "with values the test uses (or as a loop variable): under grading it would be computed in the "
        "student's kernel. Compute the reference inside expected= (a lambda or an inline expression) or "
        "in an assignment of its own.",
        where[1],
    )


def _bound_by(stmt) -> set[str] | None:
    """The names a removable statement binds: plain assignments (Name targets, possibly in
    tuples), annotated assignments, defs, classes and imports; None for anything else."""
    if isinstance(stmt, ast.Assign):
        names = set()
        for target in stmt.targets:
            found = _target_names(target)
            if found is None:
                return None
            names |= found
        return names
    if isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        return _target_names(stmt.target)
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return set(_imported_names(stmt))
    return None


def _target_names(target) -> set[str] | None:
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, (ast.Tuple, ast.List)):
        names = set()
        for element in target.elts:
            found = _target_names(element.value if isinstance(element, ast.Starred) else element)
            if found is None:
                return None
            names |= found
        return names
    return None


def _imported_names(node) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.asname or alias.name.split(".")[0] for alias in node.names]
    return [alias.asname or alias.name for alias in node.names if alias.name != "*"]


def _nested_in_function(stmt, name_node) -> bool:
    for node in ast.walk(stmt):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)) and node is not stmt:
            if any(child is name_node for child in ast.walk(node)):
                return True
    return False


def _statement_lists(tree):
    """Every list of statements in the cell (module body, loop, if, with, try bodies), not those
    inside function bodies (a def is kept or removed whole)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                yield body
                stack.extend(
                    s for s in body if not isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                )
        for handler in getattr(node, "handlers", []) or []:
            stack.append(handler)


def _expected_value_nodes(tree) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == EXPECTED:
                    ids.update(id(n) for n in ast.walk(keyword.value))
    return ids


def _parse(source: str):
    try:  # parse_python: ast.parse is not thread-safe on CPython 3.11, and sanitize runs in grading threads
        return parse_python(without_magics(source))
    except SyntaxError:
        return None


def _keyword_span(source: str, start: int, end: int) -> tuple[int, int, str]:
    """What to cut for the keyword argument source[start:end]: with the comma after it when one
    follows (and the line, when nothing else is left on it), else with the comma before it."""
    after = end
    while after < len(source) and source[after] in " \t":
        after += 1
    if after < len(source) and source[after] == ",":
        after += 1
        while after < len(source) and source[after] in " \t":
            after += 1
        line_start = source.rfind("\n", 0, start) + 1
        if not source[line_start:start].strip() and source[after : after + 1] in ("\n", ""):
            return line_start, min(after + 1, len(source)), ""
        return start, after, ""
    before = start
    while before > 0 and source[before - 1] in " \t\r\n":
        before -= 1
    return (before - 1 if before > 0 and source[before - 1] == "," else start), end, ""


def _indent_of(source: str, offsets: _LineOffsets, stmt) -> str:
    line = source[offsets.line_start(stmt) :]
    return line[: len(line) - len(line.lstrip(" \t"))]


class _LineOffsets:
    """ast positions (1-based lines, UTF-8 byte columns) → character offsets in the source."""

    def __init__(self, source: str):
        self.lines = source.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def _offset(self, lineno: int, col: int) -> int:
        line = self.lines[lineno - 1] if lineno - 1 < len(self.lines) else ""
        return self.starts[lineno - 1] + len(line.encode("utf-8")[:col].decode("utf-8", errors="ignore"))

    def start(self, node) -> int:
        return self._offset(node.lineno, node.col_offset)

    def end(self, node) -> int:
        return self._offset(node.end_lineno, node.end_col_offset)

    def line_start(self, node) -> int:
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        return self.starts[first - 1]

    def line_end(self, node) -> int:
        """The end of the statement's last line, its newline included."""
        return self.starts[min(node.end_lineno, len(self.lines))]

"""What a cell binds at module level (defs, classes, assignments, imports, loop and with targets,
except names, walruses, match patterns, `global` declarations), and the names local to a function."""

from __future__ import annotations

import ast
from dataclasses import dataclass

from .vocabulary import KIND_WORDS


@dataclass
class Binding:
    """One place that binds a module-level name."""

    name: str
    cell: int
    line: int
    kind: str  # a key of KIND_WORDS
    node: ast.AST  # the def/class/import alias/statement
    value: ast.AST | None = None  # what the name is bound to, where the rule can see it
    top_level: bool = False  # a statement directly in the cell (not in a block)
    target: str = ""  # imports: the dotted name bound ("" for the other kinds)

    def place(self) -> str:
        return f"{KIND_WORDS[self.kind]} at cell {self.cell + 1}, line {self.line}"


def _target_names(target) -> list[ast.Name]:
    """The names a target binds (not attributes or subscripts, which bind nothing)."""
    if isinstance(target, ast.Name):
        return [target]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for element in target.elts for n in _target_names(element)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


def _pattern_names(pattern) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(pattern):
        if isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            found.append((node.name, node.lineno))
        elif isinstance(node, ast.MatchMapping) and node.rest:
            found.append((node.rest, node.lineno))
    return found


def _expressions_walrus(node):
    """Assignment expressions that bind in the enclosing (module) scope: not inside a lambda."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ast.Lambda):
            continue
        if isinstance(current, ast.NamedExpr):
            yield current
        stack.extend(ast.iter_child_nodes(current))


def _module_bindings(tree: ast.Module, cell: int) -> list[Binding]:
    """Every binding of a module-level name in a cell: statements at the top, in blocks, and the
    `global` declarations of any function."""
    found: list[Binding] = []

    def add(name, line, kind, node, value=None, top=False, target=""):
        found.append(Binding(name, cell, line, kind, node, value, top, target))

    def expressions(*nodes):
        for node in nodes:
            if node is not None:
                for walrus in _expressions_walrus(node):
                    for name in _target_names(walrus.target):
                        add(name.id, walrus.lineno, "walrus", walrus, walrus.value)

    def statements(body, top):
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                add(stmt.name, stmt.lineno, "def", stmt, stmt, top)
                expressions(*stmt.decorator_list, *stmt.args.defaults, *stmt.args.kw_defaults)
            elif isinstance(stmt, ast.ClassDef):
                add(stmt.name, stmt.lineno, "class", stmt, stmt, top)
                expressions(*stmt.decorator_list, *stmt.bases)
            elif isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    for name in _target_names(target):
                        add(name.id, name.lineno, "assign", stmt, stmt.value, top)
                expressions(stmt.value, *stmt.targets)
            elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
                kind = "augassign" if isinstance(stmt, ast.AugAssign) else "annassign"
                for name in _target_names(stmt.target):
                    add(name.id, name.lineno, kind, stmt, stmt.value, top)
                expressions(stmt.value, stmt.target)
            elif isinstance(stmt, (ast.For, ast.AsyncFor)):
                for name in _target_names(stmt.target):
                    add(name.id, name.lineno, "for", stmt, stmt.iter)
                expressions(stmt.iter)
                statements(stmt.body, False)
                statements(stmt.orelse, False)
            elif isinstance(stmt, (ast.With, ast.AsyncWith)):
                for item in stmt.items:
                    expressions(item.context_expr)
                    for name in _target_names(item.optional_vars) if item.optional_vars else []:
                        add(name.id, name.lineno, "with", stmt, item.context_expr)
                statements(stmt.body, False)
            elif isinstance(stmt, (ast.If, ast.While)):
                expressions(stmt.test)
                statements(stmt.body, False)
                statements(stmt.orelse, False)
            elif isinstance(stmt, (ast.Try, getattr(ast, "TryStar", ast.Try))):
                statements(stmt.body, False)
                for handler in stmt.handlers:
                    if handler.name:
                        add(handler.name, handler.lineno, "except", handler)
                    statements(handler.body, False)
                statements(stmt.orelse, False)
                statements(stmt.finalbody, False)
            elif isinstance(stmt, ast.Match):
                expressions(stmt.subject)
                for case in stmt.cases:
                    for bound, line in _pattern_names(case.pattern):
                        add(bound, line, "match", case, stmt.subject)
                    statements(case.body, False)
            elif isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    add(bound, stmt.lineno, "import", alias, None, top, alias.name if alias.asname else bound)
            elif isinstance(stmt, ast.ImportFrom):
                for alias in stmt.names:
                    if alias.name != "*":
                        module = "." * stmt.level + (stmt.module or "")
                        add(
                            alias.asname or alias.name,
                            stmt.lineno,
                            "import",
                            alias,
                            None,
                            top,
                            f"{module}.{alias.name}",
                        )
            elif isinstance(stmt, ast.Delete):
                for target in stmt.targets:
                    for name in _target_names(target):
                        add(name.id, name.lineno, "del", stmt)
            elif type(stmt).__name__ == "TypeAlias":
                for name in _target_names(stmt.name):
                    add(name.id, stmt.lineno, "typealias", stmt, stmt.value, top)
            else:
                expressions(stmt)

    statements(tree.body, True)
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            for name in node.names:
                add(name, node.lineno, "global", node)
    return found


def _local_names(function) -> set[str]:
    """Names local to a def or lambda (its parameters and whatever it binds), over-approximated:
    nested lambdas, comprehensions and defs count as the same scope."""
    args = function.args
    names = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
    names |= {a.arg for a in (args.vararg, args.kwarg) if a}
    declared_global = set()
    body = function.body if isinstance(function.body, list) else [function.body]
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.alias):
                names.add(node.asname or node.name.split(".")[0])
            elif isinstance(node, ast.ExceptHandler) and node.name:
                names.add(node.name)
            elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
                names.add(node.name)
            elif isinstance(node, ast.MatchMapping) and node.rest:
                names.add(node.rest)
            elif isinstance(node, ast.Global):
                declared_global.update(node.names)
    return names - declared_global

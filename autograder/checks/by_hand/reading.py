"""One reading of a notebook, which every rule asks: its cells parsed, each node's cell and
parent, what is called, every module-level binding; and where autograd can be reached from a node
(through its own code and the values of the names it uses)."""

from __future__ import annotations

import ast

from .bindings import Binding, _local_names, _module_bindings
from .parsing import _read_cell
from .vocabulary import _autograd_target, _in_namespace, autograd_problem


class _Reading:
    """A notebook's cells, read once: what the rules (reach.py, refusals.py) ask of it."""

    def __init__(self, sources: list[str], trusted: frozenset[int]):
        self.trusted = trusted
        self.trees: dict[int, ast.Module] = {}
        self.parse_errors: list[str] = []
        last = {source: index for index, source in enumerate(sources)}
        for index, source in enumerate(sources):
            if last[source] != index:
                continue  # the same code again later (a cell run twice): reading it once means the same
            try:
                self.trees[index] = _read_cell(source or "")
            except SyntaxError as err:
                where = f" (line {err.lineno})" if err.lineno else ""
                self.parse_errors.append(
                    f"cell {index + 1} does not parse: {err.msg}{where}: the grader cannot read what it does"
                )
        self.cell_of: dict[int, int] = {}
        self.parent: dict[int, ast.AST] = {}
        self.callees: set[int] = set()
        self.bindings: dict[str, list[Binding]] = {}
        for index, tree in self.trees.items():
            for node in ast.walk(tree):
                self.cell_of[id(node)] = index
                for child in ast.iter_child_nodes(node):
                    self.parent[id(child)] = node
                if isinstance(node, ast.Call):
                    self.callees.add(id(node.func))
            for binding in _module_bindings(tree, index):
                self.bindings.setdefault(binding.name, []).append(binding)

    @staticmethod
    def _by_hand_argument(node) -> str | None:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "by_hand":
            argument = (
                node.args[1]
                if len(node.args) > 1
                else next((k.value for k in node.keywords if k.arg == "function"), None)
            )
            if isinstance(argument, ast.Name):
                return argument.id
        return None

    # ------------------------------------------------------------------ autograd-free, transitively

    def _weak(self, node, local: set[str], seen: set[int]):
        """(cell, line, problem) for autograd anywhere `node` can lead: its own code, and the defs,
        lambdas and values of the module-level names it uses."""
        if node is None or id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            local = local | _local_names(node)
        cell = self.cell_of.get(id(node), 0)
        for child in ast.walk(node):
            if isinstance(child, ast.Attribute):
                problem = autograd_problem(child.attr)
                if problem and not _in_namespace(child):
                    yield cell, child.lineno, problem
            elif isinstance(child, ast.keyword) and child.arg == "requires_grad":
                yield cell, child.value.lineno, "creates a tensor with requires_grad"
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                modules = [child.module or "."] if isinstance(child, ast.ImportFrom) else [a.name for a in child.names]
                if any(_autograd_target(m) for m in modules):
                    yield cell, child.lineno, f"imports {', '.join(modules)}"
            elif isinstance(child, ast.Name) and isinstance(child.ctx, ast.Load) and child.id not in local:
                for binding in self.bindings.get(child.id, []):
                    if binding.kind == "import":
                        if _autograd_target(binding.target):
                            yield cell, child.lineno, f"uses {binding.target} (imported as {child.id})"
                    elif binding.value is not None:
                        yield from self._weak(binding.value, set(), seen)

"""The rule on a graded function: it, every notebook def it reaches and every def its test cell
calls to make its inputs must each be a plain top-level def bound once, in which every name
resolves statically, every call goes to a name the grader can follow, and nothing touches autograd."""

from __future__ import annotations

import ast
import builtins

from .bindings import _local_names
from .reading import _Reading
from .vocabulary import (
    ALLOWED_BUILTINS,
    CANNOT,
    DYNAMIC_BUILTINS,
    REACH_FORBIDDEN_ATTRIBUTES,
    _autograd_target,
    _describe,
    _gradient_target,
    _import_problem,
    _in_namespace,
    autograd_problem,
)


class _Reach(_Reading):
    """The graded function's reach (the notebook's reading is _Reading's)."""

    def reach_problems(self, function: str) -> list[str]:
        """The graded function, what it reaches, and what its test cell calls to make its inputs."""
        queue = [(function, function)] + [
            (name, f"{name} (called in the test cell of {function})") for name in self._test_cell_roots(function)
        ]
        seen: set[str] = set()
        problems: list[str] = []
        while queue:
            name, where = queue.pop(0)
            if name in seen:
                continue
            seen.add(name)
            definition, found = self._plain_def(name)
            problems += [f"{where}, {p}" if p.startswith("line ") else p for p in found]
            if definition is None:
                continue
            for line, problem, follow in self._strict(definition):
                if problem:
                    problems.append(f"{where}, line {line}: {problem}")
                if follow and follow not in seen:
                    queue.append((follow, f"{follow} (called from {function})"))
        return problems

    def _test_cell_roots(self, function: str) -> list[str]:
        """Notebook defs named in a cell that calls `check.by_hand(..., function)`: they make the inputs
        the graded function is tested on (affine_forward's cache reaches affine_backward)."""
        roots: list[str] = []
        for tree in self.trees.values():
            if not any(self._by_hand_argument(node) == function for node in ast.walk(tree)):
                continue
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Name)
                    and isinstance(node.ctx, ast.Load)
                    and node.id != function
                    and any(b.kind == "def" for b in self.bindings.get(node.id, []))
                ):
                    roots.append(node.id)
        return list(dict.fromkeys(roots))

    def _plain_def(self, name: str) -> tuple[ast.FunctionDef | None, list[str]]:
        """The one plain top-level def that binds `name`, or None, with what is wrong."""
        bindings = self.bindings.get(name, [])
        if not bindings:
            return None, [f"{name} is not defined anywhere in the notebook"]
        if len(bindings) > 1:
            places = "; ".join(b.place() for b in bindings)
            return None, [f"{name} is bound more than once ({places}): the grader cannot tell which one runs"]
        binding = bindings[0]
        if binding.kind != "def":
            return None, [f"{name} is bound by {binding.place()}, not by a plain def: the grader cannot read its code"]
        node = binding.node
        assert isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))  # what a "def" binding holds
        if not binding.top_level:
            return None, [
                f"{name} is defined inside a block or a function (cell {binding.cell + 1}, line "
                f"{binding.line}), not by a def at the top of a cell: the grader cannot tell whether "
                "or when it runs"
            ]
        problems = []
        if isinstance(node, ast.AsyncFunctionDef):
            problems.append(f"line {node.lineno}: is async, which the grader cannot follow")
        for decorator in node.decorator_list:
            problems.append(
                f"line {decorator.lineno}: has a decorator (@{_describe(decorator)}), which can "
                f"replace the function with anything: {CANNOT}"
            )
        if problems or not isinstance(node, ast.FunctionDef):  # an async def has its problem above
            return None, problems
        return node, problems

    def _strict(self, definition: ast.FunctionDef):
        """(line, problem or None, a notebook def to follow or None) for everything in a reached def."""
        local = _local_names(definition)
        for node in ast.walk(definition):
            if isinstance(node, ast.Attribute):
                problem = autograd_problem(node.attr)
                if problem and not _in_namespace(node):
                    yield node.lineno, problem, None
                elif node.attr in REACH_FORBIDDEN_ATTRIBUTES and not problem:
                    yield node.lineno, REACH_FORBIDDEN_ATTRIBUTES[node.attr] + f": {CANNOT}", None
                elif node.attr.startswith("_") and not problem:
                    yield node.lineno, (f"uses .{node.attr}, a private or special attribute: {CANNOT}"), None
            elif isinstance(node, ast.keyword) and node.arg == "requires_grad":
                yield node.value.lineno, "creates a tensor with requires_grad", None
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [node.module or "."] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                yield node.lineno, f"imports {', '.join(modules)} inside the function: {CANNOT}", None
            elif isinstance(node, ast.Global):
                yield node.lineno, f"declares global {', '.join(node.names)}: {CANNOT}", None
            elif isinstance(node, ast.ClassDef):
                yield node.lineno, f"defines class {node.name} inside the function: {CANNOT}", None
            elif isinstance(node, ast.Call) and not isinstance(node.func, (ast.Name, ast.Attribute, ast.Lambda)):
                if isinstance(node.func, ast.Subscript):
                    what = f"calls a function taken out of a container ({_describe(node.func)})"
                elif isinstance(node.func, ast.Call):
                    what = f"calls the result of a call ({_describe(node.func)})"
                else:
                    what = f"calls {_describe(node.func)}"
                yield node.lineno, f"{what}: the grader cannot tell which function that is", None
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                yield from self._resolve(node, local)

    def _resolve(self, node: ast.Name, local: set[str]):
        name, called = node.id, id(node) in self.callees
        if name in local:
            if called:
                yield (
                    node.lineno,
                    (f"calls {name}, a local variable or parameter: the grader cannot tell which function that is"),
                    None,
                )
            return
        bindings = self.bindings.get(name, [])
        if not bindings:
            if name in ALLOWED_BUILTINS:
                return
            if name in DYNAMIC_BUILTINS:
                yield node.lineno, DYNAMIC_BUILTINS[name], None
            elif hasattr(builtins, name):
                yield node.lineno, f"uses {name}, a builtin the by-hand rule does not allow: {CANNOT}", None
            else:
                yield (
                    node.lineno,
                    (f"uses {name}, which is not defined anywhere in the notebook: the grader cannot tell what it is"),
                    None,
                )
            return
        kinds = {b.kind for b in bindings}
        if kinds == {"import"}:
            targets = {b.target for b in bindings}
            if len(targets) > 1:
                places = "; ".join(f"{b.target} at cell {b.cell + 1}, line {b.line}" for b in bindings)
                yield node.lineno, f"uses {name}, imported as different things ({places}): {CANNOT}", None
                return
            target = targets.pop()
            if _gradient_target(target):
                reason = "" if _autograd_target(target) else ", which computes a gradient for you"
                yield node.lineno, f"uses {target} (imported as {name}){reason}", None
            elif _import_problem(target):
                yield (
                    node.lineno,
                    (f"uses {name}, imported as {target}, which the by-hand rule does not allow: {CANNOT}"),
                    None,
                )
            return
        if len(bindings) > 1:
            places = "; ".join(b.place() for b in bindings)
            which = "one runs" if called else "value it has"
            yield (
                node.lineno,
                (
                    f"{'calls' if called else 'uses'} {name}, which is bound more than once "
                    f"({places}): the grader cannot tell which {which}"
                ),
                None,
            )
            return
        binding = bindings[0]
        if binding.kind == "def":
            yield node.lineno, None, name
        elif binding.kind == "class":
            yield (
                node.lineno,
                (f"uses class {name}, defined in the notebook: the grader cannot follow what its methods do"),
                None,
            )
        elif called:
            yield (
                node.lineno,
                (
                    f"calls {name}, a value bound by {binding.place()}, not a function defined with "
                    "def: the grader cannot tell which function that is"
                ),
                None,
            )
        elif binding.kind not in ("assign", "annassign"):
            yield node.lineno, f"uses {name}, bound by {binding.place()}: {CANNOT}", None
        else:  # module-level data, assigned once and never called: its value may not reach autograd
            for cell, line, problem in self._weak(binding.value, set(), set()):
                yield (
                    node.lineno,
                    (f"uses {name}, whose value reaches autograd ({problem}, cell {cell + 1}, line {line})"),
                    None,
                )

"""The notebook-wide refusals, in every cell the student can edit: dynamic code, magics, imports
off the list, private and dunder attributes, classes, attributes set to anything but a constant,
pickles, autograd kept as a value, and functions passed around as values that reach autograd."""

from __future__ import annotations

import ast

from .parsing import _magic, _magic_problem
from .reading import _Reading
from .vocabulary import (
    AUTOGRAD_CALLABLES,
    AUTOGRAD_NAMESPACES,
    CANNOT,
    CONSUMERS,
    DYNAMIC_BUILTINS,
    FUNC_RETURNS_DATA,
    HARMLESS_DUNDER_NAMES,
    HARMLESS_DUNDERS,
    KEY_CONSUMERS,
    NOTEBOOK_FORBIDDEN_ATTRIBUTES,
    OS_ALLOWED,
    _autograd_target,
    _constant_truth,
    _describe,
    _import_problem,
    _in_namespace,
    _is_constant,
    autograd_problem,
)


class _Refusals(_Reading):
    """The rules on the whole notebook (the notebook's reading is _Reading's)."""

    # ------------------------------------------------------------------ notebook-wide rules

    def notebook_problems(self) -> list[str]:
        if not hasattr(self, "_notebook_problems"):
            self._notebook_problems = self._find_notebook_problems()
        return self._notebook_problems

    def _find_notebook_problems(self) -> list[str]:
        problems = []
        for index, tree in self.trees.items():
            if index in self.trusted:
                continue
            for line, problem in self._cell_problems(tree):
                problems.append(f"cell {index + 1}, line {line}: {problem}")
        problems += self._escaping_problems()
        return problems

    def _module_name(self, node) -> str | None:
        """The module a Name is bound to, when every binding of it imports the same one."""
        if not isinstance(node, ast.Name):
            return None
        bindings = self.bindings.get(node.id, [])
        targets = {b.target for b in bindings if b.kind == "import"}
        return targets.pop() if bindings and len(targets) == 1 and all(b.kind == "import" for b in bindings) else None

    def _cell_problems(self, tree: ast.Module):
        handled: set[int] = set()
        for node in ast.walk(tree):
            magic = _magic(node)
            if (
                magic
                and isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Call)
            ):  # the shape _magic read
                handled.add(id(node.func.value.func))
                yield node.lineno, _magic_problem(*magic)
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                if id(node) in handled:
                    continue
                if node.id in DYNAMIC_BUILTINS:
                    yield node.lineno, f"{DYNAMIC_BUILTINS[node.id]}: {CANNOT}"
                elif node.id.startswith("__") and node.id.endswith("__") and node.id not in HARMLESS_DUNDER_NAMES:
                    yield node.lineno, f"uses {node.id}, which reaches Python's internals: {CANNOT}"
                elif node.id in self._autograd_names() and isinstance(node.ctx, ast.Load):
                    yield from self._autograd_value(node)
            elif isinstance(node, ast.Attribute):
                yield from self._attribute_problems(node)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                yield from self._imports(node)
            elif isinstance(node, ast.ClassDef):
                yield (
                    node.lineno,
                    (
                        f"defines class {node.name}: the grader cannot follow what its methods do "
                        "when its objects reach the graded functions"
                    ),
                )
            elif isinstance(node, ast.Call):
                arguments = len(node.args) + len(node.keywords)
                if isinstance(node.func, ast.Name) and node.func.id == "type" and arguments != 1:
                    yield node.lineno, f"creates a class with type(...): {CANNOT}"
                for keyword in node.keywords:
                    if keyword.arg == "allow_pickle" and _constant_truth(keyword.value) is not False:
                        yield node.lineno, "loads pickled objects (allow_pickle), which can run any code"
                    elif keyword.arg == "weights_only" and _constant_truth(keyword.value) is not True:
                        yield node.lineno, "loads pickled objects (weights_only=False), which can run any code"
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("module://"):
                yield node.lineno, f"names a module to load by name ({node.value[:40]}): {CANNOT}"
            elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    yield from self._attribute_assignments(target, node.value, top=True)
            elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
                yield from self._attribute_assignments(node.target, None, top=True)
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                for item in node.items:
                    if item.optional_vars is not None:
                        yield from self._attribute_assignments(item.optional_vars, None, top=True)
            elif isinstance(node, ast.Delete):
                for target in node.targets:
                    yield from self._attribute_assignments(target, None, top=True)

    def _attribute_problems(self, node: ast.Attribute):
        attr = node.attr
        if attr.startswith("__") and attr.endswith("__"):
            if not (attr in HARMLESS_DUNDERS and isinstance(node.ctx, ast.Load)):
                yield node.lineno, f"uses .{attr}, which reaches Python's internals: {CANNOT}"
        elif attr.startswith("_"):
            yield node.lineno, f"uses the private attribute .{attr}: {CANNOT}"
        elif attr in NOTEBOOK_FORBIDDEN_ATTRIBUTES:
            yield node.lineno, f"{NOTEBOOK_FORBIDDEN_ATTRIBUTES[attr]}: {CANNOT}"
        elif self._module_name(node.value) == "os" and attr not in OS_ALLOWED:
            yield node.lineno, f"uses os.{attr}: only reading paths and the environment is allowed from os"
        if attr in AUTOGRAD_NAMESPACES and not _in_namespace(node):
            yield from self._autograd_value(node)
        elif attr in AUTOGRAD_CALLABLES and not _in_namespace(node) and id(node) not in self.callees:
            yield (
                node.lineno,
                (
                    f"keeps .{attr} as a value: an autograd function passed around can reach the "
                    "graded functions, and the grader cannot tell where it ends up"
                ),
            )

    def _autograd_names(self) -> set[str]:
        if not hasattr(self, "_autograd_bound"):
            self._autograd_bound = {
                name
                for name, bindings in self.bindings.items()
                if any(b.kind == "import" and _autograd_target(b.target) for b in bindings)
            }
        return self._autograd_bound

    def _autograd_value(self, root):
        """An autograd namespace (torch.autograd, torch.func, or a name imported from them) may only be
        called, and a torch.func transform's result only applied at once: `torch.func.grad(f)(x)`."""
        top, member = root, None
        while isinstance(parent := self.parent.get(id(top)), ast.Attribute) and parent.value is top:
            top = parent
            member = top.attr
        if isinstance(root, ast.Name):
            target = next(b.target for b in self.bindings[root.id] if b.kind == "import")
            transforms = "func" in target.split(".") or "functorch" in target.split(".")
            member = member or target.rsplit(".", 1)[-1]
        else:
            transforms = root.attr in ("func", "functorch")
        where = _describe(top)
        if id(top) not in self.callees or member is None:
            yield (
                root.lineno,
                (
                    f"keeps {where} as a value: an autograd function passed around can reach the graded "
                    "functions, and the grader cannot tell where it ends up"
                ),
            )
            return
        call = self.parent[id(top)]
        if transforms and member not in FUNC_RETURNS_DATA and id(call) not in self.callees:
            yield (
                root.lineno,
                (
                    f"keeps the function {where}(...) returns as a value: an autograd function passed "
                    "around can reach the graded functions; apply it at once, as in f(...)(x)"
                ),
            )

    def _imports(self, node):
        if isinstance(node, ast.Import):
            for alias in node.names:
                problem = _import_problem(alias.name)
                if problem:
                    yield node.lineno, problem
            return
        module = "." * node.level + (node.module or "")
        for alias in node.names:
            if alias.name == "*":
                yield node.lineno, f"imports * from {module}: the grader cannot see which names it binds"
                continue
            problem = _import_problem(f"{module}.{alias.name}" if node.module else module + alias.name)
            if problem:
                yield node.lineno, problem

    def _attribute_assignments(self, target, value, top: bool):
        """Setting an attribute is allowed only to a constant (a flag such as allow_tf32 = False)."""
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                yield from self._attribute_assignments(element, None, top=False)
        elif isinstance(target, ast.Starred):
            yield from self._attribute_assignments(target.value, None, top=False)
        elif isinstance(target, ast.Attribute):
            attr = target.attr
            if autograd_problem(attr):
                yield target.lineno, f"assigns {_describe(target)}: {autograd_problem(attr)}"
            elif not (top and value is not None and _is_constant(value) and not attr.startswith("_")):
                yield (
                    target.lineno,
                    (
                        f"assigns {_describe(target)}: an attribute set to anything but a constant can "
                        f"change what library code or your functions do, and {CANNOT}"
                    ),
                )

    # ------------------------------------------------------------------ values that escape

    def _escaping_problems(self) -> list[str]:
        """Functions that untrusted code passes around as values (lambdas, nested defs, defs and
        lambdas named without being called) may not reach autograd: the grader cannot tell where
        they end up (a container, a library callback such as numpy's seterrcall, a cache). A function
        handed to a consumer that calls it there and then and keeps nothing (numeric_gradient, the
        key= of sorted/min/max) is no such value: it runs during that call."""
        roots: list[tuple[ast.AST, str, int, int]] = []  # (node to verify, description, cell, line)
        named_lambdas = {
            id(b.value): b
            for bindings in self.bindings.values()
            for b in bindings
            if b.kind == "assign" and isinstance(b.value, ast.Lambda)
        }
        for index, tree in self.trees.items():
            if index in self.trusted:
                continue
            top = {id(stmt) for stmt in tree.body}
            for node in ast.walk(tree):
                if isinstance(node, ast.Lambda):
                    if not (id(node) in named_lambdas or id(node) in self.callees or self._consumed(node)):
                        roots.append((node, "a lambda", index, node.lineno))
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                    id(node) not in top or node.decorator_list
                ):
                    roots.append((node, f"the function {node.name}", index, node.lineno))
                elif (
                    isinstance(node, ast.Name)
                    and isinstance(node.ctx, ast.Load)
                    and id(node) not in self.callees
                    and not self._consumed(node)
                    and not self._checker_argument(node)
                ):
                    for binding in self.bindings.get(node.id, []):
                        if binding.value is not None and (binding.kind == "def" or id(binding.value) in named_lambdas):
                            roots.append((binding.value, f"the function {node.id}", index, node.lineno))
        problems, reported = [], set()
        for node, what, index, line in roots:
            for cell, at, problem in self._weak(node, set(), set()):
                if (cell, at, problem) in reported:
                    continue  # one sentence per construct, naming the first value that reaches it
                reported.add((cell, at, problem))
                problems.append(
                    f"cell {cell + 1}, line {at}: {problem}, reachable from {what} (cell {index + 1}, "
                    f"line {line}), which can be passed around as a value: the grader cannot tell "
                    "whether the graded functions call it"
                )
        return problems

    def _consumed(self, node) -> bool:
        """Whether `node` (a function value) is an argument of a call that runs it at once and keeps
        nothing: numeric_gradient(f, x), sorted(xs, key=f), min/max(..., key=f)."""
        parent = self.parent.get(id(node))
        if isinstance(parent, ast.keyword):
            call = self.parent.get(id(parent))
            return (
                parent.arg == "key"
                and isinstance(call, ast.Call)
                and isinstance(call.func, ast.Name)
                and call.func.id in KEY_CONSUMERS
                and call.func.id not in self.bindings
            )
        return (
            isinstance(parent, ast.Call)
            and node in parent.args
            and isinstance(parent.func, ast.Name)
            and self._module_name(parent.func) in CONSUMERS
        )

    def _checker_argument(self, node: ast.Name) -> bool:
        """`check.by_hand(name, f)` only reads f's name, when `check` is the notebook's Checker()."""
        call = self.parent.get(id(node))
        if (
            self._by_hand_argument(call) != node.id
            or not isinstance(call, ast.Call)
            or not isinstance(call.func, ast.Attribute)
            or not isinstance(call.func.value, ast.Name)
        ):
            return False
        bindings = self.bindings.get(call.func.value.id, [])
        return bool(bindings) and all(
            b.kind == "assign"
            and isinstance(b.value, ast.Call)
            and isinstance(b.value.func, ast.Name)
            and (self._module_name(b.value.func) or "").startswith("autograder.checks")
            for b in bindings
        )

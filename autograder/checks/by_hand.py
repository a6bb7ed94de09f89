"""The "by hand" rule: a graded function may not use autograd, decided by reading its source.

Under grading the coordinator applies this to the submitted notebook's cells (AST only,
nothing is executed); in a student's Jupyter the same rule reads the function's source
for immediate feedback. Functions the graded one calls, when defined in the notebook, are
held to the same rule, so hiding `.backward()` in a helper does not help.
"""

from __future__ import annotations

import ast

# Attribute and name uses that mean autograd (or a way around reading the code).
FORBIDDEN_ATTRIBUTES = {
    "backward": "calls .backward()",
    "autograd": "uses torch.autograd",
    "requires_grad_": "turns on requires_grad",
    "grad": "reads or writes .grad",
    "func": "uses torch.func",
    "jacobian": "computes a Jacobian with autograd",
    "vjp": "uses a vector-Jacobian product from autograd",
    "jvp": "uses a Jacobian-vector product from autograd",
}
FORBIDDEN_NAMES = {
    "autograd": "uses autograd",
    "functorch": "uses functorch",
    "eval": "runs code from a string (eval)",
    "exec": "runs code from a string (exec)",
    "__import__": "imports dynamically",
    "getattr": "looks up attributes dynamically (getattr), which hides what is called",
    "importlib": "imports dynamically",
}
# Modules whose names, imported anywhere in the notebook, are autograd wherever they are used.
AUTOGRAD_MODULES = ("torch.autograd", "torch.func", "functorch")


def function_violations(sources: list[str], function: str) -> tuple[bool, list[str]]:
    """(found, violations) for `function` defined in any of `sources` (cell sources).

    A cell that does not parse is skipped; the last definition wins, as in a notebook.
    """
    definitions: dict[str, ast.FunctionDef] = {}
    aliases: dict[str, str] = {}   # a name bound to autograd by an import anywhere → what it is
    for source in sources:
        try:
            tree = ast.parse(without_magics(source))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                definitions[node.name] = node
        aliases.update(_autograd_aliases(tree))
    if function not in definitions:
        return False, []
    violations, seen, queue = [], set(), [function]
    while queue:
        name = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        node = definitions[name]
        for problem in _problems(node, aliases):
            where = name if name == function else f"{name} (called from {function})"
            violations.append(f"{where}, line {problem[0]}: {problem[1]}")
        queue.extend(n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                     and n.func.id in definitions)
    return True, sorted(set(violations))


def _autograd_aliases(tree: ast.AST) -> dict[str, str]:
    """Names that imports bind to autograd: `from torch.autograd import grad as g` → {"g": ...},
    `import torch.func as tf`, `from torch import autograd`. A plain variable called `grad`
    (dW's natural name) is no such alias. Module level only: an import inside a function is a
    violation of that function already."""
    found = {}
    for node in _module_level(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if any(full == m or full.startswith(m + ".") or node.module == m or node.module.startswith(m + ".")
                       for m in AUTOGRAD_MODULES):
                    found[alias.asname or alias.name] = full
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and any(alias.name == m or alias.name.startswith(m + ".") for m in AUTOGRAD_MODULES):
                    found[alias.asname] = alias.name
    return found


def _module_level(tree: ast.AST):
    """The nodes of a cell outside any function or class body."""
    stack = list(ast.iter_child_nodes(tree))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _problems(node: ast.AST, aliases: dict[str, str]):
    for child in ast.walk(node):
        if isinstance(child, ast.Attribute) and child.attr in FORBIDDEN_ATTRIBUTES:
            if not _named_by_its_module(child):
                yield child.lineno, FORBIDDEN_ATTRIBUTES[child.attr]
        elif isinstance(child, ast.Name) and child.id in FORBIDDEN_NAMES:
            yield child.lineno, FORBIDDEN_NAMES[child.id]
        elif isinstance(child, ast.Name) and child.id in aliases and isinstance(child.ctx, ast.Load):
            yield child.lineno, f"uses {aliases[child.id]} (imported as {child.id})"
        elif isinstance(child, ast.keyword) and child.arg == "requires_grad":
            yield child.value.lineno, "creates a tensor with requires_grad"
        elif isinstance(child, (ast.Import, ast.ImportFrom)):
            modules = [child.module or ""] if isinstance(child, ast.ImportFrom) else [a.name for a in child.names]
            if any(part in FORBIDDEN_NAMES or part == "func" for m in modules for part in m.split(".")):
                yield child.lineno, f"imports {', '.join(modules)}"


def _named_by_its_module(node: ast.Attribute) -> bool:
    """`torch.autograd.grad`, `torch.func.vjp`: the module's own violation already says it (not ".grad")."""
    parent = node.value
    module = parent.attr if isinstance(parent, ast.Attribute) else getattr(parent, "id", None)
    return module in ("autograd", "func") and node.attr not in ("autograd", "func")


def without_magics(source: str) -> str:
    """IPython magics and shell escapes are not Python; blank them so the rest parses."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())

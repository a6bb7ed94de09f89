"""The by-hand rule's vocabulary: what it allows and refuses by name (magics, modules, builtins,
attributes, autograd's names), what an import or an attribute means for it, and the words its
sentences use to name what it finds."""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from typing import Any

# ----------------------------------------------------------------------------------- vocabulary

#: Line magics that cannot run code (everything else, cell magics and `!shell` included, is refused).
ALLOWED_LINE_MAGICS = frozenset({"matplotlib"})

#: Modules a by-hand notebook may import (with their submodules, less the refused ones below):
#: what lab 2's cells import, and math.
ALLOWED_MODULES = ("torch", "numpy", "math", "matplotlib", "os", "pathlib", "autograder.checks")

#: What of `os` a cell may use: reading the environment and paths, never running programs.
OS_ALLOWED = frozenset(
    {
        "path",
        "environ",
        "getenv",
        "listdir",
        "getcwd",
        "sep",
        "linesep",
        "pathsep",
        "name",
        "cpu_count",
        "makedirs",
        "scandir",
        "walk",
        "fspath",
        "devnull",
    }
)

#: Builtins the graded functions may use: pure ones (and the exceptions they may raise).
ALLOWED_BUILTINS = frozenset(
    {
        "abs",
        "all",
        "any",
        "bool",
        "callable",
        "chr",
        "complex",
        "dict",
        "divmod",
        "enumerate",
        "float",
        "format",
        "frozenset",
        "hash",
        "id",
        "int",
        "isinstance",
        "issubclass",
        "iter",
        "len",
        "list",
        "max",
        "min",
        "next",
        "ord",
        "pow",
        "print",
        "range",
        "repr",
        "reversed",
        "round",
        "set",
        "slice",
        "sorted",
        "str",
        "sum",
        "tuple",
        "zip",
        "Ellipsis",
        "NotImplemented",
        "ArithmeticError",
        "AssertionError",
        "Exception",
        "IndexError",
        "KeyError",
        "NotImplementedError",
        "OverflowError",
        "RuntimeError",
        "StopIteration",
        "TypeError",
        "ValueError",
        "ZeroDivisionError",
    }
)

#: Builtins that run code from strings or reach objects by name: refused in every editable cell.
DYNAMIC_BUILTINS = {
    "eval": "runs code from a string (eval)",
    "exec": "runs code from a string (exec)",
    "compile": "compiles code from a string (compile)",
    "__import__": "imports dynamically (__import__)",
    "getattr": "looks up attributes dynamically (getattr), which hides what is called",
    "setattr": "sets attributes dynamically (setattr), which hides what is called",
    "delattr": "deletes attributes dynamically (delattr)",
    "globals": "reaches the notebook's variables dynamically (globals)",
    "locals": "reaches variables dynamically (locals)",
    "vars": "reaches an object's attributes dynamically (vars)",
    "breakpoint": "starts a debugger (breakpoint)",
    "get_ipython": "uses get_ipython(), which can run any code",
}

#: Attribute names that are autograd namespaces: the whole chain below them is autograd.
AUTOGRAD_NAMESPACES = {"autograd": "uses torch.autograd", "func": "uses torch.func", "functorch": "uses functorch"}
AUTOGRAD_MODULES = ("torch.autograd", "torch.func", "functorch", "torch._functorch")

#: Attributes that are autograd wherever they appear (besides any name containing backward/grad/hook).
AUTOGRAD_ATTRIBUTES = {
    "backward": "calls .backward()",
    "grad": "reads or writes .grad",
    "requires_grad_": "turns on requires_grad",
    "requires_grad": "turns on requires_grad",
    "jacobian": "computes a Jacobian with autograd",
    "jacrev": "computes a Jacobian with autograd",
    "jacfwd": "computes a Jacobian with autograd",
    "hessian": "computes a Hessian with autograd",
    "vjp": "uses a vector-Jacobian product from autograd",
    "jvp": "uses a Jacobian-vector product from autograd",
    "enable_grad": "turns autograd on (enable_grad)",
    "set_grad_enabled": "turns autograd on or off (set_grad_enabled)",
}
#: Names containing "grad" that only switch autograd off or ask about it.
HARMLESS_GRAD_NAMES = frozenset({"no_grad", "is_grad_enabled"})

#: torch.func transforms whose result is data, not a function (the rest return functions).
FUNC_RETURNS_DATA = frozenset({"jvp", "functional_call", "stack_module_state"})

#: Attributes autograd-callables must not be held by as values (outside the autograd namespaces).
AUTOGRAD_CALLABLES = frozenset(
    {"backward", "requires_grad_", "register_hook", "retain_grad", "enable_grad", "set_grad_enabled"}
)

#: Functions that call a function argument during the call and keep no reference to it.
CONSUMERS = frozenset({"autograder.checks.numeric_gradient", "autograder.checks.gradients.numeric_gradient"})
KEY_CONSUMERS = frozenset({"sorted", "min", "max"})

#: Attributes the graded functions may not touch even when they are not autograd.
REACH_FORBIDDEN_ATTRIBUTES = {
    "ops": "uses torch.ops (raw operators, their backward passes included)",
    "jit": "uses torch.jit",
    "compile": "compiles code (compile)",
    "library": "uses torch.library",
    "utils": "uses torch.utils",
}

#: Attributes no editable cell may use: they load code, override operators or reach the interpreter.
NOTEBOOK_FORBIDDEN_ATTRIBUTES = {
    "library": "registers or overrides operators (torch.library)",
    "overrides": "overrides what torch functions do (torch.overrides)",
    "hub": "loads code from a folder or the network (torch.hub)",
    "package": "loads packaged code (torch.package)",
    "jit": "compiles or loads TorchScript (torch.jit)",
    "ops": "uses raw operators (torch.ops), which can also load libraries",
    "classes": "loads custom classes (torch.classes)",
    "cpp_extension": "compiles and loads C++ code (cpp_extension)",
    "load_library": "loads a compiled library",
    "serialization": "changes what torch.load may unpickle (torch.serialization)",
    "ctypeslib": "uses ctypes (numpy.ctypeslib)",
    "f2py": "compiles and loads Fortran code (numpy.f2py)",
    "switch_backend": "loads a plotting backend by name",
    **{
        module: f"reaches the {module} module, which the grader cannot follow"
        for module in (
            "sys",
            "builtins",
            "importlib",
            "operator",
            "types",
            "ctypes",
            "inspect",
            "subprocess",
            "pickle",
            "gc",
            "marshal",
            "runpy",
            "code",
            "codeop",
            "pkgutil",
            "imp",
        )
    },
}
#: Dunder attributes an editable cell may read: plain strings.
HARMLESS_DUNDERS = frozenset({"__name__", "__qualname__", "__doc__", "__version__"})
HARMLESS_DUNDER_NAMES = frozenset({"__name__", "__doc__"})

KIND_WORDS = {
    "def": "a def",
    "class": "a class",
    "assign": "an assignment",
    "augassign": "an augmented assignment",
    "annassign": "an annotated assignment",
    "for": "a for loop",
    "with": "a with statement",
    "except": "an except clause",
    "import": "an import",
    "del": "a del statement",
    "global": "a global declaration",
    "walrus": "an assignment expression (:=)",
    "match": "a match pattern",
    "typealias": "a type alias",
}

CANNOT = "the grader cannot follow it"


def _in_namespace(node: ast.Attribute) -> bool:
    """`torch.autograd.grad`, `torch.func.vjp`: the namespace's own violation says it (not ".grad")."""
    value = node.value
    while isinstance(value, ast.Attribute):
        if value.attr in AUTOGRAD_NAMESPACES:
            return True
        value = value.value
    return isinstance(value, ast.Name) and value.id in AUTOGRAD_NAMESPACES


def autograd_problem(attr: str) -> str | None:
    """What an attribute of this name means for autograd, or None."""
    if attr in AUTOGRAD_NAMESPACES:
        return AUTOGRAD_NAMESPACES[attr]
    if attr in AUTOGRAD_ATTRIBUTES:
        return AUTOGRAD_ATTRIBUTES[attr]
    if attr in HARMLESS_GRAD_NAMES:
        return None
    lowered = attr.lower()
    if "backward" in lowered:
        return f"uses .{attr} (a backward pass from autograd)"
    if "grad" in lowered:
        return f"uses .{attr} (autograd)"
    if "hook" in lowered:
        return f"uses .{attr} (a hook: library code would call a function the grader cannot follow)"
    return None


def _autograd_target(target: str) -> bool:
    parts = target.split(".")
    return any(target == m or target.startswith(m + ".") for m in AUTOGRAD_MODULES) or "functorch" in parts


def _gradient_target(target: str) -> bool:
    """An imported name that computes gradients for you (numeric_gradient, torch.autograd.grad)."""
    return _autograd_target(target) or any(autograd_problem(part) for part in target.split(".")[1:])


def _import_problem(module: str) -> str | None:
    """Why importing `module` is refused in an editable cell, or None."""
    parts = module.split(".")
    if module.startswith(".") or not module:
        return f"imports {module or '.'} relatively, from files next to the notebook: {CANNOT}"
    if _autograd_target(module) or any(p in AUTOGRAD_NAMESPACES for p in parts):
        return f"imports {module}"
    if not any(module == m or module.startswith(m + ".") for m in ALLOWED_MODULES):
        return (
            f"imports {module}, which is not on the by-hand rule's list of modules "
            f"({', '.join(ALLOWED_MODULES)}): {CANNOT}"
        )
    bad = next((p for p in parts[1:] if p.startswith("_") or p in NOTEBOOK_FORBIDDEN_ATTRIBUTES), None)
    if bad is not None:
        return f"imports {module}: {NOTEBOOK_FORBIDDEN_ATTRIBUTES.get(bad, f'{bad} is private, and {CANNOT}')}"
    if parts[0] == "os" and len(parts) > 1 and parts[1] not in OS_ALLOWED:
        return f"imports {module}: only reading paths and the environment is allowed from os"
    return None


def _is_constant(node) -> bool:
    if isinstance(node, ast.Constant):
        return True
    return isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant)


_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.Not: operator.not_,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Invert: operator.invert,
}


def _constant_truth(node) -> bool | None:
    """Whether a constant argument (`False`, `0`, `-1`, `not True`) is true; None when it is no constant."""
    if isinstance(node, ast.Constant):
        return bool(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant):
        try:
            return bool(_UNARY[type(node.op)](node.operand.value))
        except (TypeError, ValueError):  # -"text", ~1.5
            return None
    return None


def _natural(text: str) -> list:
    """Sort key: "line 2" before "line 14"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _describe(node) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 40 else text[:37] + "..."

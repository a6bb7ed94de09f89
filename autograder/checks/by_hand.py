"""The "by hand" rule: a graded function may not use autograd, decided by reading the notebook.

Under grading the coordinator applies this to the submitted notebook's code cells (AST only,
nothing is executed); in a student's Jupyter the same rule reads the kernel's cell history for
immediate feedback. The rule refuses what it cannot verify; it does not guess:

- Every cell is read as IPython runs it (its input transformations, then `ast.parse`). A cell
  that still does not parse is a violation; so is any magic or shell escape except `%matplotlib`.
- The graded function, every notebook function it reaches (by call or as a value), and every
  notebook function that its test cell calls to make its inputs (`affine_forward` for
  `affine_backward`), must each be a plain top-level `def`, bound once in the whole notebook.
  Inside them every name must resolve statically (a local, an allowed builtin, another such def,
  an import of an allowed module, or module-level data assigned once and never called), every
  call must go to such a name, to an attribute, or to an inline lambda, and nothing may touch
  autograd (`.backward`, `.grad`, `torch.autograd`, `torch.func`, `requires_grad`, hooks, ...).
- Notebook-wide, in every cell the student can edit (all cells but the indices in `trusted`):
  no dynamic code (eval, exec, getattr, globals, get_ipython, ...), no imports outside a short
  allow-list, no private or dunder attributes, no classes, no attribute set to anything but a
  constant, no code loaded from files or pickles, no autograd function kept as a value, and no
  lambda or function passed around as a value that uses autograd (the grader cannot tell where
  such a value ends up).
"""

from __future__ import annotations

import ast
import builtins
import functools
import gc
import re
import threading
from dataclasses import dataclass

# ----------------------------------------------------------------------------------- vocabulary

#: Line magics that cannot run code (everything else, cell magics and `!shell` included, is refused).
ALLOWED_LINE_MAGICS = frozenset({"matplotlib"})

#: Modules a by-hand notebook may import (with their submodules, less the refused ones below):
#: what lab 2's cells import, and math.
ALLOWED_MODULES = ("torch", "numpy", "math", "matplotlib", "os", "pathlib", "autograder.checks")

#: What of `os` a cell may use: reading the environment and paths, never running programs.
OS_ALLOWED = frozenset({"path", "environ", "getenv", "listdir", "getcwd", "sep", "linesep", "pathsep", "name",
                        "cpu_count", "makedirs", "scandir", "walk", "fspath", "devnull"})

#: Builtins the graded functions may use: pure ones (and the exceptions they may raise).
ALLOWED_BUILTINS = frozenset({
    "abs", "all", "any", "bool", "callable", "chr", "complex", "dict", "divmod", "enumerate", "float", "format",
    "frozenset", "hash", "id", "int", "isinstance", "issubclass", "iter", "len", "list", "max", "min", "next",
    "ord", "pow", "print", "range", "repr", "reversed", "round", "set", "slice", "sorted", "str", "sum", "tuple",
    "zip", "Ellipsis", "NotImplemented",
    "ArithmeticError", "AssertionError", "Exception", "IndexError", "KeyError", "NotImplementedError",
    "OverflowError", "RuntimeError", "StopIteration", "TypeError", "ValueError", "ZeroDivisionError",
})

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
AUTOGRAD_CALLABLES = frozenset({"backward", "requires_grad_", "register_hook", "retain_grad", "enable_grad",
                                "set_grad_enabled"})

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
    **{module: f"reaches the {module} module, which the grader cannot follow" for module in
       ("sys", "builtins", "importlib", "operator", "types", "ctypes", "inspect", "subprocess", "pickle", "gc",
        "marshal", "runpy", "code", "codeop", "pkgutil", "imp")},
}
#: Dunder attributes an editable cell may read: plain strings.
HARMLESS_DUNDERS = frozenset({"__name__", "__qualname__", "__doc__", "__version__"})
HARMLESS_DUNDER_NAMES = frozenset({"__name__", "__doc__"})

KIND_WORDS = {"def": "a def", "class": "a class", "assign": "an assignment", "augassign": "an augmented assignment",
              "annassign": "an annotated assignment", "for": "a for loop", "with": "a with statement",
              "except": "an except clause", "import": "an import", "del": "a del statement",
              "global": "a global declaration", "walrus": "an assignment expression (:=)",
              "match": "a match pattern", "typealias": "a type alias"}

CANNOT = "the grader cannot follow it"


# ----------------------------------------------------------------------------------- the API


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
def _notebook(sources: tuple[str, ...], trusted: frozenset[int]) -> "_Notebook":
    """One reading per notebook: a notebook's by-hand checks (five in lab 2) share it."""
    return _Notebook(list(sources), trusted)


def without_magics(source: str) -> str:
    """IPython magics and shell escapes are not Python; blank them so the rest parses (for readers
    that only look for imports; the by-hand rule reads cells as IPython transforms them)."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


# ----------------------------------------------------------------------------------- reading cells


@dataclass
class Binding:
    """One place that binds a module-level name."""
    name: str
    cell: int
    line: int
    kind: str                       # a key of KIND_WORDS
    node: ast.AST                   # the def/class/import alias/statement
    value: ast.AST | None = None    # what the name is bound to, where the rule can see it
    top_level: bool = False         # a statement directly in the cell (not in a block)
    target: str | None = None       # imports: the dotted name bound

    def place(self) -> str:
        return f"{KIND_WORDS[self.kind]} at cell {self.cell + 1}, line {self.line}"


def _read_cell(source: str) -> ast.Module:
    """The cell as IPython runs it, with the allowed magics removed. Raises SyntaxError."""
    tree = _parsed_cell(source)
    if isinstance(tree, SyntaxError):
        raise tree
    return tree


_PARSE_LOCK = threading.Lock()


def parse_python(source: str, filename: str = "<cell>") -> ast.Module:
    """`ast.parse`, safe in threads (the grader judges and sanitizes submissions in parallel).

    CPython 3.11's AST constructor keeps one recursion counter per interpreter: when a thread
    yields in the middle of building a tree (a GC run that calls Python code), a parse in another
    thread resets that counter and one of the two fails with "SystemError: AST constructor
    recursion depth mismatch" (python/cpython#106905 and its kin). Here the parse holds a lock and
    runs with the GC paused, so it never yields mid-tree; every caller that parses in a grading
    thread should use this, and it retries in case an unguarded parse elsewhere got in the way."""
    for attempt in range(5):
        with _PARSE_LOCK:
            collecting = gc.isenabled()
            gc.disable()
            try:
                return ast.parse(source, filename)
            except SystemError as err:
                if "recursion depth mismatch" not in str(err) or attempt == 4:
                    raise
            finally:
                if collecting:
                    gc.enable()
    raise AssertionError("unreachable")


@functools.lru_cache(maxsize=2048)
def _parsed_cell(source: str) -> ast.Module | SyntaxError:
    """A cell as IPython runs it, parsed; cached (the trees are only read afterwards)."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        transformed = TransformerManager().transform_cell(source)
    except SyntaxError as err:
        return err
    except Exception as err:   # IPython's transformers can fail on odd input: not readable either
        return SyntaxError(f"IPython cannot transform it ({type(err).__name__}: {err})")
    try:
        return _AllowedMagics().visit(parse_python(transformed))
    except SyntaxError as err:
        return err


class _AllowedMagics(ast.NodeTransformer):
    def visit_Expr(self, node):
        magic = _magic(node.value)
        if magic and magic[0] == "run_line_magic" and magic[1] in ALLOWED_LINE_MAGICS:
            return ast.copy_location(ast.Pass(), node)
        return node


def _magic(node) -> tuple[str, str | None] | None:
    """`get_ipython().run_line_magic('name', ...)` → ("run_line_magic", "name"), and so on."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Call)
            and isinstance(node.func.value.func, ast.Name) and node.func.value.func.id == "get_ipython"):
        first = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
        return node.func.attr, first if isinstance(first, str) else None
    return None


def _magic_problem(kind: str, name: str | None) -> str:
    if kind == "run_line_magic":
        return f"uses the magic %{name}: magics other than %matplotlib can run code the grader cannot read"
    if kind == "run_cell_magic":
        return f"uses the cell magic %%{name}, which can run or write code the grader cannot read"
    if kind in ("system", "getoutput"):
        return "runs a shell command (!...), which can write code the grader cannot read"
    return f"uses get_ipython().{kind}, which can run any code"


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

    def add(name, line, kind, node, value=None, top=False, target=None):
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
                    for name, line in _pattern_names(case.pattern):
                        add(name, line, "match", case, stmt.subject)
                    statements(case.body, False)
            elif isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    add(bound, stmt.lineno, "import", alias, None, top, alias.name if alias.asname else bound)
            elif isinstance(stmt, ast.ImportFrom):
                for alias in stmt.names:
                    if alias.name != "*":
                        module = "." * stmt.level + (stmt.module or "")
                        add(alias.asname or alias.name, stmt.lineno, "import", alias, None, top,
                            f"{module}.{alias.name}")
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
        return (f"imports {module}, which is not on the by-hand rule's list of modules "
                f"({', '.join(ALLOWED_MODULES)}): {CANNOT}")
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


def _natural(text: str) -> list:
    """Sort key: "line 2" before "line 14"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _describe(node) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 40 else text[:37] + "..."


# ----------------------------------------------------------------------------------- the notebook


class _Notebook:
    def __init__(self, sources: list[str], trusted: frozenset[int]):
        self.trusted = trusted
        self.trees: dict[int, ast.Module] = {}
        self.parse_errors: list[str] = []
        last = {source: index for index, source in enumerate(sources)}
        for index, source in enumerate(sources):
            if last[source] != index:
                continue   # the same code again later (a cell run twice): reading it once means the same
            try:
                self.trees[index] = _read_cell(source or "")
            except SyntaxError as err:
                where = f" (line {err.lineno})" if err.lineno else ""
                self.parse_errors.append(f"cell {index + 1} does not parse: {err.msg}{where}: "
                                         "the grader cannot read what it does")
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

    # ------------------------------------------------------------------ judging one function

    def judge(self, function: str) -> tuple[bool, list[str]]:
        if function not in self.bindings:
            return (True, sorted(set(self.parse_errors), key=_natural)) if self.parse_errors else (False, [])
        violations = set(self.parse_errors) | set(self.notebook_problems()) | set(self.reach_problems(function))
        return True, sorted(violations, key=_natural)

    def reach_problems(self, function: str) -> list[str]:
        """The graded function, what it reaches, and what its test cell calls to make its inputs."""
        queue = [(function, function)] + [(name, f"{name} (called in the test cell of {function})")
                                          for name in self._test_cell_roots(function)]
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
                if (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id != function
                        and any(b.kind == "def" for b in self.bindings.get(node.id, []))):
                    roots.append(node.id)
        return list(dict.fromkeys(roots))

    @staticmethod
    def _by_hand_argument(node) -> str | None:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "by_hand":
            argument = node.args[1] if len(node.args) > 1 else next(
                (k.value for k in node.keywords if k.arg == "function"), None)
            if isinstance(argument, ast.Name):
                return argument.id
        return None

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
            return None, [f"{name} is bound by {binding.place()}, not by a plain def: "
                          "the grader cannot read its code"]
        node = binding.node
        if not binding.top_level:
            return None, [f"{name} is defined inside a block or a function (cell {binding.cell + 1}, line "
                          f"{binding.line}), not by a def at the top of a cell: the grader cannot tell whether "
                          "or when it runs"]
        problems = []
        if isinstance(node, ast.AsyncFunctionDef):
            problems.append(f"line {node.lineno}: is async, which the grader cannot follow")
        for decorator in node.decorator_list:
            problems.append(f"line {decorator.lineno}: has a decorator (@{_describe(decorator)}), which can "
                            f"replace the function with anything: {CANNOT}")
        return (None if problems else node), problems

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
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node is not definition:
                yield from self._resolve(node, local)

    def _resolve(self, node: ast.Name, local: set[str]):
        name, called = node.id, id(node) in self.callees
        if name in local:
            if called:
                yield node.lineno, (f"calls {name}, a local variable or parameter: the grader cannot tell "
                                    "which function that is"), None
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
                yield node.lineno, (f"uses {name}, which is not defined anywhere in the notebook: the grader "
                                    "cannot tell what it is"), None
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
                yield node.lineno, (f"uses {name}, imported as {target}, which the by-hand rule does not allow: "
                                    f"{CANNOT}"), None
            return
        if len(bindings) > 1:
            places = "; ".join(b.place() for b in bindings)
            which = "one runs" if called else "value it has"
            yield node.lineno, (f"{'calls' if called else 'uses'} {name}, which is bound more than once "
                                f"({places}): the grader cannot tell which {which}"), None
            return
        binding = bindings[0]
        if binding.kind == "def":
            yield node.lineno, None, name
        elif binding.kind == "class":
            yield node.lineno, (f"uses class {name}, defined in the notebook: the grader cannot follow what its "
                                "methods do"), None
        elif called:
            yield node.lineno, (f"calls {name}, a value bound by {binding.place()}, not a function defined with "
                                "def: the grader cannot tell which function that is"), None
        elif binding.kind not in ("assign", "annassign"):
            yield node.lineno, f"uses {name}, bound by {binding.place()}: {CANNOT}", None
        else:   # module-level data, assigned once and never called: its value may not reach autograd
            for cell, line, problem in self._weak(binding.value, set(), set()):
                yield node.lineno, (f"uses {name}, whose value reaches autograd ({problem}, cell {cell + 1}, "
                                    f"line {line})"), None

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
            if magic:
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
                yield node.lineno, (f"defines class {node.name}: the grader cannot follow what its methods do "
                                    "when its objects reach the graded functions")
            elif isinstance(node, ast.Call):
                arguments = len(node.args) + len(node.keywords)
                if isinstance(node.func, ast.Name) and node.func.id == "type" and arguments != 1:
                    yield node.lineno, f"creates a class with type(...): {CANNOT}"
                for keyword in node.keywords:
                    if keyword.arg == "allow_pickle" and not (_is_constant(keyword.value) and not keyword.value.value):
                        yield node.lineno, "loads pickled objects (allow_pickle), which can run any code"
                    elif keyword.arg == "weights_only" and not (_is_constant(keyword.value) and keyword.value.value):
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
            yield node.lineno, (f"keeps .{attr} as a value: an autograd function passed around can reach the "
                                "graded functions, and the grader cannot tell where it ends up")

    def _autograd_names(self) -> set[str]:
        if not hasattr(self, "_autograd_bound"):
            self._autograd_bound = {name for name, bindings in self.bindings.items()
                                    if any(b.kind == "import" and _autograd_target(b.target) for b in bindings)}
        return self._autograd_bound

    def _autograd_value(self, root):
        """An autograd namespace (torch.autograd, torch.func, or a name imported from them) may only be
        called, and a torch.func transform's result only applied at once: `torch.func.grad(f)(x)`."""
        top, member = root, None
        while isinstance(self.parent.get(id(top)), ast.Attribute) and self.parent[id(top)].value is top:
            top = self.parent[id(top)]
            member = top.attr
        if isinstance(root, ast.Name):
            target = next(b.target for b in self.bindings[root.id] if b.kind == "import")
            transforms = "func" in target.split(".") or "functorch" in target.split(".")
            member = member or target.rsplit(".", 1)[-1]
        else:
            transforms = root.attr in ("func", "functorch")
        where = _describe(top)
        if id(top) not in self.callees or member is None:
            yield root.lineno, (f"keeps {where} as a value: an autograd function passed around can reach the graded "
                                "functions, and the grader cannot tell where it ends up")
            return
        call = self.parent[id(top)]
        if transforms and member not in FUNC_RETURNS_DATA and id(call) not in self.callees:
            yield root.lineno, (f"keeps the function {where}(...) returns as a value: an autograd function passed "
                                "around can reach the graded functions; apply it at once, as in f(...)(x)")

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
                yield target.lineno, (f"assigns {_describe(target)}: an attribute set to anything but a constant can "
                                      f"change what library code or your functions do, and {CANNOT}")

    # ------------------------------------------------------------------ values that escape

    def _escaping_problems(self) -> list[str]:
        """Functions that untrusted code passes around as values (lambdas, nested defs, defs and
        lambdas named without being called) may not reach autograd: the grader cannot tell where
        they end up (a container, a library callback such as numpy's seterrcall, a cache). A function
        handed to a consumer that calls it there and then and keeps nothing (numeric_gradient, the
        key= of sorted/min/max) is no such value: it runs during that call."""
        roots: list[tuple[ast.AST, str, int, int]] = []   # (node to verify, description, cell, line)
        named_lambdas = {id(b.value): b for bindings in self.bindings.values() for b in bindings
                         if b.kind == "assign" and isinstance(b.value, ast.Lambda)}
        for index, tree in self.trees.items():
            if index in self.trusted:
                continue
            top = {id(stmt) for stmt in tree.body}
            for node in ast.walk(tree):
                if isinstance(node, ast.Lambda):
                    if not (id(node) in named_lambdas or id(node) in self.callees or self._consumed(node)):
                        roots.append((node, "a lambda", index, node.lineno))
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                        id(node) not in top or node.decorator_list):
                    roots.append((node, f"the function {node.name}", index, node.lineno))
                elif (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and id(node) not in self.callees
                      and not self._consumed(node) and not self._checker_argument(node)):
                    for binding in self.bindings.get(node.id, []):
                        if binding.kind == "def" or id(binding.value) in named_lambdas:
                            roots.append((binding.value, f"the function {node.id}", index, node.lineno))
        problems, reported = [], set()
        for node, what, index, line in roots:
            for cell, at, problem in self._weak(node, set(), set()):
                if (cell, at, problem) in reported:
                    continue   # one sentence per construct, naming the first value that reaches it
                reported.add((cell, at, problem))
                problems.append(f"cell {cell + 1}, line {at}: {problem}, reachable from {what} (cell {index + 1}, "
                                f"line {line}), which can be passed around as a value: the grader cannot tell "
                                "whether the graded functions call it")
        return problems

    def _consumed(self, node) -> bool:
        """Whether `node` (a function value) is an argument of a call that runs it at once and keeps
        nothing: numeric_gradient(f, x), sorted(xs, key=f), min/max(..., key=f)."""
        parent = self.parent.get(id(node))
        if isinstance(parent, ast.keyword):
            call = self.parent.get(id(parent))
            return (parent.arg == "key" and isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                    and call.func.id in KEY_CONSUMERS and call.func.id not in self.bindings)
        return (isinstance(parent, ast.Call) and node in parent.args and isinstance(parent.func, ast.Name)
                and self._module_name(parent.func) in CONSUMERS)

    def _checker_argument(self, node: ast.Name) -> bool:
        """`check.by_hand(name, f)` only reads f's name, when `check` is the notebook's Checker()."""
        call = self.parent.get(id(node))
        if self._by_hand_argument(call) != node.id or not isinstance(call.func.value, ast.Name):
            return False
        bindings = self.bindings.get(call.func.value.id, [])
        return bool(bindings) and all(
            b.kind == "assign" and isinstance(b.value, ast.Call) and isinstance(b.value.func, ast.Name)
            and self._module_name(b.value.func) and self._module_name(b.value.func).startswith("autograder.checks")
            for b in bindings)

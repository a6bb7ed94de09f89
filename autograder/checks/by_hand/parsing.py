"""Reading a cell as IPython runs it: its input transformations, then a thread-safe `ast.parse`,
with the allowed magics removed and the others recognised; and `without_magics`, for readers
that only look for imports."""

from __future__ import annotations

import ast
import functools
import gc
import threading

from .vocabulary import ALLOWED_LINE_MAGICS


def without_magics(source: str) -> str:
    """IPython magics and shell escapes are not Python; blank them so the rest parses (for readers
    that only look for imports; the by-hand rule reads cells as IPython transforms them)."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


# ----------------------------------------------------------------------------------- reading cells


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
    except Exception as err:  # IPython's transformers can fail on odd input: not readable either
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
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Call)
        and isinstance(node.func.value.func, ast.Name)
        and node.func.value.func.id == "get_ipython"
    ):
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

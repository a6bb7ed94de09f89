"""Realistic bug operators: each turns one expression of a solution region into a bug students make.

An operator looks at one AST node and proposes replacements for that node's own source text
(the rest of the cell keeps its formatting), each named by the operator's family. Only nodes that
lie wholly between `### BEGIN SOLUTION` and `### END SOLUTION` are touched: the signature, the
docstring and the given code are the instructor's and stay as they are.

The catalogue follows the mistakes graders see (the issue's list): sum<->mean, a transposed
operand, a flipped sign, the wrong dim/axis or a lost keepdim, a dropped term, an off-by-one index
or slice, a missing zero_grad/detach/clone, an in-place update, a dtype change, a constant changed
(1/2 dropped, std<->variance), an update's operator flipped or the update left out.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..cells import BEGIN_SOLUTION, END_SOLUTION, marker_lines


@dataclass(frozen=True)
class Edit:
    """Replace the text between two (line, column) positions of a cell (1-based lines, 0-based
    character columns) by `after`; `before` is the text replaced, for the report."""

    operator: str
    line: int
    start: tuple[int, int]
    end: tuple[int, int]
    before: str
    after: str

    def apply(self, source: str) -> str:
        lines = source.splitlines(keepends=True)
        offset = [0]
        for line in lines:
            offset.append(offset[-1] + len(line))
        a = offset[self.start[0] - 1] + self.start[1]
        b = offset[self.end[0] - 1] + self.end[1]
        return source[:a] + self.after + source[b:]


Proposal = tuple[str, ast.AST]  # (operator family, the node that replaces the visited one)

REDUCTION_SWAPS = {"sum": "mean", "mean": "sum", "max": "min", "min": "max", "argmax": "argmin", "argmin": "argmax"}
STD_VAR = {"std": "var", "var": "std"}
#: Functions and methods whose positional argument (after the tensor, for torch.f) is a dimension.
DIM_FUNCTIONS = {
    "sum",
    "mean",
    "max",
    "min",
    "argmax",
    "argmin",
    "softmax",
    "log_softmax",
    "logsumexp",
    "cumsum",
    "cat",
    "stack",
    "var",
    "std",
    "norm",
    "unsqueeze",
    "squeeze",
    "flatten",
}
DIM_ALTERNATIVES = {0: [1], 1: [0], -1: [0], 2: [1], -2: [-1], 3: [2]}
SKIPPED_CALLS = {"zero_grad", "zero_", "backward", "step"}  # a statement whose absence is a classic bug
PASS_THROUGH = {"detach", "clone", "contiguous"}  # x.detach() -> x
IN_PLACE = {"add", "sub", "mul", "div", "clamp", "exp", "relu", "sigmoid", "tanh", "neg", "abs", "pow", "sqrt", "log"}
DTYPE_SWAPS = {"float32": "float64", "float": "float64", "float64": "float32", "double": "float32", "int64": "float32"}
METHOD_DTYPE_SWAPS = {"float": "double", "double": "float", "long": "float"}
TENSOR_FACTORIES = {"tensor", "as_tensor"}


def solution_edits(source: str) -> list[Edit]:
    """Every edit the catalogue proposes for the solution regions of one cell, in source order.
    A cell that is not valid Python proposes nothing (the build would have refused it)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    regions = marker_lines(source, BEGIN_SOLUTION, END_SOLUTION)
    lines = source.splitlines()
    edits: list[Edit] = []
    seen: set[tuple] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.expr | ast.stmt) or not _inside(node, regions):
            continue
        for family, replacement in _proposals(node):
            after = _text(replacement)
            before = _segment(lines, node)
            key = (node.lineno, node.col_offset, after)
            if after == before or key in seen:
                continue
            seen.add(key)
            start = (node.lineno, _column(lines, node.lineno, node.col_offset))
            end_line = node.end_lineno or node.lineno  # set by ast.parse
            end = (end_line, _column(lines, end_line, node.end_col_offset or 0))
            edits.append(Edit(family, node.lineno, start, end, before, after))
    edits.sort(key=lambda e: (e.start, e.operator, e.after))
    return edits


# --------------------------------------------------------------------------- the catalogue


def _proposals(node: ast.AST) -> Iterator[Proposal]:
    for operator in OPERATORS:
        yield from operator(node)


def _reductions(node: ast.AST) -> Iterator[Proposal]:
    """x.sum() <-> x.mean(), torch.max <-> torch.min, argmax <-> argmin; std <-> var."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        for table, family in ((REDUCTION_SWAPS, "sum/mean, max/min"), (STD_VAR, "std/variance")):
            if node.func.attr in table:
                new = copy.deepcopy(node)
                new.func.attr = table[node.func.attr]  # type: ignore[attr-defined]
                yield family, new


def _transposed(node: ast.AST) -> Iterator[Proposal]:
    """a @ b -> a.T @ b and a @ b.T: the operand the wrong way round."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
        for side in ("left", "right"):
            new = copy.deepcopy(node)
            operand = getattr(new, side)
            # W.T -> W (the transpose forgotten), W -> W.T (one too many)
            is_transposed = isinstance(operand, ast.Attribute) and operand.attr == "T"
            setattr(new, side, operand.value if is_transposed else ast.Attribute(operand, "T", ast.Load()))
            yield "transposed operand", new


def _signs(node: ast.AST) -> Iterator[Proposal]:
    """a - b <-> a + b; -x -> x."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
        new = copy.deepcopy(node)
        new.op = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
        yield "flipped sign", new
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and not isinstance(node.operand, ast.Constant):
        yield "flipped sign", copy.deepcopy(node.operand)


def _updates(node: ast.AST) -> Iterator[Proposal]:
    """x -= g <-> x += g, d /= n <-> d *= n, and the update left out: d[rows, y] -= 1 -> pass."""
    if isinstance(node, ast.AugAssign):
        swaps = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}
        if type(node.op) in swaps:
            new = copy.deepcopy(node)
            new.op = swaps[type(node.op)]()
            yield "flipped sign" if isinstance(node.op, ast.Add | ast.Sub) else "inverted scale", new
        yield "dropped update", ast.Pass()


def _dropped_terms(node: ast.AST) -> Iterator[Proposal]:
    """a + b -> a and -> b; a - b -> a: a term or a bias left out."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
        yield "dropped term", copy.deepcopy(node.left)
        if isinstance(node.op, ast.Add):
            yield "dropped term", copy.deepcopy(node.right)


def _dims(node: ast.AST) -> Iterator[Proposal]:
    """dim=1 -> dim=0 (and friends), keepdim=True -> False, positional dims of reductions."""
    if not isinstance(node, ast.Call):
        return
    for i, keyword in enumerate(node.keywords):
        if keyword.arg in ("dim", "axis") and (value := _int_constant(keyword.value)) is not None:
            for other in DIM_ALTERNATIVES.get(value, []):
                new = copy.deepcopy(node)
                new.keywords[i].value = _int_node(other)
                yield "wrong dim", new
        if keyword.arg == "keepdim" and isinstance(keyword.value, ast.Constant) and keyword.value.value is True:
            new = copy.deepcopy(node)
            del new.keywords[i]
            yield "keepdim dropped", new
    name = node.func.attr if isinstance(node.func, ast.Attribute) else None
    if name in DIM_FUNCTIONS:
        # torch.sum(x, 1): the dim is the second argument; x.sum(1): the first
        on_module = isinstance(node.func, ast.Attribute) and _is_module(node.func.value)
        position = 1 if on_module else 0
        if len(node.args) > position and (value := _int_constant(node.args[position])) is not None:
            for other in DIM_ALTERNATIVES.get(value, []):
                new = copy.deepcopy(node)
                new.args[position] = _int_node(other)
                yield "wrong dim", new


def _off_by_one(node: ast.AST) -> Iterator[Proposal]:
    """m[1] -> m[0], m[1:3] -> m[2:3] / m[1:4], m[:, -1] -> m[:, -2], range(n) -> range(n - 1)."""
    if isinstance(node, ast.Subscript):
        parts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        for i, part in enumerate(parts):
            for shifted in _shifted_index(part):
                new = copy.deepcopy(node)
                if isinstance(new.slice, ast.Tuple):
                    new.slice.elts[i] = shifted
                else:
                    new.slice = shifted
                yield "off by one", new
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range" and node.args:
        shorter = copy.deepcopy(node)
        shorter.args[-1] = ast.BinOp(shorter.args[-1], ast.Sub(), ast.Constant(1))
        yield "off by one", shorter


def _shifted_index(part: ast.expr) -> Iterator[ast.expr]:
    if (value := _int_constant(part)) is not None:
        yield _int_node(value - 1 if value != 0 else 1)
    elif isinstance(part, ast.Slice):
        for bound in ("lower", "upper"):
            value = _int_constant(getattr(part, bound)) if getattr(part, bound) is not None else None
            if value is not None:
                for delta in (-1, 1):
                    if (value + delta == 0 and bound == "upper") or (value >= 0 > value + delta):
                        continue  # m[:0] is empty, m[-1:] a different bug: neither is an off-by-one
                    new = copy.deepcopy(part)
                    setattr(new, bound, _int_node(value + delta))
                    yield new


def _missing_calls(node: ast.AST) -> Iterator[Proposal]:
    """optimizer.zero_grad() / x.grad.zero_() / loss.backward() left out; x.detach() -> x."""
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Attribute):
        if node.value.func.attr in SKIPPED_CALLS:
            yield f"missing {node.value.func.attr}()", ast.Pass()
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in PASS_THROUGH
        and not node.args
    ):
        yield f"missing {node.func.attr}()", copy.deepcopy(node.func.value)


def _in_place(node: ast.AST) -> Iterator[Proposal]:
    """y = x * m -> x *= m; y = x (the input changed under the caller); x.exp() -> x.exp_()."""
    if (
        isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.BinOp)
        and isinstance(node.value.op, ast.Add | ast.Sub | ast.Mult | ast.Div)
        and isinstance(node.value.left, ast.Name)
        and node.value.left.id != node.targets[0].id
    ):
        source = node.value.left.id
        update = ast.AugAssign(ast.Name(source, ast.Store()), copy.deepcopy(node.value.op), node.value.right)
        rebind = ast.Assign([copy.deepcopy(node.targets[0])], ast.Name(source, ast.Load()))
        yield "in-place update", _Statements([update, rebind])
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in IN_PLACE
        and isinstance(node.func.value, ast.Name)
        and not _is_module(node.func.value)
    ):
        new = copy.deepcopy(node)
        new.func.attr += "_"  # type: ignore[attr-defined]
        yield "in-place update", new


def _dtypes(node: ast.AST) -> Iterator[Proposal]:
    """dtype=torch.float32 -> float64, .float() -> .double(), torch.tensor([1.0, 2.0]) -> ([1, 2]) (int64)."""
    if not isinstance(node, ast.Call):
        return
    for i, keyword in enumerate(node.keywords):
        value = keyword.value
        if keyword.arg == "dtype" and isinstance(value, ast.Attribute) and value.attr in DTYPE_SWAPS:
            new = copy.deepcopy(node)
            new.keywords[i].value.attr = DTYPE_SWAPS[value.attr]  # type: ignore[attr-defined]
            yield "dtype", new
    if isinstance(node.func, ast.Attribute) and node.func.attr in METHOD_DTYPE_SWAPS and not node.args:
        new = copy.deepcopy(node)
        new.func.attr = METHOD_DTYPE_SWAPS[node.func.attr]  # type: ignore[attr-defined]
        yield "dtype", new
    is_factory = isinstance(node.func, ast.Attribute) and node.func.attr in TENSOR_FACTORIES
    if is_factory and node.args and not any(k.arg == "dtype" for k in node.keywords):
        new = copy.deepcopy(node)
        whole = [c for c in ast.walk(new.args[0]) if isinstance(c, ast.Constant) and isinstance(c.value, float)]
        if whole and all(c.value.is_integer() for c in whole):  # type: ignore[union-attr]
            for c in whole:
                c.value = int(c.value)  # type: ignore[arg-type]
            yield "dtype", new


def _constants(node: ast.AST) -> Iterator[Proposal]:
    """0.5 * x -> x (1/2 dropped), x ** 2 -> x, x ** 0.5 and sqrt(v) -> v (std <-> variance)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        for side, other in (("left", "right"), ("right", "left")):
            if _number(getattr(node, side)) is not None:
                yield "constant dropped", copy.deepcopy(getattr(node, other))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and _number(node.right) in (2, 0.5):
        yield "constant dropped", copy.deepcopy(node.left)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and _number(node.right) is not None:
        yield "constant dropped", copy.deepcopy(node.left)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "sqrt"
        and _is_module(node.func.value)
        and len(node.args) == 1
    ):
        yield "std/variance", copy.deepcopy(node.args[0])


OPERATORS: list[Callable[[ast.AST], Iterator[Proposal]]] = [
    _reductions,
    _transposed,
    _signs,
    _updates,
    _dropped_terms,
    _dims,
    _off_by_one,
    _missing_calls,
    _in_place,
    _dtypes,
    _constants,
]


# --------------------------------------------------------------------------- helpers


class _Statements(ast.AST):
    """Several statements standing for one (unparsed on one line, joined by '; ')."""

    def __init__(self, body: list[ast.stmt]):
        super().__init__()
        self.body = body


def _text(node: ast.AST) -> str:
    if isinstance(node, _Statements):
        return "; ".join(ast.unparse(ast.fix_missing_locations(s)) for s in node.body)
    return ast.unparse(node)


def _inside(node: ast.AST, regions: list[tuple[int, int]]) -> bool:
    lineno, end = getattr(node, "lineno", None), getattr(node, "end_lineno", None)
    return lineno is not None and end is not None and any(a < lineno and end < b for a, b in regions)


def _segment(lines: list[str], node: ast.AST) -> str:
    start = _column(lines, node.lineno, node.col_offset)  # type: ignore[attr-defined]
    end = _column(lines, node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]
    if node.lineno == node.end_lineno:  # type: ignore[attr-defined]
        return lines[node.lineno - 1][start:end]  # type: ignore[attr-defined]
    body = lines[node.lineno - 1 : node.end_lineno]  # type: ignore[attr-defined]
    return "\n".join([body[0][start:], *body[1:-1], body[-1][:end]])


def _column(lines: list[str], lineno: int, byte_offset: int) -> int:
    """ast's columns count UTF-8 bytes; text columns count characters."""
    return len(lines[lineno - 1].encode()[:byte_offset].decode(errors="ignore"))


def _int_constant(node: ast.AST | None) -> int | None:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return -node.operand.value if type(node.operand.value) is int else None
    return None


def _int_node(value: int) -> ast.expr:
    return ast.UnaryOp(ast.USub(), ast.Constant(-value)) if value < 0 else ast.Constant(value)


def _number(node: ast.AST) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return float(node.value)
    return None


def _is_module(node: ast.AST) -> bool:
    """torch.f / np.f / F.f: a call on a module, not on a tensor."""
    return isinstance(node, ast.Name) and node.id in ("torch", "np", "numpy", "F", "math")

"""The by-hand rule, attacked as students would attack it.

Unit tests: lab 2's real notebook (the instructor's source, solution markers stripped), with an
attack written into it: a cell added after the graded function's cell, or the function's own
cell rewritten. Each attack must yield a violation that names its construct; the honest
solution must yield none, for every graded function, whether the grader says which cells are the
instructor's (`trusted`, as under grading) or not (a kernel's history, as in the build).

End to end (slow): lab 2 built once, one batch of students whose honest-looking affine_backward
or relu_backward reaches autograd by a different trick each. Their functions compute the right
values (every other check of the attacked cell passes), yet the cell scores 0 and the message
names the trick; the honest student keeps full marks.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from autograder.cells import is_test_cell, nbgrader_meta
from autograder.checks.by_hand import function_violations

REPO = Path(__file__).resolve().parent.parent
LAB = "lab2_backprop_xor"
GRADED = ("affine_backward", "relu_backward", "sigmoid_backward", "softmax_loss", "two_layer_loss")


def lab2_cells(notebook: str = "source") -> list[tuple[str, bool]]:
    """(source, trusted) of every code cell of lab 2: the source notebook with its solutions as a
    student would write them (markers stripped), or the blank release. Trusted: locked and test cells."""
    path = REPO / notebook / LAB / f"{LAB}.ipynb"
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    return [
        (
            re.sub(r"(?m)^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", "", c.source),
            bool(nbgrader_meta(c).get("locked") or is_test_cell(c)),
        )
        for c in cells
    ]


def attacked(
    replace: dict[str, str] | None = None, extra: tuple[str, ...] = (), after: str = "affine_backward"
) -> tuple[list[str], frozenset[int]]:
    """Lab 2 with `replace` (function → the code of the student cell that defines it) and `extra`
    cells added after the student cell that defines `after`."""
    cells = [list(cell) for cell in lab2_cells()]

    def student_cell(function):
        return next(
            i
            for i, (source, trusted) in enumerate(cells)
            if not trusted and re.search(rf"(?m)^(async )?def {function}\(", source)
        )

    for function, code in (replace or {}).items():
        cells[student_cell(function)][0] = code.strip()
    at = student_cell(after) + 1
    cells[at:at] = [[code.strip(), False] for code in extra]
    return [c[0] for c in cells], frozenset(i for i, c in enumerate(cells) if c[1])


def violations(function: str = "affine_backward", **attack) -> list[str]:
    sources, trusted = attacked(**attack)
    found, problems = function_violations(sources, function, trusted=trusted)
    assert found
    assert problems == sorted(problems, key=lambda v: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", v)])
    return problems


# ----------------------------------------------------------------------------------- honest work


@pytest.mark.parametrize("function", GRADED)
def test_the_honest_solution_has_no_violation(function):
    sources = [source for source, _ in lab2_cells()]
    trusted = frozenset(i for i, (_, t) in enumerate(lab2_cells()) if t)
    assert function_violations(sources, function, trusted=trusted) == (True, [])
    # A kernel's history (the build's own run, a student's Jupyter) says nothing of trust.
    assert function_violations(sources, function) == (True, [])
    # Every cell run twice, as "Run all" twice does, binds nothing twice.
    assert function_violations(sources + sources, function) == (True, [])


@pytest.mark.parametrize("function", GRADED)
def test_the_blank_release_has_no_violation(function):
    sources = [source for source, _ in lab2_cells("release")]
    assert function_violations(sources, function) == (True, [])


HONEST_NAMES = '''
EPS = 1e-12


def affine_backward(dout, cache):
    """Variables called grad and dW, a module-level constant, no_grad, a helper lambda, sorted(key=)."""
    x, W, b = cache
    with torch.no_grad():
        grad = dout @ W.T
        dW = x.T @ dout
        grads = {"dx": grad, "dW": dW, "db": dout.sum(dim=0) + EPS * 0}
    order = sorted(grads, key=lambda k: len(k))
    return grads["dx"], grads["dW"], grads["db"]
'''


def test_a_variable_called_grad_or_dW_is_fine():
    assert violations(replace={"affine_backward": HONEST_NAMES}) == []
    assert violations("two_layer_loss", replace={"affine_backward": HONEST_NAMES}) == []


def test_an_absent_function_is_not_found_and_a_cell_that_does_not_parse_is_named():
    sources = [source for source, _ in lab2_cells()]
    assert function_violations(sources, "no_such_function") == (False, [])
    broken = sources + ["def oops(:\n    pass"]
    assert function_violations(broken, "no_such_function") == (
        True,
        [f"cell {len(broken)} does not parse: invalid syntax (line 1): the grader cannot read what it does"],
    )


# ----------------------------------------------------------------------------------- attacks

AUTOGRAD_AFFINE = """
def _affine_vjp(dout, cache):
    x, W, b = (t.detach().requires_grad_(True) for t in cache)
    return torch.autograd.grad(x @ W + b, (x, W, b), dout)
"""
HONEST_AFFINE = """
def affine_backward(dout, cache):
    x, W, b = cache
    return dout @ W.T, x.T @ dout, dout.sum(dim=0)
"""


def calls(expression: str) -> dict:
    """affine_backward rewritten to return `expression` (honest-looking: no autograd in sight)."""
    return {"affine_backward": f"def affine_backward(dout, cache):\n    x, W, b = cache\n    return {expression}"}


ATTACKS = {
    # name: (the attack, a phrase its violation must contain)
    "an import alias": (
        dict(
            extra=["from torch.autograd import grad as vector_jacobian"],
            replace={
                "affine_backward": "def affine_backward(dout, cache):\n"
                "    x, W, b = (t.detach().requires_grad_(True) for t in cache)\n"
                "    return vector_jacobian(x @ W + b, (x, W, b), dout)"
            },
        ),
        "uses torch.autograd.grad (imported as vector_jacobian)",
    ),
    "a module alias": (
        dict(
            extra=["AG = torch.autograd", AUTOGRAD_AFFINE.replace("torch.autograd", "AG")],
            replace=calls("_affine_vjp(dout, cache)"),
        ),
        "keeps torch.autograd as a value",
    ),
    "torch.func imported under a plain name": (dict(extra=["import torch.func as tools"]), "imports torch.func"),
    "an eval alias": (
        dict(extra=["e = eval"], replace=calls("e('torch.autograd.grad')(x @ W + b, (x, W, b), dout)")),
        "runs code from a string (eval)",
    ),
    "the eval alias as seen from the function": (
        dict(extra=["e = eval"], replace=calls("e('torch.autograd.grad')(x @ W + b, (x, W, b), dout)")),
        "affine_backward, line 3: calls e, a value bound by an assignment at cell 7, line 1",
    ),
    "operator.methodcaller": (
        dict(extra=["from operator import methodcaller\nrun_backward = methodcaller('backward')"]),
        "imports operator.methodcaller",
    ),
    "sys.modules": (dict(extra=["import sys\nT = sys.modules['torch']"]), "imports sys"),
    "a lambda stored in a dict": (
        dict(
            extra=[AUTOGRAD_AFFINE + "\n\nOPS = {'b': lambda dout, cache: _affine_vjp(dout, cache)}"],
            replace=calls("OPS['b'](dout, cache)"),
        ),
        "calls a function taken out of a container (OPS['b'])",
    ),
    "a def inside an if block": (
        dict(extra=["if True:" + AUTOGRAD_AFFINE.replace("\n", "\n    ")], replace=calls("_affine_vjp(dout, cache)")),
        "_affine_vjp is defined inside a block or a function (cell 7, line 2)",
    ),
    "a class method": (
        dict(
            extra=["class Helper:\n    @staticmethod" + AUTOGRAD_AFFINE.replace("\n", "\n    ")],
            replace=calls("Helper._affine_vjp(dout, cache)"),
        ),
        "uses class Helper, defined in the notebook",
    ),
    "a class, notebook-wide": (dict(extra=["class Sneaky(torch.Tensor):\n    pass"]), "defines class Sneaky"),
    "type() with three arguments": (
        dict(extra=["Sneaky = type('Sneaky', (torch.Tensor,), {})"]),
        "creates a class with type(...)",
    ),
    "a decorator on the graded function": (
        dict(
            replace={
                "affine_backward": AUTOGRAD_AFFINE
                + """

def checked(function):
    return _affine_vjp


@checked
"""
                + HONEST_AFFINE
            }
        ),
        "affine_backward, line 10: has a decorator (@checked)",
    ),
    "a rebinding after the def": (
        dict(extra=[AUTOGRAD_AFFINE + "\n\naffine_backward = _affine_vjp"]),
        "affine_backward is bound more than once (a def at cell 6, line 1; an assignment at cell 7, line 6)",
    ),
    "globals()[...] = ...": (
        dict(extra=[AUTOGRAD_AFFINE + "\n\nglobals()['affine_backward'] = _affine_vjp"]),
        "reaches the notebook's variables dynamically (globals)",
    ),
    "a decoy: a second def wins": (
        dict(extra=[AUTOGRAD_AFFINE.replace("_affine_vjp", "affine_backward")]),
        "affine_backward is bound more than once (a def at cell 6, line 1; a def at cell 7",
    ),
    "a decoy: a for loop binds it": (
        dict(extra=[AUTOGRAD_AFFINE + "\n\nfor affine_backward in [_affine_vjp]:\n    pass"]),
        "a for loop at cell 7, line 6",
    ),
    "a decoy: a global declaration": (
        dict(
            extra=[
                AUTOGRAD_AFFINE + "\n\ndef install():\n    global affine_backward\n    affine_backward = _affine_vjp"
            ]
        ),
        "a global declaration at cell 7, line 7",
    ),
    "a decoy: an assignment expression": (
        dict(extra=[AUTOGRAD_AFFINE + "\n\n(affine_backward := _affine_vjp)"]),
        "an assignment expression (:=) at cell 7, line 6",
    ),
    "a decoy: import as": (dict(extra=["from math import sqrt as affine_backward"]), "an import at cell 7, line 1"),
    "a decoy: del": (dict(extra=["del affine_backward"]), "a del statement at cell 7, line 1"),
    "a decoy made by exec": (
        dict(extra=["exec('def affine_backward(dout, cache): return None')"]),
        "runs code from a string (exec)",
    ),
    "a swapped __code__": (
        dict(extra=["affine_backward.__code__ = (lambda dout, cache: None).__code__"]),
        "uses .__code__, which reaches Python's internals",
    ),
    "a module written by %%writefile": (
        dict(
            extra=["%%writefile helpers.py\nimport torch\n" + AUTOGRAD_AFFINE, "import helpers"],
            replace=calls("helpers._affine_vjp(dout, cache)"),
        ),
        "uses the cell magic %%writefile",
    ),
    "a written module imported": (
        dict(
            extra=["%%writefile helpers.py\nimport torch\n" + AUTOGRAD_AFFINE, "import helpers"],
            replace=calls("helpers._affine_vjp(dout, cache)"),
        ),
        "cell 8, line 1: imports helpers, which is not on the by-hand rule's list of modules",
    ),
    "a module written to /tmp": (
        dict(
            extra=[
                "import sys\nwith open('/tmp/helpers.py', 'w') as f:\n"
                "    f.write('x = 1')\nsys.path.insert(0, '/tmp')\nimport helpers"
            ]
        ),
        "imports helpers",
    ),
    "importlib": (dict(extra=["import importlib\nhelpers = importlib.import_module('helpers')"]), "imports importlib"),
    "a relative import": (dict(extra=["from . import helpers"]), "imports .helpers relatively"),
    "import *": (dict(extra=["from torch.autograd import *"]), "imports * from torch.autograd"),
    "a cell that does not parse": (dict(extra=["def affine_backward(dout, cache:\n    pass"]), "cell 7 does not parse"),
    "IPython syntax the old rule skipped": (
        dict(extra=["files = !ls\n" + AUTOGRAD_AFFINE + "\naffine_backward = _affine_vjp"]),
        "runs a shell command (!...)",
    ),
    "%run": (dict(extra=["%run helpers.py"]), "uses the magic %run"),
    "a help line": (dict(extra=["torch.autograd.grad?"]), "uses the magic %pinfo"),
    "get_ipython()": (dict(extra=["get_ipython().run_cell('import torch')"]), "uses get_ipython().run_cell"),
    "getattr": (dict(replace=calls("getattr(x, 'back' + 'ward')")), "looks up attributes dynamically (getattr)"),
    "setattr": (dict(extra=["setattr(torch, 'matmul', lambda a, b: a @ b)"]), "sets attributes dynamically (setattr)"),
    "vars()": (dict(extra=["vars()['affine_backward'] = None"]), "reaches an object's attributes dynamically (vars)"),
    "__builtins__": (dict(extra=["__builtins__.eval('1')"]), "uses __builtins__"),
    "a monkeypatched torch function": (dict(extra=["torch.matmul = lambda a, b: a @ b"]), "assigns torch.matmul"),
    "a monkeypatched operator": (
        dict(extra=["torch.Tensor.__matmul__ = torch.Tensor.__rmatmul__"]),
        "assigns torch.Tensor.__matmul__",
    ),
    "a monkeypatch through an alias": (dict(extra=["T = torch.Tensor\nT.matmul = T.mul"]), "assigns T.matmul"),
    "a function stored on a tensor": (dict(extra=["STASH = torch.zeros(1)\nSTASH.vjp = print"]), "assigns STASH.vjp"),
    "torch.library": (dict(extra=["lib = torch.library.Library('aten', 'IMPL')"]), "torch.library"),
    "a private torch attribute": (dict(extra=["torch._C._set_grad_enabled(True)"]), "uses the private attribute ._C"),
    "os.system": (dict(extra=["import os\nos.system('echo x = 1 > helpers.py')"]), "uses os.system"),
    "a pickle": (dict(extra=["obj = np.load('x.npy', allow_pickle=True)"]), "loads pickled objects (allow_pickle)"),
    "a plotting backend loaded by name": (
        dict(extra=["import matplotlib\nmatplotlib.use('module://helpers')"]),
        "names a module to load by name (module://helpers)",
    ),
    "a default argument": (
        dict(
            replace={
                "affine_backward": "def affine_backward(dout, cache, vjp=torch.autograd.grad):"
                "\n    x, W, b = cache\n"
                "    return vjp(x @ W + b, (x, W, b), dout)"
            }
        ),
        "affine_backward, line 1: uses torch.autograd",
    ),
    "a parameter called": (
        dict(replace={"affine_backward": "def affine_backward(dout, cache, vjp=None):\n    return vjp(dout)"}),
        "calls vjp, a local variable or parameter",
    ),
    "a nested def in the graded function": (
        dict(
            replace={
                "affine_backward": "def affine_backward(dout, cache):\n"
                + AUTOGRAD_AFFINE.replace("\n", "\n    ")
                + "\n    return _affine_vjp(dout, cache)"
            }
        ),
        "affine_backward, line 5: uses torch.autograd",
    ),
    "the result of a call, called": (
        dict(extra=[AUTOGRAD_AFFINE + "\n\ndef make():\n    return _affine_vjp"], replace=calls("make()(dout, cache)")),
        "calls the result of a call (make())",
    ),
    "a helper one call away": (
        dict(extra=[AUTOGRAD_AFFINE], replace=calls("_affine_vjp(dout, cache)")),
        "_affine_vjp (called from affine_backward), line 2: turns on requires_grad",
    ),
    "a builtin shadowed": (
        dict(extra=[AUTOGRAD_AFFINE + "\n\nlen = _affine_vjp"], replace=calls("len(dout, cache)")),
        "calls len, a value bound by an assignment",
    ),
    "a builtin not on the list": (
        dict(replace=calls("type(dout)")),
        "uses type, a builtin the by-hand rule does not allow",
    ),
    "torch rebound": (dict(extra=["import numpy as torch"]), None),  # judged below, through relu_forward
    "enable_grad": (
        dict(
            replace={
                "affine_backward": "def affine_backward(dout, cache):\n"
                "    with torch.enable_grad():\n"
                "        x, W, b = cache\n"
                "        return dout @ W.T, x.T @ dout, dout.sum(dim=0)"
            }
        ),
        "turns autograd on (enable_grad)",
    ),
    "requires_grad=": (dict(replace=calls("torch.ones(1, requires_grad=True)")), "creates a tensor with requires_grad"),
    "a tensor hook": (dict(replace=calls("x.register_hook(print)")), "uses .register_hook"),
    "raw aten operators": (dict(replace=calls("torch.ops.aten.mm(dout, W.T)")), "uses torch.ops"),
    "a backward op by name": (
        dict(replace=calls("torch.threshold_backward(dout, x, 0.0)")),
        "uses .threshold_backward",
    ),
    "finite differences": (
        dict(replace=calls("numeric_gradient(lambda V: ((x @ V + b) * dout).sum(), W)")),
        "uses autograder.checks.numeric_gradient (imported as numeric_gradient), which computes a gradient for you",
    ),
    "a torch.func transform kept": (
        dict(extra=["G = torch.func.grad(lambda W: W.sum())"]),
        "keeps the function torch.func.grad(...) returns as a value",
    ),
    ".backward kept as a value": (dict(extra=["run = torch.ones(1).backward"]), "keeps .backward as a value"),
    "autograd in the forward pass that feeds the graded function": (
        dict(
            replace={
                "affine_forward": """
def affine_forward(x, W, b):
    jac = torch.autograd.functional.jacobian(lambda x, W, b: x @ W + b, (x, W, b))
    return x @ W + b, (x, W, b, jac)
"""
            }
        ),
        "affine_forward (called in the test cell of affine_backward), line 2: uses torch.autograd",
    ),
    "a closure smuggled in the cache": (
        dict(
            replace={
                "affine_forward": """
def affine_forward(x, W, b):
    x, W, b = (t.detach().requires_grad_(True) for t in (x, W, b))
    out = x @ W + b
    return out.detach(), (x, W, b, lambda d: torch.autograd.grad(out, (x, W, b), d))
""",
                "affine_backward": "def affine_backward(dout, cache):\n    x, W, b, vjp = cache\n    return vjp(dout)",
            }
        ),
        "affine_backward, line 3: calls vjp, a local variable or parameter",
    ),
    "a library callback": (
        dict(
            extra=[
                """
STORE = []


def on_error(kind, flag):
    STORE.append(torch.autograd.grad(*STORE.pop()))


np.seterrcall(on_error)
np.seterr(all="call")
"""
            ]
        ),
        "cell 7, line 5: uses torch.autograd, reachable from the function on_error (cell 7, line 8)",
    ),
    "a callable smuggled through key=": (
        dict(extra=[AUTOGRAD_AFFINE + "\n\nBOX = [_affine_vjp]"], replace=calls("max([(dout, cache)], key=BOX[0])")),
        "uses BOX, whose value reaches autograd",
    ),
    "async def": (
        dict(replace={"affine_backward": "async def affine_backward(dout, cache):\n    return None"}),
        "affine_backward, line 1: is async",
    ),
}


@pytest.mark.parametrize("attack", [a for a, (_, phrase) in ATTACKS.items() if phrase], ids=str)
def test_each_attack_is_named(attack):
    spec, phrase = ATTACKS[attack]
    found = violations(**spec)
    assert any(phrase in v for v in found), found
    if any(v.startswith("cell ") for v in found):
        # A notebook-wide violation costs every graded function: such code can patch what any of them calls.
        assert all(any(v.startswith("cell ") for v in violations(f, **spec)) for f in GRADED)


@pytest.mark.parametrize(
    ("argument", "refused"),
    [
        ("allow_pickle=True", True),
        ("allow_pickle=not False", True),
        ("allow_pickle=-1", True),
        ("allow_pickle=flag", True),
        ("allow_pickle=-'x'", True),
        ("allow_pickle=False", False),
        ("allow_pickle=not True", False),
        ("allow_pickle=-0", False),
        ("weights_only=False", True),
        ("weights_only=not True", True),
        ("weights_only=not False", False),
    ],
)
def test_pickle_arguments_are_read_as_constants_negated_or_not(argument, refused):
    # a negated constant was read as a plain one (AttributeError: 'UnaryOp' object has no attribute 'value')
    loader = "np.load('x.npy', " if argument.startswith("allow") else "torch.load('x.pt', "
    found = violations(extra=[f"flag = True\nobj = {loader}{argument})"])
    assert any("loads pickled objects" in v for v in found) is refused, found


def test_a_rebound_module_name_is_refused_where_it_is_used():
    spec, _ = ATTACKS["torch rebound"]
    assert any(
        "relu_forward (called in the test cell of relu_backward), line 5: uses torch, imported as "
        "different things (torch at cell 1, line 6; numpy at cell 7, line 1)" in v
        for v in violations("relu_backward", **spec)
    )


def test_a_violation_in_a_layer_reaches_the_functions_that_call_it_and_no_other():
    spec = dict(extra=[AUTOGRAD_AFFINE], replace=calls("_affine_vjp(dout, cache)"))
    assert "_affine_vjp (called from two_layer_loss), line 2: turns on requires_grad" in violations(
        "two_layer_loss", **spec
    )
    # the layer is no one else's business: the other functions keep their points
    assert [violations(f, **spec) for f in ("relu_backward", "sigmoid_backward", "softmax_loss")] == [[], [], []]


def test_instructor_cells_are_trusted_but_still_may_not_bind_graded_names():
    sources, trusted = attacked()
    setup = min(trusted)
    patched = list(sources)
    patched[setup] += "\nhelper = getattr(torch, 'exp')"
    assert function_violations(patched, "affine_backward", trusted=trusted) == (True, [])
    assert any("getattr" in v for v in function_violations(patched, "affine_backward")[1])
    patched[setup] += "\naffine_backward = None"
    found, problems = function_violations(patched, "affine_backward", trusted=trusted)
    assert any(p.startswith("affine_backward is bound more than once (an assignment at cell 1") for p in problems)


def test_allowed_magics_and_others():
    sources, trusted = attacked()
    assert function_violations(["%matplotlib inline"] + sources, "affine_backward")[1] == []
    for magic, phrase in [
        ("%time x = 1", "%time"),
        ("%%capture\nx = 1", "%%capture"),
        ("%load_ext autoreload", "%load_ext"),
        ("%config InlineBackend.figure_format = 'svg'", "%config"),
    ]:
        assert any(phrase in v for v in function_violations([magic] + sources, "affine_backward")[1]), magic


def test_without_magics_is_still_exported():
    from autograder.checks.by_hand import without_magics

    assert without_magics("%matplotlib inline\nimport torch\n!ls") == "\nimport torch\n"


def test_parsing_is_safe_in_threads():
    """The grader judges submissions in threads; CPython 3.11's ast.parse is not thread-safe when a
    GC callback runs Python code mid-parse (python/cpython#106905's kin): parse_python is."""
    import gc
    import threading

    from autograder.checks.by_hand import parse_python

    source = "\n".join(p.read_text() for p in sorted((REPO / "autograder" / "checks" / "by_hand").glob("*.py")))
    failures = []

    def parse_many():
        for _ in range(40):
            try:
                parse_python(source)
            except SystemError as err:
                failures.append(err)

    callback = lambda phase, info: sum(range(50))  # noqa: E731  (Python code run by every GC)
    gc.callbacks.append(callback)
    try:
        threads = [threading.Thread(target=parse_many) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        gc.callbacks.remove(callback)
    assert failures == []


# ----------------------------------------------------------------------------------- end to end

E2E_AFFINE = '''
def affine_backward(dout, cache):
    """dx, dW, db by hand (or so it looks)."""
    x, W, b = (t.detach().requires_grad_(True) for t in cache)
    return vector_jacobian(x @ W + b, (x, W, b), dout)
'''
E2E_RELU_FORWARD = """
def relu_forward(x):
    return torch.clamp(x, min=0.0), x
"""
RELU_BY_AUTOGRAD = """
def {name}(dout, cache):
    x = cache.detach().requires_grad_(True)
    return torch.autograd.grad(torch.relu(x), x, dout)[0]
"""
E2E_CHEATERS = {
    # student: (what they do, the function attacked, DemoStudent keywords, a phrase of the message)
    "aliaser": (
        "torch.autograd.grad imported under an innocent name",
        "affine_backward",
        dict(extra_cell="from torch.autograd import grad as vector_jacobian", replace={"affine_backward": E2E_AFFINE}),
        "uses torch.autograd.grad (imported as vector_jacobian)",
    ),
    "evaluator": (
        "eval under another name, autograd named in a string",
        "relu_backward",
        dict(
            extra_cell="run = eval",
            replace={
                "relu_backward": E2E_RELU_FORWARD
                + """

def relu_backward(dout, cache):
    x = cache.detach()
    x.requires_grad = True
    return run("torch.autograd.grad")(torch.relu(x), x, dout)[0]
"""
            },
        ),
        "runs code from a string (eval)",
    ),
    "dispatcher": (
        "a lambda kept in a dict, called through it",
        "affine_backward",
        dict(
            extra_cell="BACKWARD = {'affine': lambda dout, cache: torch.autograd.grad(\n"
            "    cache[0] @ cache[1] + cache[2], cache, dout)}",
            replace={
                "affine_forward": """
def affine_forward(x, W, b):
    return x @ W + b, tuple(t.detach().requires_grad_(True) for t in (x, W, b))
""",
                "affine_backward": "def affine_backward(dout, cache):\n    return BACKWARD['affine'](dout, cache)",
            },
        ),
        "calls a function taken out of a container (BACKWARD['affine'])",
    ),
    "decorator": (
        "a decorator that swaps the honest relu_backward for autograd",
        "relu_backward",
        dict(
            replace={
                "relu_backward": E2E_RELU_FORWARD
                + RELU_BY_AUTOGRAD.format(name="_relu_vjp")
                + '''

def checked(function):
    """Looks like a shape check."""
    return _relu_vjp


@checked
def relu_backward(dout, cache):
    return dout * (cache > 0)
'''
            }
        ),
        "has a decorator (@checked)",
    ),
    "rebinder": (
        "an honest def, then the name rebound to autograd",
        "affine_backward",
        dict(replace={"affine_backward": HONEST_AFFINE + AUTOGRAD_AFFINE + "\n\naffine_backward = _affine_vjp"}),
        "bound more than once (a def at cell 6, line 1; an assignment at cell 6, line 10)",
    ),
    "importer": (
        "a module written to disk and imported",
        "relu_backward",
        dict(
            extra_cell='''
import os, sys
for folder in (os.getcwd(), "/tmp"):
    try:
        with open(os.path.join(folder, "relu_helpers.py"), "w") as f:
            f.write("import torch\\n" + """'''
            + RELU_BY_AUTOGRAD.format(name="relu_vjp")
            + '''""")
        sys.path.insert(0, folder)
        break
    except OSError:
        pass
import relu_helpers
''',
            replace={
                "relu_backward": E2E_RELU_FORWARD + "\n\ndef relu_backward(dout, cache):\n"
                "    return relu_helpers.relu_vjp(dout, cache)"
            },
        ),
        "imports relu_helpers",
    ),
    "skipper": (
        "a cell the old rule could not parse (a help line), autograd under a decoy",
        "relu_backward",
        dict(
            extra_cell=E2E_RELU_FORWARD + "\n\ndef relu_backward(dout, cache):\n    return dout * (cache > 0)",
            replace={
                "relu_backward": "torch.autograd.grad?\n"
                + E2E_RELU_FORWARD
                + RELU_BY_AUTOGRAD.format(name="relu_backward")
            },
        ),
        "uses the magic %pinfo",
    ),
}
#: The test cells a by-hand violation of each function zeroes (two_layer_loss calls both layers).
ATTACKED_CELLS = {
    "affine_backward": ("affine_backward_tests", "two_layer_loss_tests"),
    "relu_backward": ("relu_tests", "two_layer_loss_tests"),
}
CELL_OF = {
    "affine_backward_tests": "affine_backward_by_hand",
    "relu_tests": "relu_backward_by_hand",
    "two_layer_loss_tests": "two_layer_loss_by_hand",
}


@pytest.fixture(scope="module")
def graded_cheaters(tmp_path_factory):
    """Lab 2 built once; the honest student and every cheater graded in one batch."""
    from autograder.demo import DemoStudent
    from conftest import build_repo_lab, grade_class

    course = build_repo_lab(tmp_path_factory, LAB, ["xor"])
    students = [DemoStudent("honest", "the solution")] + [
        DemoStudent(name, story, **keywords) for name, (story, _, keywords, _) in E2E_CHEATERS.items()
    ]
    return grade_class(course, LAB, students)


@pytest.mark.slow
def test_autograd_by_any_trick_scores_nothing_and_is_named(graded_cheaters):
    honest = graded_cheaters["honest"]
    assert (honest.status, honest.reason) == ("graded", None)
    assert honest.score == honest.max_score > 0
    assert all(check.passed for cell in honest.cells for check in cell.checks)
    for student, (_story, function, _, phrase) in E2E_CHEATERS.items():
        result = graded_cheaters[student]
        assert (result.status, result.reason) == ("graded", None), (student, result.reason)
        cells = {cell.grade_id: cell for cell in result.cells}
        for grade_id in ATTACKED_CELLS[function]:
            cell = cells[grade_id]
            assert cell.score == 0.0, (student, grade_id, cell.score)
            by_hand = {c.name: c for c in cell.checks}[CELL_OF[grade_id]]
            assert not by_hand.passed and phrase in by_hand.message, (student, by_hand.message)
            # The trick worked: autograd computed the right values, every other check of the cell passed.
            assert [c.name for c in cell.checks if not c.passed] == [CELL_OF[grade_id]], (student, grade_id)

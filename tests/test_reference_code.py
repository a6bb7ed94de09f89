"""Reference code leaves the graded test cells (autograder/authoring/reference_code.py), on cell sources."""

from __future__ import annotations

import ast

import pytest
from nbformat.v4 import new_notebook

from autograder.authoring.reference_code import (
    reference_only_names,
    strip_expected_arguments,
    strip_reference_code,
)
from autograder.authoring.source_rules import SourceError
from notebooks import grade_cell, solution_cell


def stripped(*cells):
    nb = new_notebook(cells=list(cells))
    strip_reference_code(nb, "lab.ipynb")
    return [cell.source for cell in nb.cells]


def test_expected_arguments_go_wherever_they_stand():
    assert (
        strip_expected_arguments('check.equal("a", all(x),\n            expected=True, hint="h")')
        == 'check.equal("a", all(x),\n            hint="h")'
    )
    assert (
        strip_expected_arguments('check.grad("a", v,\n    expected={"x": f(1),\n        "y": 2},\n    hint="h")')
        == 'check.grad("a", v,\n    hint="h")'
    )
    assert (
        strip_expected_arguments('check.grad("a", v, hint=h, expected={\n  "x": f(1)})\nnext()')
        == 'check.grad("a", v, hint=h)\nnext()'
    )
    assert strip_expected_arguments('check.close("é", "ü" + v, expected=[1.0, 2.0])') == 'check.close("é", "ü" + v)'


def test_statements_that_only_feed_expected_go_transitively():
    source = (
        "import torch.nn.functional as F\n"
        "loss = lambda W: F.cross_entropy(x @ W, y)\n"
        "autograd_dW = torch.func.grad(loss)(W)\n"
        "dW = backward(x, W)\n"
        "check.grad('dW', dW, expected={'autograd': autograd_dW, 'fd': numeric_gradient(loss, W)})\n"
    )
    assert reference_only_names([source]) == {"F", "loss", "autograd_dW"}  # F serves only loss, loss only references
    (out,) = stripped(grade_cell("t", source))
    assert out == "dW = backward(x, W)\ncheck.grad('dW', dW)\n"
    ast.parse(out)


def test_a_name_used_outside_expected_anywhere_stays():
    test = "ref = helper(x)\ncheck.close('a', f(x), expected=ref)"
    later = solution_cell("s", "def g():\n    return ref")
    assert stripped(grade_cell("t", test), later)[0] == "ref = helper(x)\ncheck.close('a', f(x))"


def test_an_emptied_block_keeps_a_pass():
    out = stripped(
        grade_cell(
            "t",
            "for k in keys:\n    ref = auto(k)\n    check.close(k, f(k), expected=ref)\n"
            "if ready:\n    other = auto(0)\ncheck.close('b', other2, expected=other)",
        )
    )[0]
    assert out == "for k in keys:\n    check.close(k, f(k))\nif ready:\n    pass\ncheck.close('b', other2)"


@pytest.mark.parametrize(
    "source",
    [
        "value, ref = f(x), auto(x)\ncheck.close('a', value, expected=ref)",  # unpacked with a tested value
        "ref = auto(x)\nref += 1\ncheck.close('a', f(x), expected=ref)",  # augmented
    ],
)
def test_a_reference_bound_with_other_values_is_refused_naming_the_line(source):
    with pytest.raises(
        SourceError,
        match=r"lab.ipynb, cell 0 \(grade_id 't'\): line \d binds ref, used only in "
        r"expected= arguments",
    ):
        stripped(grade_cell("t", source))


def test_solution_cells_are_left_alone():
    solution = "def f(x):\n    return x\nexpected = 3\ncheck_value = g(expected=1)"
    assert stripped(solution_cell("s", solution))[0] == solution

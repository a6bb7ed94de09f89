"""grading/export.py's spreadsheet_safe: no CSV cell runs as a formula, numbers stay numbers.

OWASP's CSV-injection rule: text that starts with =, +, -, @, a tab or a carriage return gets a
leading ' (so a spreadsheet shows it as text); a number, even a signed one, is written as it is.
"""

from __future__ import annotations

import pytest

from autograder.grading.export import spreadsheet_safe

CELLS = [
    # formulas and what a spreadsheet would read as one: quoted
    ("=SUM(A1:A9)", "'=SUM(A1:A9)", "equals-formula"),
    ("=1", "'=1", "equals-number"),
    ("+1+2", "'+1+2", "plus-expression"),
    ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0", "dde-payload"),
    ("@SUM(1)", "'@SUM(1)", "at-function"),
    ("\t=1", "'\t=1", "tab"),
    ("\r=1", "'\r=1", "carriage-return"),
    ("-", "'-", "a-lone-minus"),
    ("--1", "'--1", "double-minus"),
    ("- 1", "'- 1", "minus-space"),
    ("-inf", "'-inf", "minus-inf-text"),
    (float("-inf"), "'-inf", "minus-inf-float"),
    ("+nan", "'+nan", "plus-nan"),
    # numbers: kept
    ("-1.5", "-1.5", "negative-decimal"),
    ("+1", "+1", "explicit-plus"),
    ("-.5", "-.5", "no-leading-digit"),
    ("-1.", "-1.", "trailing-point"),
    ("-1e-5", "-1e-5", "exponent"),
    ("-1E+3", "-1E+3", "capital-exponent"),
    (-2.5, "-2.5", "float"),
    (-1e-07, "-1e-07", "float-exponent"),
    (3, "3", "int"),
    # plain text and other values: as str() writes them
    ("alice", "alice", "student-id"),
    ("failed: timeout: cell 7 ran longer than 300 s", "failed: timeout: cell 7 ran longer than 300 s", "status"),
    ("", "", "empty"),
    (True, "True", "bool"),
    (None, "None", "none"),
    (float("nan"), "nan", "nan-float"),
]


@pytest.mark.parametrize(("value", "written"), [c[:2] for c in CELLS], ids=[c[2] for c in CELLS])
def test_spreadsheet_safe(value, written):
    assert spreadsheet_safe(value) == written

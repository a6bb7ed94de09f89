"""Forged reasons, judged from outside: a hidden test smuggled out through a check's message.

Student code under grading shares its kernel with the restored hidden cells, so it can read their
source (`In[-1]` while a test cell runs) and write it, encoded, where a message quotes the kernel:
an observation of its own under a hidden check's name whose `problem` ("could not be recorded: the
value was <problem>") is the source reversed and in base64, or a text that starts as an honest
template and forges a "hint:" line below it; an exception whose class name holds a newline and a
"hint:" line. One sandboxed batch grades the tiny case lab (checks with hints) for these students
and for an honest mistake, a forgotten `return`; the pages written by `autograder feedback` must
carry none of the encodings nor a hidden line, still fail those checks, keep each check's real
hint, and still tell the honest student that the value was a NoneType.

A value is the student's to choose too: under an `equal` check (which records plain data) a
`quoter` records the running cell's source as one long string and as a list of short pieces; the
page says only their type and size, while a small honest value (a wrong shape list) is still quoted.
"""

from __future__ import annotations

import base64
import html
import re

import pytest
from traitlets.config import Config

from autograder.authoring.pipeline import build_lab
from autograder.course import Course
from autograder.demo import DemoStudent, make_submission
from autograder.executors.sandbox import probe
from autograder.grading.batch import grade_lab
from autograder.grading.feedback import write_feedback
from autograder.grading.sanitize import sanitize
from conftest import new_course
from notebooks import ROW_MAX_HINT, SOFTMAX_HINT, case_lab, grade_cell, write_lab

LAB = "cases"

pytestmark = pytest.mark.skipif(not probe().available, reason=f"no sandbox here: {probe().reason}")


def reversed_text(source: str) -> str:
    return source[::-1]


def base64_text(source: str) -> str:
    return base64.b64encode(source.encode()).decode()


def one_line_reversed(source: str) -> str:
    return source[::-1].replace("\n", " ")


# After each honest record of a hidden check, an observation of the student's own under its name (the
# last one counts), whose problem carries the running test cell's source: reversed and in base64; in
# base64 under an honest template and a forged hint line; reversed, on one line, inside the free part
# of a template (numpy's text, in an honest "a ragged list (...)").
FORGER = """
import base64
from IPython.display import display
from autograder.checks.observation import MIME_TYPE
FORGED = {
    "row_max_wide": lambda s: s[::-1] + " " + base64.b64encode(s.encode()).decode(),
    "softmax_rows": lambda s: "a builtins.NoneType, not a tensor or number\\n  hint: "
    + base64.b64encode(s.encode()).decode(),
    "row_max_rows": lambda s: "a ragged list (" + s[::-1].replace("\\n", " ") + ")",
}
_record = check._run
def _forged(name, kind, value, *rest):
    _record(name, kind, value, *rest)
    if name in FORGED:
        problem = FORGED[name](get_ipython().user_ns["In"][-1])
        assert len(problem) <= 2000
        display({MIME_TYPE: {"version": 1, "name": name, "kind": kind, "params": {}, "line": 1,
                             "problem": problem, "format": "json", "data": None}}, raw=True)
check._run = _forged
"""
# row_max raises on the hidden inputs (the only ones with negative entries) an exception whose class
# name ends in a newline and "  hint", so that the recorded "ename: evalue" reads as a hint line
# carrying the test cell's source in base64.
RAISER = '''
import base64
def row_max(z):
    """z: (N, C) -> (N,)"""
    if bool((z < 0).any()):
        source = get_ipython().user_ns["In"][-1]
        raise type("Leak\\n  hint", (Exception,), {})(base64.b64encode(source.encode()).decode())
    return z.max(dim=-1).values
'''
# Under the two equal checks of equal_tests, after their honest records, values of the student's own
# carrying the running cell's source: reversed in one string, and in base64 cut in 16-character pieces.
QUOTER = """
import base64
from IPython.display import display
from autograder.checks.observation import MIME_TYPE
FORGED = {
    "row_max_dtype": lambda s: s[::-1],
    "row_max_sizes": lambda s: [base64.b64encode(s.encode()).decode()[i : i + 16] for i in range(0, 160, 16)],
}
_record = check._run
def _forged(name, kind, value, *rest):
    _record(name, kind, value, *rest)
    if name in FORGED:
        value = FORGED[name](get_ipython().user_ns["In"][-1])
        display({MIME_TYPE: {"version": 1, "name": name, "kind": kind, "params": {}, "line": 1,
                             "problem": None, "format": "json", "data": value}}, raw=True)
check._run = _forged
"""
# A third cell of equal checks, one public and one hidden (row_max on batches of one and two rows).
EQUAL_TESTS = grade_cell(
    "equal_tests",
    "check.equal('row_max_dtype', str(row_max(torch.ones(2, 3)).dtype))\n"
    "### BEGIN HIDDEN TESTS\n"
    "check.equal('row_max_sizes', [list(row_max(torch.ones(n, 3)).shape) for n in (1, 2)])\n"
    "### END HIDDEN TESTS",
)
# An honest wrong shape: the maxima kept as a column.
KEEPDIM = 'def row_max(z):\n    """z: (N, C) -> (N,)"""\n    return z.max(dim=-1, keepdim=True).values'
# The honest mistake: row_max computes its result and forgets to return it.
FORGETFUL = 'def row_max(z):\n    """z: (N, C) -> (N,)"""\n    z.max(dim=-1).values'


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = new_course(tmp_path_factory.mktemp("feedback-forgery-course"))
    nb = case_lab()
    nb.cells.append(EQUAL_TESTS)
    write_lab(course.root, LAB, nb)
    build_lab(course, LAB)
    students = [
        DemoStudent("forger", "forged problems carrying the hidden source", extra_cell=FORGER),
        DemoStudent("raiser", "an exception class whose name fakes a hint line", replace={"row_max": RAISER}),
        DemoStudent("forgetful", "row_max without its return", replace={"row_max": FORGETFUL}),
        DemoStudent("quoter", "values of its own carrying the hidden source", extra_cell=QUOTER),
        DemoStudent("keepdim", "row maxima kept as a column", replace={"row_max": KEEPDIM}),
    ]
    for student in students:
        make_submission(course, LAB, student)
    config = Config(course.config)
    config.Grading.cell_timeout = 20
    config.Grading.notebook_timeout = 60
    results = {r.student: r for r in grade_lab(Course(course.root, config), LAB, force=True, workers=2)}
    write_feedback(course, LAB, sorted(results))
    pages = {s: (course.feedback / s / LAB / f"{LAB}.html").read_text(encoding="utf-8") for s in results}
    return course, results, pages


def executed_test_cells(course: Course) -> dict[str, str]:
    """The test cells as the kernel ran them (hidden tests restored): what In[-1] held."""
    nb = sanitize(course, LAB, course.submitted / "forgetful" / LAB / f"{LAB}.ipynb")
    return {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("grade") and "BEGIN HIDDEN TESTS" in c.source
    }


def hidden_lines(sources: dict[str, str]) -> list[str]:
    lines = []
    for source in sources.values():
        inside = False
        for line in source.splitlines():
            if "HIDDEN TESTS" in line:
                inside = "BEGIN" in line
            elif inside and line.strip():
                lines.append(line.strip())
    assert len(lines) >= 4
    return lines


def checks_on_page(page: str) -> dict[str, tuple[str, str]]:
    """check name -> (PASS/FAIL, message), as the page's verdict tables show them."""
    rows = re.findall(
        r'<tr class="(?:pass|fail)"><td><code>(.*?)</code></td><td class="mark">(PASS|FAIL)</td>'
        r"<td>(?:<pre>(.*?)</pre>)?</td></tr>",
        page,
        re.S,
    )
    return {html.unescape(name): (mark, html.unescape(message)) for name, mark, message in rows}


def assert_carries_none_of(page: str, secrets: list[str]) -> None:
    """No 24-character stretch of any secret is on the page (nor the secret whole)."""
    for secret in secrets:
        assert len(secret) >= 24
        for start in range(0, len(secret) - 23, 8):
            assert secret[start : start + 24] not in page, (secret[start : start + 24], secret[:40])


def test_the_forgeries_reached_the_grading_run(graded):
    """Instructor-side result.json holds what the kernel sent: the attack is real, not a no-op."""
    course, results, _ = graded
    sources = executed_test_cells(course)
    softmax, row_max = sources["softmax_tests"], sources["row_max_tests"]
    forged = {c.name: c.message for cell in results["forger"].cells for c in cell.checks}
    assert reversed_text(row_max) in forged["row_max_wide"] and base64_text(row_max) in forged["row_max_wide"]
    assert f"\n  hint: {base64_text(softmax)}" in forged["softmax_rows"]
    assert f"a ragged list ({one_line_reversed(softmax)})" in forged["row_max_rows"]
    raised = {c.name: c.message for cell in results["raiser"].cells for c in cell.checks}
    # (the exception's text is cut at MAX_RAISED_CHARS: its first 297 characters still make a hint line)
    assert f"raised Leak\n  hint: {base64_text(row_max)[:297]}..." in raised["row_max_wide"]
    assert f"raised Leak\n  hint: {base64_text(softmax)[:297]}..." in raised["row_max_rows"]


def test_feedback_carries_no_encoded_hidden_source_and_the_checks_still_fail(graded):
    course, results, pages = graded
    sources = executed_test_cells(course)
    secrets = [encode(s) for s in sources.values() for encode in (reversed_text, base64_text, one_line_reversed)]
    for student in ("forger", "raiser"):
        page = pages[student]
        assert_carries_none_of(page, secrets)
        for line in hidden_lines(sources):
            assert line not in page and html.escape(line) not in page
    forger = checks_on_page(pages["forger"])
    refused = "could not be recorded: a value the checks could not record"
    assert forger["row_max_wide"] == ("FAIL", f"check 'row_max_wide' failed: {refused}\n  hint: {ROW_MAX_HINT}")
    # The honest-looking first line does not vouch for the rest: one hint line, the check's own.
    assert forger["softmax_rows"] == ("FAIL", f"check 'softmax_rows' failed: {refused}\n  hint: {SOFTMAX_HINT}")
    assert forger["row_max_rows"] == (
        "FAIL",
        f"check 'row_max_rows' failed: could not be recorded: the value was a ragged list\n  hint: {ROW_MAX_HINT}",
    )
    raiser = checks_on_page(pages["raiser"])
    for name in ("row_max_wide", "row_max_rows"):
        assert raiser[name] == (
            "FAIL",
            f"check {name!r} failed: it was never recorded: the test cell raised an exception\n  hint: {ROW_MAX_HINT}",
        )
    forged_cells = {c.grade_id: c.score for c in results["forger"].cells}
    assert forged_cells["softmax_tests"] == forged_cells["row_max_tests"] == 0.0  # every forged check failed
    assert forged_cells["equal_tests"] == 1.0  # (the forger's row_max is the solution's)
    assert results["raiser"].score == 2.0 and raiser["softmax_rows"][0] == "PASS"  # its softmax is right


def test_a_forgotten_return_still_says_nonetype_with_the_hint(graded):
    _, results, pages = graded
    forgetful = checks_on_page(pages["forgetful"])
    nothing = "could not be recorded: the value was a builtins.NoneType, not a tensor or number"
    assert forgetful["row_max_wide"] == ("FAIL", f"check 'row_max_wide' failed: {nothing}\n  hint: {ROW_MAX_HINT}")
    assert forgetful["row_max_rows"] == ("FAIL", f"check 'row_max_rows' failed: {nothing}\n  hint: {ROW_MAX_HINT}")
    assert forgetful["row_max_shape"] == (
        "FAIL",
        "check 'row_max_shape' failed: could not be recorded: the value was a NoneType, which has no .shape",
    )
    assert forgetful["softmax_rows"][0] == "PASS"  # the softmax is right: only row_max's checks fail
    messages = {c.name: c.message for cell in results["forgetful"].cells for c in cell.checks}
    shown_whole = [name for name in forgetful if not name.startswith(("row_max_dtype", "row_max_sizes"))]
    assert {name: messages[name] for name in shown_whole} == {name: forgetful[name][1] for name in shown_whole}
    # The equal cell raised on None.dtype: the page names the exception's type, not the kernel's text.
    assert forgetful["row_max_sizes"] == (
        "FAIL",
        "check 'row_max_sizes' failed: it was never recorded: the test cell raised AttributeError",
    )


def test_values_chosen_to_carry_the_hidden_source_are_named_by_type_and_size(graded):
    course, results, pages = graded
    sources = executed_test_cells(course)
    equal_source = sources["equal_tests"]
    recorded = {c.name: c for cell in results["quoter"].cells for c in cell.checks}
    assert not recorded["row_max_dtype"].passed and not recorded["row_max_sizes"].passed  # the forgery counted
    secrets = [encode(s) for s in sources.values() for encode in (reversed_text, base64_text, one_line_reversed)]
    assert_carries_none_of(pages["quoter"], secrets)
    for piece in (base64_text(equal_source)[i : i + 16] for i in range(0, 160, 16)):
        assert piece not in pages["quoter"]
    quoter = checks_on_page(pages["quoter"])
    assert quoter["row_max_dtype"] == (
        "FAIL",
        f"check 'row_max_dtype' failed: expected 'torch.float32', got a str of {len(equal_source)} characters",
    )
    assert quoter["row_max_sizes"] == (
        "FAIL",
        "check 'row_max_sizes' failed: got a list of 10 items, which is not the expected value",
    )
    keepdim = checks_on_page(pages["keepdim"])
    assert keepdim["row_max_sizes"] == (
        "FAIL",
        "check 'row_max_sizes' failed: got [[1, 1], [2, 1]], which is not the expected value",
    )
    assert keepdim["row_max_dtype"][0] == "PASS"

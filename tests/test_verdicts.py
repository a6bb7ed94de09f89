"""grading/verdicts.py, case by case: what a test cell scores for what its kernel recorded.

Observations are made as a kernel records them (observation.py's to_array / to_json_value and
encode, in a display output under MIME_TYPE), notebooks with nbformat, references as the build
writes them (references.Reference). One test cell, `f_tests`, worth 2 points, unless a case
says otherwise; every case pins the cell's score and each check's verdict and message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from autograder.checks.observation import (
    FORMAT_VERSION,
    MIME_TYPE,
    Observation,
    Unrecordable,
    encode,
    to_array,
    to_json_value,
)
from autograder.grading.verdicts import judge_notebook
from autograder.references import Reference

NOTEBOOK = "lab"
CELL = "f_tests"
POINTS = 2.0
SOLUTION = "def f(x):\n    return x.sum()"
BY_AUTOGRAD = "def f(x):\n    x.requires_grad_(True)\n    x.sum().backward()\n    return x.grad"
TEST_CELL_INDEX = 2  # markdown, solution, test cell


def recorded(name: str, kind: str, value, **params) -> Observation:
    """An observation as Checker records it in a kernel (value converted, weight in params)."""
    params.setdefault("weight", 1.0)
    problem = None
    try:
        if kind == "shape":
            value = {"shape": [int(s) for s in value.shape], "dtype": str(value.dtype)}
        elif kind == "equal":
            value = to_json_value(value)
        elif kind != "by_hand":
            value = to_array(value)
    except Unrecordable as err:
        value, problem = None, str(err)
    return Observation(name, kind, value, params, line=1, problem=problem)


def reference(
    name: str, kind: str, value, *, hidden: bool = True, grade_id: str = CELL, notebook: str = NOTEBOOK, **params
) -> Reference:
    """A check as the build recorded it from the solution."""
    return Reference(recorded(name, kind, value, **params), notebook, grade_id, TEST_CELL_INDEX, hidden)


def display(observation: Observation) -> dict:
    """The display output a kernel sends for one check call."""
    return raw(encode(observation))


def raw(payload) -> dict:
    """A display output under the observation MIME type with any payload (what a kernel may send)."""
    return new_output("display_data", data={MIME_TYPE: payload, "text/plain": "<observation>"})


X = np.array([1.0, 2.0, 3.0], dtype=np.float32)
HIDDEN_X = np.array([[0.5, -1.0], [2.0, 4.0]], dtype=np.float32)


@dataclass
class Case:
    """One test cell's references, what its kernel recorded, and the verdict expected."""

    refs: list[Reference]
    outputs: list[dict]
    score: float
    verdicts: dict[str, tuple[bool, tuple[str, ...]]]  # check → (passed, fragments of its message)
    absent: dict[str, tuple[str, ...]] = field(default_factory=dict)  # check → text its message must not hold
    sources: list[str] = field(default_factory=lambda: [SOLUTION])
    trusted: frozenset[int] = frozenset()
    cell_errors: dict[int, str] = field(default_factory=dict)
    stopped: str | None = None
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    without_test_cell: bool = False
    elsewhere: list[dict] = field(default_factory=list)  # outputs of the (student's) solution cell
    max_score: float = POINTS


def judge(case: Case):
    solution = new_code_cell(
        case.sources[0],
        metadata={
            "nbgrader": {
                "grade": False,
                "solution": True,
                "locked": False,
                "grade_id": "f_solution",
                "schema_version": 3,
            }
        },
        outputs=case.elsewhere,
    )
    test = new_code_cell(
        "check.close('f_small', f(x))",
        outputs=case.outputs,
        metadata={
            "nbgrader": {
                "grade": True,
                "solution": False,
                "locked": True,
                "grade_id": CELL,
                "points": POINTS,
                "schema_version": 3,
            }
        },
    )
    cells = [new_markdown_cell("# Lab"), solution] + ([] if case.without_test_cell else [test])
    return judge_notebook(
        NOTEBOOK,
        new_notebook(cells=cells),
        {r.name: r for r in case.refs},
        {CELL: case.max_score},
        sources=case.sources,
        cell_errors=case.cell_errors,
        stopped=case.stopped,
        labels_for=case.labels.__getitem__,
        trusted_sources=case.trusted,
    )


PUBLIC = reference("f_small", "close", X.sum(), hidden=False)
HIDDEN = reference("f_matrix", "close", HIDDEN_X.sum())
RIGHT = [display(recorded("f_small", "close", X.sum())), display(recorded("f_matrix", "close", HIDDEN_X.sum()))]
LABELS = {"xor_test": np.array([0, 1, 1, 0])}
NEVER = "it was never recorded"
CASE_FAILED = Observation("f_matrix", "case", None, line=1, problem="the test cell raised ValueError: bad shape")


def accuracy_case(predictions, score, passed, *fragments, **bounds) -> Case:
    return Case(
        [reference("xor_accuracy", "accuracy", np.array([0, 1, 1, 0]), dataset="xor_test", **bounds)],
        [display(recorded("xor_accuracy", "accuracy", predictions, dataset="xor_test", **bounds))],
        score,
        {"xor_accuracy": (passed, fragments)},
        labels=LABELS,
    )


def by_hand_case(sources, score, verdicts, *, recorded_value=None, trusted=frozenset()) -> Case:
    """A by-hand check (weight 0, as Checker records it) beside a hidden value check that passes."""
    value = recorded_value or {"function": "f", "found": True, "violations": []}  # what the kernel claims
    return Case(
        [
            reference(
                "f_by_hand",
                "by_hand",
                {"function": "f", "found": True, "violations": []},
                hidden=False,
                function="f",
                weight=0.0,
            ),
            HIDDEN,
        ],
        [display(recorded("f_by_hand", "by_hand", value, function="f", weight=0.0)), RIGHT[1]],
        score,
        verdicts,
        sources=sources,
        trusted=trusted,
    )


CASES = [
    # ------------------------------------------------------------------ points come from hidden checks
    pytest.param(
        Case(
            [PUBLIC, HIDDEN],
            RIGHT,
            2.0,
            {"f_small": (True, ("check 'f_small' passed",)), "f_matrix": (True, ("check 'f_matrix' passed",))},
        ),
        id="all-pass-full-points",
    ),
    pytest.param(
        Case(
            [PUBLIC, HIDDEN],
            [display(recorded("f_small", "close", np.float32(6.5))), RIGHT[1]],
            2.0,
            {"f_small": (False, ("check 'f_small' failed", "expected 6, got 6.5")), "f_matrix": (True, ())},
        ),
        id="a-failed-public-check-costs-nothing",
    ),
    pytest.param(
        Case(
            [PUBLIC, HIDDEN],
            [RIGHT[0], display(recorded("f_matrix", "close", np.float32(5.0)))],
            0.0,
            {
                "f_small": (True, ()),
                "f_matrix": (False, ("1 of 1 values differ from the reference (rtol=1e-05, atol=1e-08)",)),
            },
            absent={"f_matrix": ("expected", "5.5")},
        ),
        id="a-copied-public-value-earns-nothing-and-hidden-values-stay-hidden",
    ),
    pytest.param(
        Case([PUBLIC], [RIGHT[0]], 0.0, {"f_small": (True, ())}), id="a-cell-without-hidden-checks-scores-zero"
    ),
    pytest.param(
        Case(
            [reference("h1", "close", 1.0, weight=1.0), reference("h3", "close", 3.0, weight=3.0)],
            [display(recorded("h1", "close", 0.0, weight=1.0)), display(recorded("h3", "close", 3.0))],
            1.5,
            {"h1": (False, ()), "h3": (True, ())},
        ),
        id="hidden-points-shared-by-weight",
    ),
    pytest.param(
        Case([HIDDEN], [RIGHT[1]], 0.0, {"f_matrix": (True, ())}, max_score=0.0),
        id="no-points-in-the-gradebook-no-score",
    ),
    pytest.param(
        Case(
            [PUBLIC, HIDDEN, reference("other", "close", 1.0, notebook="another")],
            RIGHT,
            2.0,
            {"f_small": (True, ()), "f_matrix": (True, ())},
        ),
        id="another-notebooks-references-are-not-judged-here",
    ),
    pytest.param(
        Case([HIDDEN], [display(recorded("f_matrix", "close", 0.0)), RIGHT[1]], 2.0, {"f_matrix": (True, ())}),
        id="the-last-observation-of-a-name-counts",
    ),
    # ------------------------------------------------------------------ the cell decides, the build's tolerances
    pytest.param(
        Case([HIDDEN], [], 0.0, {"f_matrix": (False, ("the check call did not run",))}, elsewhere=[RIGHT[1]]),
        id="an-observation-outside-its-test-cell-is-ignored",
    ),
    pytest.param(
        Case(
            [HIDDEN],
            [display(recorded("f_matrix", "close", HIDDEN_X.sum() + 1e-3, rtol=1.0))],
            0.0,
            {"f_matrix": (False, ("rtol=1e-05",))},
        ),
        id="the-kernels-tolerance-is-ignored",
    ),
    pytest.param(
        Case(
            [reference("n", "close", np.float32(2.0))],
            [display(recorded("n", "close", np.float64(2.0)))],
            0.0,
            {"n": (False, ("expected dtype float32, got float64", "float64 crept in"))},
        ),
        id="dtype-with-its-likely-cause",
    ),
    pytest.param(
        Case(
            [reference("n", "close", X)],
            [display(recorded("n", "equal", [1, 2, 3]))],
            0.0,
            {"n": (False, ("was recorded as a 'equal' check, expected 'close'",))},
        ),
        id="a-different-kind-fails",
    ),
    pytest.param(
        Case(
            [reference("s", "shape", X, shape=[3])],
            [display(recorded("s", "shape", HIDDEN_X, shape=[3]))],
            0.0,
            {"s": (False, ("expected shape (3,), got (2, 2)",))},
        ),
        id="shape",
    ),
    pytest.param(
        Case(
            [reference("e", "equal", "abc")],
            [display(recorded("e", "equal", "abd"))],
            0.0,
            {"e": (False, ("got 'abd', which is not the expected value",))},
            absent={"e": ("abc",)},
        ),
        id="equal-hidden-does-not-reveal",
    ),
    pytest.param(
        Case(
            [reference("loss", "at_most", 0.5, limit=1.9)],
            [display(recorded("loss", "at_most", 2.5))],
            0.0,
            {"loss": (False, ("got 2.5, expected at most 1.9",))},
        ),
        id="at-most",
    ),
    pytest.param(
        Case(
            [reference("g", "grad", X.astype(np.float64))],
            [display(recorded("g", "grad", X.astype(np.float64) * -1))],
            0.0,
            {"g": (False, ("a wrong formula", "the sign is flipped"))},
        ),
        id="grad-sign-flipped",
    ),
    # ------------------------------------------------------------------ never recorded: the reason
    pytest.param(
        Case(
            [HIDDEN],
            [],
            0.0,
            {
                "f_matrix": (
                    False,
                    (f"check 'f_matrix' failed: {NEVER}: the test cell raised NameError: name 'f' is not defined",),
                )
            },
            cell_errors={TEST_CELL_INDEX: "NameError: name 'f' is not defined"},
        ),
        id="missing-the-test-cell-raised",
    ),
    pytest.param(
        Case(
            [HIDDEN],
            [],
            0.0,
            {"f_matrix": (False, (f"{NEVER}: the notebook stopped early (timeout: cell 2)",))},
            stopped="timeout: cell 2",
        ),
        id="missing-the-notebook-stopped",
    ),
    pytest.param(
        Case([HIDDEN], [], 0.0, {"f_matrix": (False, (f"{NEVER}: the check call did not run",))}),
        id="missing-the-call-did-not-run",
    ),
    pytest.param(
        Case(
            [HIDDEN],
            [],
            0.0,
            {"f_matrix": (False, (f"{NEVER}: its test cell is missing from the notebook",))},
            without_test_cell=True,
        ),
        id="missing-the-test-cell",
    ),
    pytest.param(
        Case(
            [HIDDEN],
            [raw({**encode(recorded("f_matrix", "close", 1.0)), "version": 99})],
            0.0,
            {"f_matrix": (False, (f"{NEVER}: an observation was malformed (unknown observation version 99)",))},
            cell_errors={},
            stopped="kernel died",
        ),
        id="missing-a-malformed-observation-before-a-stop",
    ),
    pytest.param(
        Case(
            [HIDDEN],
            [raw({**encode(recorded("f_matrix", "close", 1.0)), "version": 99})],
            0.0,
            {"f_matrix": (False, (f"{NEVER}: the test cell raised ZeroDivisionError",))},
            cell_errors={TEST_CELL_INDEX: "ZeroDivisionError"},
        ),
        id="missing-the-error-is-named-before-a-malformed-observation",
    ),
    pytest.param(
        Case(
            [reference("f_matrix", "close", HIDDEN_X.sum(), hint="x is (N, D): sum over both axes")],
            [],
            0.0,
            {
                "f_matrix": (
                    False,
                    (
                        f"check 'f_matrix' failed: {NEVER}: the test cell raised RuntimeError: "
                        "mat1 and mat2 shapes cannot be multiplied (2x2 and 3x1)"
                        "\n  hint: x is (N, D): sum over both axes",
                    ),
                )
            },
            cell_errors={
                TEST_CELL_INDEX: "RuntimeError: while adding\n\nmat1 and mat2 shapes cannot be multiplied (2x2 and 3x1)"
            },
        ),
        id="missing-the-test-cell-raised-shows-the-last-line-and-the-hint",
    ),
    pytest.param(
        Case(
            [HIDDEN],
            [],
            0.0,
            {"f_matrix": (False, (f"{NEVER}: the test cell raised ValueError: {'y' * 297}...",))},
            cell_errors={TEST_CELL_INDEX: "ValueError: " + "y" * 5000},
        ),
        id="missing-the-exception-text-is-bounded",
    ),
    pytest.param(
        Case(
            [reference("f_matrix", "close", HIDDEN_X.sum(), hint="the hint")],
            [],
            0.0,
            {"f_matrix": (False, (f"{NEVER}: the notebook stopped early (timeout: cell 2)\n  hint: the hint",))},
            stopped="timeout: cell 2",
        ),
        id="missing-the-notebook-stopped-shows-the-hint",
    ),
    # ------------------------------------------------------------------ check.case: a raising block fails its own check
    pytest.param(
        Case(
            [reference("f_matrix", "close", HIDDEN_X.sum(), hint="the hint"), reference("h2", "close", 1.0)],
            [display(CASE_FAILED), display(recorded("h2", "close", 1.0))],
            1.0,
            {
                "f_matrix": (
                    False,
                    ("check 'f_matrix' failed: the test cell raised ValueError: bad shape\n  hint: the hint",),
                ),
                "h2": (True, ()),
            },
        ),
        id="case-a-raising-block-costs-its-check-and-the-next-one-scores",
    ),
    pytest.param(
        Case([HIDDEN], [RIGHT[1], display(CASE_FAILED)], 0.0, {"f_matrix": (False, ("raised ValueError: bad shape",))}),
        id="case-a-failure-after-the-checks-own-value-fails-it",
    ),
    pytest.param(
        Case(
            [HIDDEN, reference("h2", "close", 1.0)],
            [display(CASE_FAILED)],
            0.0,
            {
                "f_matrix": (False, ("raised ValueError: bad shape",)),
                "h2": (
                    False,
                    (
                        f"{NEVER}: the check call did not run; in check.case('f_matrix'), "
                        "the test cell raised ValueError: bad shape",
                    ),
                ),
            },
        ),
        id="case-a-check-inside-a-raising-block-says-which-block-stopped",
    ),
    pytest.param(
        Case(
            [reference("xor_accuracy", "accuracy", np.array([0, 1, 1, 0]), dataset="xor_test", min_accuracy=0.7)],
            [display(Observation("xor_accuracy", "case", None, line=1, problem="the test cell raised KeyError: 'x'"))],
            0.0,
            {"xor_accuracy": (False, ("check 'xor_accuracy' failed: the test cell raised KeyError: 'x'",))},
        ),
        id="case-an-accuracy-check-needs-no-labels-to-fail",
    ),
    # ------------------------------------------------------------------ malformed observations fail their check alone
    pytest.param(
        Case(
            [PUBLIC, HIDDEN],
            [
                RIGHT[0],
                raw({"version": FORMAT_VERSION, "name": "f_matrix", "kind": "close", "format": "json", "data": [1, 2]}),
            ],
            0.0,
            {
                "f_small": (True, ()),
                "f_matrix": (
                    False,
                    (
                        "an observation was malformed (observation 'f_matrix': "
                        "a close check records a numeric array, not list)",
                    ),
                ),
            },
        ),
        id="malformed-json-for-an-array-kind",
    ),
    pytest.param(
        Case(
            [HIDDEN],
            [
                raw(
                    {
                        "version": FORMAT_VERSION,
                        "name": "f_matrix",
                        "kind": "close",
                        "format": "safetensors",
                        "data": "bm90IHNhZmV0ZW5zb3Jz",
                    }
                )
            ],
            0.0,
            {"f_matrix": (False, ("not a valid safetensors blob",))},
        ),
        id="malformed-safetensors",
    ),
    pytest.param(
        Case(
            [HIDDEN],
            [raw({"version": FORMAT_VERSION, "name": "f_matrix", "kind": "pickle", "format": "json", "data": None})],
            0.0,
            {"f_matrix": (False, ("observation 'f_matrix' has unknown kind 'pickle'",))},
        ),
        id="malformed-unknown-kind",
    ),
    pytest.param(
        Case(
            [HIDDEN, reference("h2", "close", 1.0)],
            [raw("not an object"), display(recorded("h2", "close", 1.0))],
            1.0,
            {"f_matrix": (False, ("an observation must be a JSON object, got str",)), "h2": (True, ())},
        ),
        id="malformed-fails-only-its-check",
    ),
    pytest.param(
        Case(
            [HIDDEN],
            [display(recorded("f_matrix", "close", "a string"))],
            0.0,
            {"f_matrix": (False, ("could not be recorded: the value was a builtins.str, not a tensor or number",))},
        ),
        id="unrecordable-value-named",
    ),
    # ------------------------------------------------------------------ accuracy on held-out labels
    pytest.param(
        accuracy_case(
            np.array([0, 1, 1, 1]),
            2.0,
            True,
            "accuracy 75.00% on 4 held-out examples (at least 70% needed)",
            min_accuracy=0.7,
        ),
        id="accuracy-passes",
    ),
    pytest.param(
        accuracy_case(
            np.array([0, 1, 1, 1]),
            0.0,
            False,
            "accuracy 75.00% on 4 held-out examples, at least 90% needed",
            min_accuracy=0.9,
        ),
        id="accuracy-too-low",
    ),
    pytest.param(
        accuracy_case(np.array([1, 0, 0, 1]), 0.0, False, "accuracy 0.00%", "near chance", min_accuracy=0.7),
        id="accuracy-near-chance-names-the-order",
    ),
    pytest.param(
        accuracy_case(
            np.array([0, 1, 0, 1]), 2.0, True, "on 4 held-out examples (at most 80% expected)", max_accuracy=0.8
        ),
        id="accuracy-a-model-that-must-fail",
    ),
    pytest.param(
        accuracy_case(np.array([0, 1, 1]), 0.0, False, "predictions of shape (3,) for 4 held-out examples"),
        id="accuracy-wrong-length",
    ),
    pytest.param(
        accuracy_case(
            np.array([0.0, 1.0, 1.0, 0.0], dtype=np.float32),
            0.0,
            False,
            "float32 predictions; expected integer class indices (use argmax)",
        ),
        id="accuracy-float-predictions",
    ),
    # ------------------------------------------------------------------ by hand: the file decides
    pytest.param(
        by_hand_case([SOLUTION], 2.0, {"f_by_hand": (True, ("check 'f_by_hand' passed",)), "f_matrix": (True, ())}),
        id="by-hand-clean",
    ),
    pytest.param(
        by_hand_case(
            [BY_AUTOGRAD],
            0.0,
            {
                "f_by_hand": (
                    False,
                    (
                        "f() must compute its result by hand, without autograd",
                        "f, line 2: turns on requires_grad",
                        "f, line 3: calls .backward()",
                    ),
                ),
                "f_matrix": (True, ()),
            },
        ),
        id="by-hand-violation-zeroes-the-cell-whatever-the-kernel-claimed",
    ),
    pytest.param(
        by_hand_case(
            ["def g(x):\n    return x"],
            0.0,
            {"f_by_hand": (False, ("no definition of f() was found in the notebook",)), "f_matrix": (True, ())},
        ),
        id="by-hand-function-not-found",
    ),
    pytest.param(
        by_hand_case(
            [SOLUTION],
            2.0,
            {"f_by_hand": (True, ()), "f_matrix": (True, ())},
            recorded_value={"function": "f", "found": False, "violations": ["made up"]},
        ),
        id="by-hand-the-kernels-claim-is-not-read",
    ),
    pytest.param(
        by_hand_case(
            [SOLUTION, 'y = eval("1")'],
            0.0,
            {"f_by_hand": (False, ("cell 2, line 1: runs code from a string (eval)",)), "f_matrix": (True, ())},
        ),
        id="by-hand-notebook-wide-rule-in-a-student-cell",
    ),
    pytest.param(
        by_hand_case(
            [SOLUTION, 'y = eval("1")'], 2.0, {"f_by_hand": (True, ()), "f_matrix": (True, ())}, trusted=frozenset({1})
        ),
        id="by-hand-an-instructor-cell-is-exempt",
    ),
    pytest.param(
        Case(
            [
                reference(
                    "f_by_hand",
                    "by_hand",
                    {"function": "f", "found": True, "violations": []},
                    hidden=False,
                    function="f",
                    weight=0.0,
                ),
                HIDDEN,
            ],
            [RIGHT[1]],
            0.0,
            {"f_by_hand": (False, (f"{NEVER}: the check call did not run",)), "f_matrix": (True, ())},
        ),
        id="by-hand-never-recorded-zeroes-the-cell",
    ),
]


@pytest.mark.parametrize("case", CASES)
def test_a_cell_scores_what_its_checks_earn(case: Case):
    [cell] = judge(case)
    assert (cell.notebook, cell.grade_id, cell.max_score) == (NOTEBOOK, CELL, case.max_score)
    assert cell.score == case.score
    own = [r for r in case.refs if r.notebook == NOTEBOOK]
    assert [check.name for check in cell.checks] == [r.name for r in own]  # in the build's order
    assert {check.name: (check.weight, check.hidden) for check in cell.checks} == {
        r.name: (r.weight, r.hidden) for r in own
    }  # the build's, not the kernel's
    verdicts = {check.name: check for check in cell.checks}
    assert {name: verdicts[name].passed for name in case.verdicts} == {
        name: passed for name, (passed, _) in case.verdicts.items()
    }, {n: v.message for n, v in verdicts.items()}
    for name, (_, fragments) in case.verdicts.items():
        for fragment in fragments:
            assert fragment in verdicts[name].message, (fragment, verdicts[name].message)
    for name, secrets in case.absent.items():
        for secret in secrets:
            assert secret not in verdicts[name].message.split(":", 1)[1], verdicts[name].message


def test_every_test_cell_with_references_gets_a_score_in_the_builds_order():
    refs = [
        reference("b1", "close", 1.0, grade_id="b_tests"),
        reference("a1", "close", 1.0, grade_id="a_tests"),
        reference("b2", "close", 2.0, grade_id="b_tests"),
    ]
    cells = [
        new_code_cell(
            "",
            outputs=[display(recorded(name, "close", value))],
            metadata={
                "nbgrader": {
                    "grade": True,
                    "solution": False,
                    "locked": True,
                    "grade_id": gid,
                    "points": 1,
                    "schema_version": 3,
                }
            },
        )
        for gid, name, value in (("a_tests", "a1", 1.0), ("b_tests", "b1", 1.0), ("b_tests", "b2", 0.0))
    ]
    cells[1].outputs += cells.pop(2).outputs  # b1 and b2 recorded in the one b_tests cell
    scores = judge_notebook(
        NOTEBOOK,
        new_notebook(cells=cells),
        {r.name: r for r in refs},
        {"a_tests": 1, "b_tests": 4},
        sources=[],
        cell_errors={},
        stopped=None,
    )
    assert [(s.grade_id, s.score, s.max_score, [c.passed for c in s.checks]) for s in scores] == [
        ("b_tests", 2.0, 4.0, [True, False]),
        ("a_tests", 1.0, 1.0, [True]),
    ]


def test_a_cell_with_metadata_that_is_not_an_object_is_not_found():
    """A tampered cell (nbgrader metadata replaced by a string) is no test cell: its checks were never recorded."""
    cell = new_code_cell("", outputs=RIGHT, metadata={"nbgrader": "f_tests"})
    [score] = judge_notebook(
        NOTEBOOK,
        new_notebook(cells=[cell]),
        {HIDDEN.name: HIDDEN},
        {CELL: POINTS},
        sources=[],
        cell_errors={},
        stopped=None,
    )
    assert (score.score, score.checks[0].passed) == (0.0, False)
    assert "its test cell is missing from the notebook" in score.checks[0].message


def test_missing_held_out_labels_stop_the_judging_with_the_data_set_named():
    """Labels are the course's, not the student's: their absence is an error of the grader, not a 0."""
    case = accuracy_case(np.array([0, 1, 1, 0]), 0.0, False)
    case.labels = {}
    with pytest.raises(RuntimeError, match=r"labels for 'xor_test' are not available to the grader: 'xor_test'"):
        judge(case)


def test_accuracy_without_predictions_needs_no_labels():
    case = accuracy_case(np.array([0, 1, 1, 0]), 0.0, False)
    case.outputs, case.labels = [], {}
    [cell] = judge(case)
    assert cell.checks[0].message == "check 'xor_accuracy' failed: it was never recorded: the check call did not run"

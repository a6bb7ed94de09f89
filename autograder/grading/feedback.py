"""`autograder feedback LAB`: per-student HTML that teaches without leaking hidden tests.

Built here, on the coordinator, from two things: the cells of the autograded notebook and the
verdicts in result.json. The page returns verdicts, never what the grading run printed: no
output of any cell is shown (student code running after a hidden test can read it from the
kernel's history or frames and print it), only

- a summary: lab, notebook, student, status (a failed run's reason), the due date and any late
  penalty (the gradebook's, deadlines.py), score, a table of the test cells;
- the cells' sources: code highlighted by pygments, markdown rendered by markup.py (mistune, raw HTML
  escaped, links kept only for http(s)/mailto/#, images only as data: PNG/JPEG/GIF/WebP (or a
  cell attachment of those types), `$...$`/`$$...$$` converted to MathML here (latex2mathml,
  then re-serialised through an element and attribute allow-list: no script needed to read it);
- each written answer (a manually graded answer cell) as plain text, never as markup (it is the
  student's), with the TA's score and comment from the gradebook (`autograder review`, formgrader),
  or that it awaits a TA;
- each test cell with its hidden-test regions removed (nbgrader's ClearHiddenTests) and, below
  it, its points and every check's name, PASS/FAIL and message. What a message quotes of the
  kernel is reduced to what the grader can vouch for, since student code under grading writes it
  and can read the hidden cells (`In`, frames): an exception raised in a test cell is named by its
  built-in type only (`raise ValueError(In[-1])`); the reason a value could not be recorded (an
  observation's `problem`, any text a forged one carries) is kept only where it is one of the
  checks' own templates filled from a closed vocabulary ("a builtins.NoneType, not a tensor or
  number": a forgotten return), else replaced by a fixed sentence; a malformed observation's
  reason and a check.case block's name and text likewise. The check's hint is recognised as the
  references' own, so a forged line cannot pose as one. Any hidden-test line found verbatim in a
  message is cut out as a second net.

Everything from the notebook or the result is escaped, and each page carries a strict
Content-Security-Policy as its first <head> element (no script at all, images only data:), so a
mistake in escaping still runs nothing. tests/test_feedback_browser.py opens every page of an
attacked class in Chromium.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import re
import types
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import nbformat
import numpy as np
from nbgrader.preprocessors import ClearHiddenTests
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from ..atomic_file import write_atomically
from ..cells import is_test_cell, nbgrader_meta
from ..checks.observation import MAX_JSON_CHARS, NUMERIC_DTYPES, RAISED_PREFIX
from ..course import Course
from ..references import load_references
from ..rubrics import is_manual_answer_cell
from .deadlines import Lateness, lateness_of_lab
from .exports.scores import LabScore, read_lab_scores
from .markup import attr, esc, render_markdown
from .results import CellScore, Result, load_result, result_path
from .review import ManualGrade, manual_grades

# No script of any kind, nothing fetched: inline styles, and images only from data: URIs.
CSP = (
    "default-src 'none'; script-src 'none'; object-src 'none'; style-src 'unsafe-inline'; "
    "img-src data:; font-src 'none'; connect-src 'none'; media-src 'none'; frame-src 'none'; "
    "worker-src 'none'; manifest-src 'none'; base-uri 'none'; form-action 'none'"
)
# A test cell that raised is named by its exception's type alone: the exception's text is written by
# student code under grading (it can carry the kernel's input history), and so is a class's name.
SHOWN_EXCEPTIONS = {
    name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, BaseException)
} | {"OutOfMemoryError"}
# The type names a problem may show: Python's own (NoneType, function, generator, dict_keys...). A name
# outside them is the student's to write (a class of their own, a __module__ or __qualname__ set by hand).
_SAMPLES: tuple[object, ...] = ({}.keys(), {}.values(), {}.items(), iter([]), iter(()), iter(range(0)), iter({}))
BUILTIN_TYPES = frozenset(
    t.__qualname__
    for t in [*vars(builtins).values(), *vars(types).values(), *map(type, _SAMPLES)]
    if isinstance(t, type) and t.__module__ == "builtins"
)
# What compare and verdicts say where they quote the kernel, each up to the check's hint (see _vouched).
NOT_RECORDED = "could not be recorded: the value was "
REFUSED_PROBLEM = "could not be recorded: a value the checks could not record"
CASE = "in check.case("
MALFORMED = ("an observation was malformed (", "its observation was malformed (")
# An observation's problem, as checks.observation, checks.checker and compare.scored_accuracy write it:
# a pattern of the whole (one line) and what of it is shown, given its groups (None: not vouched for).
_TYPE = r"([\w-]{1,100})"
_SHAPE = r"\((?:\d{1,9}(?:, \d{1,9}){0,7},?)?\)(?: \(a scalar\))?"
_PROBLEMS: list[tuple[re.Pattern, Callable[[re.Match], str | None]]] = [
    (re.compile(r"a complex tensor \(only real values are checked\)"), lambda m: m[0]),
    (
        re.compile(r"a (\S{1,400}), not a tensor or number"),
        lambda m: m[0]
        if m[1].removeprefix("builtins.") in BUILTIN_TYPES and m[1].startswith("builtins.")
        else "not a tensor or number",
    ),
    (
        re.compile(r"a ragged (\w{1,100}) \(.*\)"),
        lambda m: f"a ragged {m[1] if m[1] in ('list', 'tuple') else 'sequence'}",
    ),
    (re.compile(r"an array of dtype (\S{1,40}), not a numeric dtype"), lambda m: m[0] if _numpy_dtype(m[1]) else None),
    (
        re.compile(r"plain data of (\d{1,9}) characters \(limit (\d{1,9})\)"),
        lambda m: m[0] if int(m[2]) == MAX_JSON_CHARS < int(m[1]) else None,
    ),
    (
        re.compile(rf"a {_TYPE} that is neither a tensor nor plain data"),
        lambda m: m[0] if m[1] in BUILTIN_TYPES else "neither a tensor nor plain data",
    ),
    (
        re.compile(rf"a {_TYPE}, which has no \.shape"),
        lambda m: m[0] if m[1] in BUILTIN_TYPES else "something with no .shape",
    ),
    (re.compile(rf"a {_TYPE}, not a function"), lambda m: m[0] if m[1] in BUILTIN_TYPES else "not a function"),
    (re.compile(r"nothing \(None\), not class indices"), lambda m: m[0]),
    (
        re.compile(
            rf"predictions of shape {_SHAPE} for (\d{{1,9}}) held-out examples; "
            r"expected \(\1,\): one class index per example, in the data set's order"
        ),
        lambda m: m[0],
    ),
    (
        re.compile(r"(\w{1,20}) predictions; expected integer class indices \(use argmax\)"),
        lambda m: m[0] if m[1] in NUMERIC_DTYPES else None,
    ),
]
COMPACT_CHARS = 20_000  # of each cell's source, on a page that would be over the size cap in full

log = logging.getLogger(__name__)


def write_feedback(
    course: Course, lab: str, students: list[str], on_problem: Callable[[str, str], None] | None = None
) -> list[Path]:
    """Write feedback/<student>/<lab>/<notebook>.html for every graded student; returns the pages.

    Each page stands alone: a student whose result or autograded notebook cannot be read gets
    on_problem(student, what went wrong) (default: a logged warning) and everyone else a page.
    A notebook that cannot be read still gets a page with its verdicts, saying so. Pages are
    written atomically (a killed run leaves whole pages or none) and at most
    c.Grading.max_feedback_mib each."""
    report = on_problem or (lambda student, problem: log.warning("feedback for %s: %s", student, problem))
    cap = int(course.grading.max_feedback_mib * 2**20)
    hints = _check_hints(course, lab)
    try:
        lateness = lateness_of_lab(course, lab)
    except Exception as err:  # an unreadable gradebook: the pages still come, without the deadline
        log.warning("feedback for %s: due dates not shown (%s: %s)", lab, type(err).__name__, str(err)[:200])
        lateness = {}
    try:
        recorded = read_lab_scores(course, lab)
    except Exception as err:  # an unreadable gradebook: the pages show the autograder's scores
        log.warning("feedback for %s: scores from result.json only (%s: %s)", lab, type(err).__name__, str(err)[:200])
        recorded = {}
    written = []
    for student in students:
        try:
            result = load_result(course.autograded, student, lab)
            if result is None:
                if os.path.lexists(result_path(course.autograded, student, lab)):
                    report(student, "no page: its result.json is damaged; `autograder grade --force` grades it again")
                continue
            notebooks = sorted(
                {c.notebook for c in result.cells}
                or _submitted_notebooks(course, student, lab)
                or {path.stem for path in course.source_notebooks(lab)}
            )  # a failed run too
            result = with_gradebook_scores(result, recorded.get(student))
        except Exception as err:  # a damaged folder of one student
            report(student, f"no page: the result cannot be read ({type(err).__name__}: {str(err)[:200]})")
            continue
        for notebook in notebooks:
            try:
                page, problem = _write_one(course, result, notebook, cap, hints, lateness.get(student))
                written.append(page)
                if problem:
                    report(student, f"{notebook}: {problem}")
            except Exception as err:  # a bug of ours: this page only, said with what to report
                log.exception("feedback for %s/%s/%s", student, lab, notebook)
                report(student, f"{notebook}: no page (internal error: {type(err).__name__}: {str(err)[:200]})")
    return written


def with_gradebook_scores(result: Result, recorded: LabScore | None) -> Result:
    """The result with the gradebook's word on its scores: a TA's manual score (formgrader, `autograder
    review`) over the autograder's on each cell it was given for, and the gradebook's total. A failed
    run, or one the gradebook does not hold, keeps result.json's."""
    if recorded is None or result.status != "graded" or recorded.score is None:
        return result
    by_ta = {(g.notebook, g.grade_id): g.score for g in recorded.cells if g.by_ta and g.score is not None}
    cells = [replace(c, score=by_ta.get((c.notebook, c.grade_id), c.score)) for c in result.cells]
    return replace(result, score=recorded.score, max_score=recorded.max_score, cells=cells)


def _submitted_notebooks(course: Course, student: str, lab: str) -> set[str]:
    return {p.stem for p in (course.autograded / student / lab).glob("*.ipynb")}


def _write_one(
    course: Course, result: Result, notebook: str, cap: int, hints: dict[str, str] | None, late: Lateness | None = None
) -> tuple[Path, str | None]:
    """Write one page; returns it and a problem worth telling the TA (or None). hints: see _redacted."""
    nb, problem = _read_autograded(course.autograded / result.student / result.lab / f"{notebook}.ipynb")
    clear = ClearHiddenTests(config=course.config)
    hidden = _hidden_lines(nb, clear)
    cells = {c.grade_id: _redacted(c, hidden, hints) for c in result.cells if c.notebook == notebook}
    written, unread = _written_answers(course, result, notebook)
    problem = f"{problem}; {unread}" if problem and unread else problem or unread
    page = ""
    for detail in ("full", "compact", "verdicts") if problem is None else ("unreadable",):  # the most that fits
        page = render_page(result, notebook, nb, cells, clear, detail=detail, late=late, written=written)
        if len(page.encode("utf-8", "replace")) <= cap:
            break
        shrunk = f"the page would be over {cap / 2**20:g} MiB (c.Grading.max_feedback_mib)"
        problem = f"{problem}; {shrunk}" if problem else shrunk
    target = course.feedback / result.student / result.lab / f"{notebook}.html"
    write_atomically(target, page.encode("utf-8", "replace"))
    return target, problem


def _read_autograded(path: Path):
    """The autograded notebook, or an empty one and why it could not be read."""
    if not path.is_file():
        return nbformat.v4.new_notebook(), None
    try:
        nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
        json.dumps(nb, ensure_ascii=False).encode("utf-8")  # a lone surrogate cannot be shown either
        return nb, None
    except Exception as err:  # nbformat and json raise many kinds for damaged files
        first = (str(err).splitlines() or [type(err).__name__])[0][:200]
        return nbformat.v4.new_notebook(), (
            f"the autograded notebook cannot be read ({first}): the page shows the "
            "verdicts only; `autograder grade --force` writes it again"
        )


def render_page(
    result: Result,
    notebook: str,
    nb,
    cells: dict[str, CellScore],
    clear: ClearHiddenTests,
    detail: str = "full",
    late: Lateness | None = None,
    written: dict[str, ManualGrade] | None = None,
) -> str:
    """The whole HTML page: summary, then every cell's source (test cells with their verdicts).

    detail: "full"; "compact" (no images, each cell's source cut at COMPACT_CHARS), for a page
    over the size cap; "verdicts" (the test cells' verdicts alone), or "unreadable" (the same, for
    an autograded notebook that could not be read)."""
    title = f"Feedback: {result.lab} / {notebook}"
    body = [_summary(result, notebook, cells, late), "<main>\n<h2>Your notebook</h2>"]
    notice = {
        "full": "",
        "compact": "Long cells are cut and images left out to keep this page small.",
        "verdicts": "Only the verdicts are shown: your notebook is too large for this page.",
        "unreadable": "Your notebook could not be shown here: only the verdicts are.",
    }[detail]
    if notice:
        body.append(f'<p class="notice">{esc(notice)}</p>')
    if detail in ("verdicts", "unreadable"):
        body += [
            f'<section class="cell test" id="{_anchor(grade_id)}">\n<p class="label">test cell '
            f"<code>{esc(grade_id)}</code></p>\n{_verdict(score)}\n</section>"
            for grade_id, score in cells.items()
        ]
    else:
        for index, cell in enumerate(nb.cells):
            body.append(_cell(cell, index, cells, clear, compact=detail == "compact", written=written))
    body.append("</main>")
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n'
        f'<meta http-equiv="Content-Security-Policy" content="{attr(CSP)}">\n'
        f'<meta charset="utf-8">\n<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="referrer" content="no-referrer">\n'
        f"<title>{esc(title)} ({esc(result.student)})</title>\n<style>\n{STYLE}{_pygments_css()}</style>\n"
        f"</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def _hidden_lines(nb, clear: ClearHiddenTests) -> list[str]:
    """The hidden-test lines of the notebook's test cells (restored by sanitize), longest first."""
    found = set()
    for cell in nb.cells:
        if is_test_cell(cell):
            inside = False
            for line in cell.get("source", "").splitlines():
                if clear.begin_test_delimeter in line:
                    inside = True
                elif clear.end_test_delimeter in line:
                    inside = False
                elif inside and len(line.strip()) >= 6:
                    found.add(line.strip())
    return sorted(found, key=len, reverse=True)


def _redacted(cell: CellScore, hidden: list[str], hints: dict[str, str] | None) -> CellScore:
    """A test cell's scores with every check message cleaned of what student code wrote (_vouched),
    and (a second net) any hidden-test line cut out. hints: each check's hint, from the references
    (None where they cannot be read: then a message that quotes the kernel loses its hint too)."""
    names = frozenset(c.name for c in cell.checks)

    def clean(name: str, message: str) -> str:
        message = _vouched(message or "", name, None if hints is None else hints.get(name), names)
        for line in hidden:
            message = message.replace(line, "[hidden test]")
        return message

    return replace(cell, checks=[replace(c, message=clean(c.name, c.message)) for c in cell.checks])


def _vouched(message: str, name: str, hint: str | None, names: frozenset[str]) -> str:
    """The message with what it quotes of the kernel reduced to what the grader can vouch for.

    Every message is "check 'name' failed: <detail>" and, where the check has a hint, "\\n  hint: <hint>"
    (compare._fail, verdicts._why_missing). The hint is the references' own, so it is cut off as that
    exact text: a problem may hold newlines (observation.decode allows them), and a forged "\\n  hint: "
    line is then part of the problem, not a hint. What follows the first phrase that introduces kernel
    text in the detail (the reason a value could not be recorded, an exception, a malformed observation,
    a check.case block) up to that hint is replaced by what _PROBLEMS, SHOWN_EXCEPTIONS and the cell's
    own check names vouch for, or by a fixed sentence; the grader's words before it and the hint stay."""
    suffix = f"\n  hint: {hint}" if hint else ""
    body = message[: len(message) - len(suffix)] if suffix and message.endswith(suffix) else message
    head = f"check {name!r} failed: "
    start = len(head) if body.startswith(head) else 0
    markers = [NOT_RECORDED, RAISED_PREFIX, CASE, *MALFORMED]
    found = sorted((at, marker) for marker in markers if (at := body.find(marker, start)) >= 0)
    if not found:
        return message
    at, marker = found[0]
    text = body[at + len(marker) :]
    if marker == NOT_RECORDED:
        problem = _vouched_problem(text)
        shown = REFUSED_PROBLEM if problem is None else NOT_RECORDED + problem
    elif marker == RAISED_PREFIX:
        shown = RAISED_PREFIX + _exception_name(text)
    elif marker == CASE:
        shown = _vouched_case(text, names)
    else:
        shown = marker.removesuffix(" (")
    return body[:at] + shown + message[len(body) :]


def _vouched_problem(problem: str) -> str | None:
    """What of an observation's problem is shown: one of the checks' own templates with values from a
    closed vocabulary (or its fixed part), or None. A newline anywhere fails every pattern."""
    for pattern, shown in _PROBLEMS:
        match = pattern.fullmatch(problem)
        if match:
            return shown(match)
    return None


def _vouched_case(text: str, names: frozenset[str]) -> str:
    """After "in check.case(": the block's name (shown when it is a check of this cell) and, as a case
    records only an exception, the exception's type."""
    split = text.find("), " + RAISED_PREFIX)
    if split < 0:
        return f"in a check.case block, {RAISED_PREFIX}an exception"
    exception = _exception_name(text[split + 3 + len(RAISED_PREFIX) :])
    label = text[:split]
    where = f"in check.case({label})" if any(repr(n) == label for n in names) else "in a check.case block"
    return f"{where}, {RAISED_PREFIX}{exception}"


def _exception_name(raised: str) -> str:
    name = raised.split(":", 1)[0].strip()
    return name if name in SHOWN_EXCEPTIONS else "an exception"


def _numpy_dtype(name: str) -> bool:
    """Whether numpy writes a dtype so (object, <U5, complex128, datetime64[ns]), with few digits."""
    if not re.fullmatch(r"[<>|=]?[A-Za-z]{1,12}\d{0,3}(?:\[[A-Za-z]{1,3}\])?", name):
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return str(np.dtype(name)) == name
    except (TypeError, ValueError):
        return False


def _check_hints(course: Course, lab: str) -> dict[str, str] | None:
    """Each check's hint as the build recorded it (what verdicts appended), or None when the references
    cannot be read."""
    try:
        references = load_references(course.references_file(lab))
    except Exception as err:  # missing or damaged build folder: the pages still come, their hints unverified
        log.warning(
            "feedback for %s: the references cannot be read (%s): messages that quote the kernel "
            "are shown without their hints",
            lab,
            type(err).__name__,
        )
        return None
    return {
        name: str(ref.observation.params["hint"])
        for name, ref in references.items()
        if ref.observation.params.get("hint")
    }


# ---- summary and verdicts -------------------------------------------------------------------------


def _summary(result: Result, notebook: str, cells: dict[str, CellScore], late: Lateness | None = None) -> str:
    failed = result.status != "graded"
    rows = [("Lab", result.lab), ("Notebook", notebook), ("Student", result.student), ("Status", result.status_text)]
    if late is not None and late.due is not None:  # the reason for an extension is the staff's, never shown
        rows += [("Due", late.due + (" (your extended due date)" if late.extended else "")), ("Submitted", late.note())]
    facts = "".join(
        f'<tr><th scope="row">{esc(k)}</th><td{" class=failed" if k == "Status" and failed else ""}>'
        f"{esc(v)}</td></tr>\n"
        for k, v in rows
    )
    score = "not scored (the run failed)" if failed else f"{result.score:g} / {result.max_score:g}"
    if not failed and late is not None and late.penalty > 0:
        score = f"{late.score_after_penalty:g} / {result.max_score:g} ({late.score:g} before the late penalty)"
    facts += f'<tr><th scope="row">Score</th><td class="score">{esc(score)}</td></tr>\n'
    parts = [
        f"<header>\n<h1>Feedback: {esc(result.lab)} / {esc(notebook)}</h1>\n"
        f'<table class="facts">\n<tbody>\n{facts}</tbody>\n</table>'
    ]
    if cells:
        score_rows = "".join(
            f'<tr><td><a href="#{_anchor(grade_id)}">{esc(grade_id)}</a></td>'
            f'<td class="num">{cell.score:g} / {cell.max_score:g}</td>'
            f'<td class="num">{sum(bool(c.passed) for c in cell.checks)} / {len(cell.checks)}</td></tr>\n'
            for grade_id, cell in cells.items()
        )
        parts.append(
            '<h2>Scores</h2>\n<table class="scores">\n<thead><tr><th scope="col">test cell</th>'
            '<th scope="col">points</th><th scope="col">checks passed</th></tr></thead>\n'
            f"<tbody>\n{score_rows}</tbody>\n</table>"
        )
    parts.append("</header>")
    return "\n".join(parts)


def _verdict(score: CellScore) -> str:
    rows = "".join(
        f'<tr class="{"pass" if c.passed else "fail"}"><td><code>{esc(c.name)}</code></td>'
        f'<td class="mark">{"PASS" if c.passed else "FAIL"}</td>'
        f"<td>{'' if not c.message else '<pre>' + esc(c.message) + '</pre>'}</td></tr>\n"
        for c in score.checks
    )
    return (
        f'<div class="verdict">\n<p class="points">{score.score:g} / {score.max_score:g} points</p>\n'
        '<table class="checks">\n<thead><tr><th scope="col">check</th><th scope="col">result</th>'
        f'<th scope="col">message</th></tr></thead>\n<tbody>\n{rows}</tbody>\n</table>\n</div>'
    )


# ---- cells ---------------------------------------------------------------------------------------


def _cell(
    cell,
    index: int,
    scores: dict[str, CellScore],
    clear: ClearHiddenTests,
    compact: bool = False,
    written: dict[str, ManualGrade] | None = None,
) -> str:
    kind = cell.get("cell_type")
    if is_manual_answer_cell(cell):
        return _written_answer(cell, (written or {}).get(str(nbgrader_meta(cell).get("grade_id", ""))), compact)
    if kind == "markdown":
        text, attachments = _shortened(cell.get("source", ""), compact), None if compact else cell.get("attachments")
        return f'<section class="cell markdown">\n{render_markdown(text, attachments)}</section>'
    if kind != "code":  # raw cells: shown as text, never passed through as HTML
        return f'<section class="cell raw"><pre>{esc(_shortened(cell.get("source", ""), compact))}</pre></section>'
    source = _shortened(_without_hidden_tests(cell, index, clear), compact)
    code = highlight(source, PythonLexer(), HtmlFormatter(cssclass="highlight")) if source.strip() else ""
    if not is_test_cell(cell):
        return f'<section class="cell code">\n{code}</section>'
    grade_id = str(nbgrader_meta(cell).get("grade_id", ""))
    score = scores.get(grade_id)
    verdict = _verdict(score) if score else '<p class="points">not graded</p>'
    return (
        f'<section class="cell test" id="{_anchor(grade_id)}">\n<p class="label">test cell '
        f"<code>{esc(grade_id)}</code></p>\n{code}{verdict}\n</section>"
    )


def _written_answers(course: Course, result: Result, notebook: str) -> tuple[dict[str, ManualGrade], str | None]:
    """The notebook's written answers' grades by grade_id, and why they could not be read (or None)."""
    try:
        grades = manual_grades(course, result.lab, result.student)
    except Exception as err:  # an unreadable gradebook or rubrics file: the page still comes, saying so per answer
        return {}, f"the written answers' grades cannot be read ({type(err).__name__}: {str(err)[:200]})"
    return {grade_id: grade for (name, grade_id), grade in grades.items() if name == notebook}, None


def _written_answer(cell, grade: ManualGrade | None, compact: bool) -> str:
    """A written answer: the student's text as text (escaped, never rendered), the TA's score and comment."""
    grade_id = str(nbgrader_meta(cell).get("grade_id", ""))
    text = _shortened(cell.get("source", ""), compact)
    if grade is not None and grade.score is not None:
        verdict = f'<p class="points">{grade.score:g} / {grade.max_score:g} points (graded by a TA)</p>'
        if grade.comment:
            verdict += f'\n<div class="comment"><p class="label">TA\'s comment</p><pre>{esc(grade.comment)}</pre></div>'
    else:
        points = grade.max_score if grade is not None else nbgrader_meta(cell).get("points", 0)
        verdict = f'<p class="points">awaiting a TA\'s grade ({esc(f"{float(points):g}")} points)</p>'
    return (
        f'<section class="cell written" id="answer-{_anchor(grade_id)[5:]}">\n<p class="label">written answer '
        f'<code>{esc(grade_id)}</code></p>\n<pre class="answer">{esc(text)}</pre>\n<div class="verdict">\n{verdict}\n'
        "</div>\n</section>"
    )


def _shortened(text: str, compact: bool) -> str:
    if not compact or len(text) <= COMPACT_CHARS:
        return text
    return text[:COMPACT_CHARS] + f"\n... ({len(text) - COMPACT_CHARS:,} more characters not shown)"


def _without_hidden_tests(cell, index: int, clear: ClearHiddenTests) -> str:
    """The cell's source less its hidden-test regions (nbgrader's ClearHiddenTests). A region
    it cannot delimit (nested or unterminated markers, which only a student's own cell can
    hold) hides the whole source rather than guessing."""
    copy = nbformat.from_dict(
        {
            "cell_type": "code",
            "source": cell.get("source", ""),
            "metadata": cell.get("metadata", {}),
            "outputs": [],
            "execution_count": None,
        }
    )
    try:
        clear._remove_hidden_test_region(copy)
    except RuntimeError:
        return "# (this cell's source is not shown: its hidden-test markers do not pair up)"
    return copy.source


def _anchor(grade_id: str) -> str:
    return "test-" + re.sub(r"[^A-Za-z0-9_-]", "_", grade_id)


# ---- style ------------------------------------------------------------------------------------------

_PYGMENTS_CSS: list[str] = []


def _pygments_css() -> str:
    if not _PYGMENTS_CSS:
        css = HtmlFormatter(style="default").get_style_defs(".highlight")
        _PYGMENTS_CSS.append(re.sub(r"\s*/\*.*?\*/", "", css) + "\n")  # token names ("Generic.Traceback") unsaid
    return _PYGMENTS_CSS[0]


STYLE = """\
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; line-height: 1.5; color: #1b1b1b;
       max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
header { border-bottom: 2px solid #ccc; margin-bottom: 1.5rem; padding-bottom: 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
thead th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.failed { color: #a40000; font-weight: bold; }
td.score { font-weight: bold; }
.cell { margin: 1rem 0; }
.cell.code, .cell.test { border-left: 3px solid #ddd; padding-left: 0.75rem; }
.cell.test { border-left-color: #4a7ebb; }
.cell.written { border-left: 3px solid #8a6fb5; padding-left: 0.75rem; }
.cell.written pre.answer { background: #f7f7f7; padding: 0.5rem; }
.comment { background: #f3effa; padding: 0.3rem 0.6rem; margin-top: 0.3rem; }
.label { margin: 0; color: #555; font-size: 0.9rem; }
.highlight { background: #f7f7f7; overflow-x: auto; }
.highlight pre { margin: 0; padding: 0.5rem; }
pre { white-space: pre-wrap; margin: 0; font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
.verdict .points { font-weight: bold; margin: 0.4rem 0 0; }
tr.pass .mark { color: #176117; font-weight: bold; }
tr.fail .mark { color: #a40000; font-weight: bold; }
.math { overflow-x: auto; margin: 0.5rem 0; }
math[display="block"] { font-size: 1.15em; }
.dropped-link { text-decoration: underline dotted; }
.dropped-image { color: #777; }
.notice { background: #fff4ce; border: 1px solid #e0c060; padding: 0.4rem 0.6rem; }
"""

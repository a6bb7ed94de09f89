"""`autograder feedback LAB`: per-student HTML that teaches without leaking hidden tests.

Built here, on the coordinator, from two things: the cells of the autograded notebook and the
verdicts in result.json. The page returns verdicts, never what the grading run printed: no
output of any cell is shown (student code running after a hidden test can read it from the
kernel's history or frames and print it), only

- a summary: lab, notebook, student, status (a failed run's reason), score, a table of the
  test cells;
- the cells' sources: code highlighted by pygments, markdown rendered by markup.py (mistune, raw HTML
  escaped, links kept only for http(s)/mailto/#, images only as data: PNG/JPEG/GIF/WebP (or a
  cell attachment of those types), `$...$`/`$$...$$` converted to MathML here (latex2mathml,
  then re-serialised through an element and attribute allow-list: no script needed to read it);
- each test cell with its hidden-test regions removed (nbgrader's ClearHiddenTests) and, below
  it, its points and every check's name, PASS/FAIL and message. A message that reports an
  exception raised in a test cell names its built-in type only: the exception's text and a
  class's name are written by student code under grading (`raise ValueError(In[-1])`); and any
  hidden-test line found verbatim in a message is cut out as a second net.

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
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import nbformat
from nbgrader.preprocessors import ClearHiddenTests
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from ..atomic_file import write_atomically
from ..cells import is_test_cell, nbgrader_meta
from ..course import Course
from .markup import attr, esc, render_markdown
from .results import CellScore, Result, load_result, result_path

# No script of any kind, nothing fetched: inline styles, and images only from data: URIs.
CSP = (
    "default-src 'none'; script-src 'none'; object-src 'none'; style-src 'unsafe-inline'; "
    "img-src data:; font-src 'none'; connect-src 'none'; media-src 'none'; frame-src 'none'; "
    "worker-src 'none'; manifest-src 'none'; base-uri 'none'; form-action 'none'"
)
# A test cell that raised is named by its exception's type alone: the exception's text is written by
# student code under grading (it can carry the kernel's input history), and so is a class's name. All
# of it goes, up to the check's hint (the grader's own words, written on the lines after the exception's:
# checks.observation.raised_text keeps the exception to one line, so it cannot fake a hint line).
RAISED = re.compile(r"(the test cell raised )(.*?)(?=\n  hint: |\Z)", re.S)
SHOWN_EXCEPTIONS = {
    name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, BaseException)
} | {"OutOfMemoryError"}
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
        except Exception as err:  # a damaged folder of one student
            report(student, f"no page: the result cannot be read ({type(err).__name__}: {str(err)[:200]})")
            continue
        for notebook in notebooks:
            try:
                page, problem = _write_one(course, result, notebook, cap)
                written.append(page)
                if problem:
                    report(student, f"{notebook}: {problem}")
            except Exception as err:  # a bug of ours: this page only, said with what to report
                log.exception("feedback for %s/%s/%s", student, lab, notebook)
                report(student, f"{notebook}: no page (internal error: {type(err).__name__}: {str(err)[:200]})")
    return written


def _submitted_notebooks(course: Course, student: str, lab: str) -> set[str]:
    return {p.stem for p in (course.autograded / student / lab).glob("*.ipynb")}


def _write_one(course: Course, result: Result, notebook: str, cap: int) -> tuple[Path, str | None]:
    """Write one page; returns it and a problem worth telling the TA (or None)."""
    nb, problem = _read_autograded(course.autograded / result.student / result.lab / f"{notebook}.ipynb")
    clear = ClearHiddenTests(config=course.config)
    hidden = _hidden_lines(nb, clear)
    cells = {c.grade_id: _redacted(c, hidden) for c in result.cells if c.notebook == notebook}
    page = ""
    for detail in ("full", "compact", "verdicts") if problem is None else ("unreadable",):  # the most that fits
        page = render_page(result, notebook, nb, cells, clear, detail=detail)
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
    result: Result, notebook: str, nb, cells: dict[str, CellScore], clear: ClearHiddenTests, detail: str = "full"
) -> str:
    """The whole HTML page: summary, then every cell's source (test cells with their verdicts).

    detail: "full"; "compact" (no images, each cell's source cut at COMPACT_CHARS), for a page
    over the size cap; "verdicts" (the test cells' verdicts alone), or "unreadable" (the same, for
    an autograded notebook that could not be read)."""
    title = f"Feedback: {result.lab} / {notebook}"
    body = [_summary(result, notebook, cells), "<main>\n<h2>Your notebook</h2>"]
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
            body.append(_cell(cell, index, cells, clear, compact=detail == "compact"))
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


def _redacted(cell: CellScore, hidden: list[str]) -> CellScore:
    """A test cell's scores with every check message cleaned of what student code wrote: an
    exception's text reduced to its type, and (a second net) any hidden-test line cut out."""

    def clean(message: str) -> str:
        message = RAISED.sub(lambda m: m[1] + _exception_name(m[2]), message or "")
        for line in hidden:
            message = message.replace(line, "[hidden test]")
        return message

    return replace(cell, checks=[replace(c, message=clean(c.message)) for c in cell.checks])


def _exception_name(raised: str) -> str:
    name = raised.split(":", 1)[0].strip()
    return name if name in SHOWN_EXCEPTIONS else "an exception"


# ---- summary and verdicts -------------------------------------------------------------------------


def _summary(result: Result, notebook: str, cells: dict[str, CellScore]) -> str:
    failed = result.status != "graded"
    rows = [("Lab", result.lab), ("Notebook", notebook), ("Student", result.student), ("Status", result.status_text)]
    facts = "".join(
        f'<tr><th scope="row">{esc(k)}</th><td{" class=failed" if k == "Status" and failed else ""}>'
        f"{esc(v)}</td></tr>\n"
        for k, v in rows
    )
    score = "not scored (the run failed)" if failed else f"{result.score:g} / {result.max_score:g}"
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


def _cell(cell, index: int, scores: dict[str, CellScore], clear: ClearHiddenTests, compact: bool = False) -> str:
    kind = cell.get("cell_type")
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

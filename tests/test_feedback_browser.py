"""Feedback pages as a person opens them: every page of an attacked class, in headless Chromium.

One batch grades the tiny lab (with a markdown cell of headings, a table and math) for an
honest student, a blank one, an infinite loop (failed), and attackers who try to bring the
hidden tests back through the page: printing the kernel's input history and frames after the
hidden cells, printing from inside the graded functions while the hidden checks call them,
raising exceptions whose text or class name is a hidden line, markdown with script in every
form, and outputs of every kind a notebook viewer might run (HTML, JavaScript, SVG, image
metadata, widgets, mermaid). Each script tries to set a marker (the title, an element,
window.name, a console message, a dialog); the test reads all of them, the hidden-test lines
of the source notebook, the hidden reference values, the CSP, and what the page renders.
"""

from __future__ import annotations

import json
import re

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell
from traitlets.config import Config

from autograder.authoring.pipeline import build_lab
from autograder.course import Course
from autograder.demo import DemoStudent, make_submission
from autograder.grading.batch import grade_lab
from autograder.grading.feedback import CSP, write_feedback
from autograder.references import load_references
from browser import chromium
from conftest import new_course
from notebooks import mean_square_lab, write_lab

LAB = "tiny"
MARK = "PWNED"
JS = (
    f"document.title='{MARK}';window.name='{MARK}';console.log('{MARK}');"
    f"var d=document.createElement('div');d.id='pwned';document.body.appendChild(d);alert('{MARK}')"
)
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="

INTRO = r"""## What you compute

The mean square of $x \in \mathbb{R}^N$ is $\frac{1}{N}\sum_i x_i^2$:

$$
\operatorname{ms}(x) = \frac{1}{N} \sum_{i=1}^{N} x_i^2
$$

| function | input | output |
|---|---|---|
| `mean_square` | `x: (N,)` | scalar |
| `outer` | `a: (N,), b: (M,)` | `(N, M)` |
"""

# After every test cell: what the kernel executed, from its history and the calling frame.
HISTORIAN = """import sys
ip = get_ipython()
print('IN', In)
print('HISTORY', ip.history_manager.input_hist_raw)
print('FRAME', {k: v for k, v in sys._getframe(0).f_locals.items() if k.startswith('_i')})
print('OUT', Out)"""
# Inside the graded functions, while the hidden checks call them: the caller's source and values.
TRACER = {
    "mean_square": 'import sys\ndef mean_square(x):\n    """x: (N,) -> scalar"""\n    caller = sys._getframe(1)\n'
    "    print('CALLER', caller.f_globals['In'][-1], caller.f_locals.keys())\n"
    "    result = (x ** 2).mean()\n    print('INPUT', x, 'RESULT', result, result.item())\n"
    "    return result",
    "outer": 'def outer(a, b):\n    """a: (N,), b: (M,) -> (N, M)"""\n    result = a[:, None] * b[None, :]\n'
    "    print('INPUTS', a, b, 'RESULT', result, result.tolist())\n    return result",
}
# An exception whose text, or whose class's name, is the hidden test (the verdict names the error).
RAISER = {
    "mean_square": 'def mean_square(x):\n    """x: (N,) -> scalar"""\n    if len(x) == 4:\n'
    "        raise ValueError(get_ipython().user_ns['In'][-1])\n    return (x ** 2).mean()",
    "outer": 'def outer(a, b):\n    """a: (N,), b: (M,) -> (N, M)"""\n    if len(a) == 2:\n'
    "        line = get_ipython().user_ns['In'][-1].splitlines()[-2]\n"
    "        raise type(line, (Exception,), {})(line)\n    return a[:, None] * b[None, :]",
}
MARKUP = f"""## My notes $\\text{{<script>{JS}</script>}}$

<script>{JS}</script>

<img src=x onerror="{JS}">

<svg xmlns="http://www.w3.org/2000/svg" onload="{JS}"><script>{JS}</script></svg>

<iframe srcdoc="<script>{JS}</script>"></iframe>

[click me](javascript:{JS}) <a href="javascript:{JS}">raw link</a> [data](data:text/html,<script>{JS}</script>)

<div style="position:fixed;inset:0">overlay</div><style>body {{ display: none }}</style>

<math><mtext><script>{JS}</script></mtext></math> $\\href{{javascript:{JS}}}{{x}}$

![a](javascript:{JS}) ![b](x" onerror="{JS}) ![c](attachment:c.svg)
"""
SVG = f'<svg xmlns="http://www.w3.org/2000/svg" onload="{JS}"><script>{JS}</script></svg>'
DISPLAYS = f"""from IPython.display import publish_display_data
JS = {JS!r}
leak = '\\n'.join(In)
publish_display_data({{'text/html': '<script>' + JS + '</script><img src=x onerror="' + JS + '">' + leak,
                      'text/plain': leak}})
publish_display_data({{'application/javascript': JS}})
publish_display_data({{'image/svg+xml': {SVG!r}}})
publish_display_data({{'image/png': {PNG!r}}},
                     metadata={{'image/png': {{'width': '"><script>' + JS + '</script>',
                                              'height': '"><img src=x onerror="' + JS + '">'}}}})
publish_display_data({{'application/vnd.jupyter.widget-view+json':
                      {{'model_id': 'x', 'version_major': 2, 'version_minor': 0}}, 'text/plain': 'a widget'}})
publish_display_data({{'text/vnd.mermaid': "graph TD; A-->B; click A call alert('{MARK}')"}})
publish_display_data({{'text/markdown': '<script>' + JS + '</script>' + leak}})"""


def _append(course: Course, student: str, *cells, metadata: dict | None = None) -> None:
    path = course.submitted / student / LAB / f"{LAB}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.extend(cells)
    nb.metadata.update(metadata or {})
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    course = new_course(tmp_path_factory.mktemp("feedback-course"))
    lab = mean_square_lab()
    lab.cells.insert(1, new_markdown_cell(INTRO))
    write_lab(course.root, LAB, lab)
    build_lab(course, LAB)
    for student in [
        DemoStudent("honest", "correct"),
        DemoStudent("blank", "blank", answers="blank"),
        DemoStudent("looper", "infinite loop", extra_cell="while True:\n    pass"),
        DemoStudent("historian", "prints the history"),
        DemoStudent("tracer", "prints", replace=TRACER),
        DemoStudent("raiser", "raises the hidden source", replace=RAISER),
        DemoStudent("markup", "script in markdown"),
        DemoStudent("displays", "script in outputs"),
    ]:
        make_submission(course, LAB, student)
    _append(course, "historian", new_code_cell(HISTORIAN))
    svg_attachment = {"c.svg": {"image/svg+xml": SVG}}
    _append(course, "markup", new_markdown_cell(MARKUP, attachments=svg_attachment))
    _append(
        course,
        "displays",
        new_code_cell(DISPLAYS),
        new_markdown_cell("display attacks above"),
        metadata={
            "widgets": {
                "application/vnd.jupyter.widget-state+json": {
                    "version_major": 2,
                    "version_minor": 0,
                    "state": {"x": {"model_name": f"<script>{JS}</script>"}},
                }
            }
        },
    )

    config = Config(course.config)
    config.Grading.cell_timeout = 10
    config.Grading.notebook_timeout = 60
    results = {r.student: r for r in grade_lab(Course(course.root, config), LAB, force=True, workers=2)}
    files = write_feedback(course, LAB, sorted(results))
    return course, results, files


def hidden_lines(course: Course) -> list[str]:
    """Every line inside a hidden-test region of the source notebook."""
    nb = nbformat.read(course.root / "source" / LAB / f"{LAB}.ipynb", as_version=4)
    lines = []
    for cell in nb.cells:
        inside = False
        for line in cell.source.splitlines():
            if "BEGIN HIDDEN TESTS" in line or "END HIDDEN TESTS" in line:
                inside = "BEGIN" in line
            elif inside and line.strip():
                lines.append(line.strip())
    assert lines
    return lines


def number_run(values) -> re.Pattern:
    """The numbers in order, however printed (3 / 3. / 3.0000, commas, brackets, tensor(...))."""

    def one(v: float) -> str:
        text = f"{abs(v):g}"
        whole, _, frac = text.partition(".")
        body = (r"0?" if whole == "0" else re.escape(whole)) + (rf"\.{frac}0*" if frac else r"(?:\.0*)?")
        return (r"-\s*" if v < 0 else "") + body + r"(?![0-9])"

    return re.compile(r"[^0-9.]+".join(one(float(v)) for v in values))


def secret_patterns(course: Course) -> list[re.Pattern]:
    """The hidden checks' inputs (number lists in the hidden lines) and reference values."""
    lists = [
        re.findall(r"-?\d+\.?\d*", group)
        for line in hidden_lines(course)
        for group in re.findall(r"\[([^\]]+)\]", line)
    ]
    patterns = [number_run(numbers) for numbers in lists if len(numbers) >= 3]  # two numbers could be anything
    for ref in load_references(course.references_file(LAB)).values():
        if ref.hidden:
            value = np.asarray(ref.observation.value, dtype=float).ravel()
            if value.size > 1 or len(f"{value[0]:g}") >= 4:  # a bare "3" or "0.5" would prove nothing
                patterns.append(number_run(value))
    assert len(patterns) >= 3
    return patterns


READ_PAGE = """() => {
  const text = e => e ? e.innerText.trim() : null;
  const all = [...document.querySelectorAll('*')];
  return {
    title: document.title, windowName: window.name, pwned: !!document.getElementById('pwned'),
    firstHead: document.head.firstElementChild.outerHTML,
    csp: document.head.firstElementChild.getAttribute('content'),
    h1: [...document.querySelectorAll('h1')].map(text), h2: [...document.querySelectorAll('h2')].map(text),
    facts: Object.fromEntries([...document.querySelectorAll('table.facts tr')].map(
      r => [text(r.querySelector('th')), text(r.querySelector('td'))])),
    scores: [...document.querySelectorAll('table.scores tbody tr')].map(r => [...r.cells].map(text)),
    checks: [...document.querySelectorAll('table.checks tbody tr')].map(r => [...r.cells].map(text)),
    tables: [...document.querySelectorAll('main section.markdown table')].map(
      t => [...t.querySelectorAll('th')].map(text)),
    active: all.filter(e => ['SCRIPT', 'IFRAME', 'OBJECT', 'EMBED', 'svg', 'FOREIGNOBJECT', 'FORM', 'BASE',
                             'LINK', 'AUDIO', 'VIDEO'].includes(e.tagName)).map(e => e.tagName),
    handlers: all.flatMap(e => [...e.attributes].filter(a => a.name.startsWith('on'))
                                                 .map(a => e.tagName + ' ' + a.name)),
    styles: document.querySelectorAll('style').length,
    bodyStyles: document.querySelectorAll('body style, [style]').length,
    hrefs: [...document.querySelectorAll('[href]')].map(e => e.getAttribute('href')),
    srcs: [...document.querySelectorAll('[src], [srcdoc], [data]')].map(e => e.outerHTML.slice(0, 80)),
    maths: [...document.querySelectorAll('math')].map(m => ({display: m.getAttribute('display'),
      height: m.getBoundingClientRect().height, width: m.getBoundingClientRect().width})),
    fraction: (f => f ? f.getBoundingClientRect().height : 0)(document.querySelector('math[display=block] mfrac')),
    lineHeight: parseFloat(getComputedStyle(document.body).fontSize),
    keywords: [...document.querySelectorAll('.highlight .k')].map(text),
    code: [...document.querySelectorAll('.highlight pre')].map(text).join('\\n'),
    innerText: document.body.innerText, html: document.documentElement.outerHTML,
  };
}"""


def open_page(browser, path):
    """Load a page in a fresh context; what it rendered, and everything it tried to do."""
    context = browser.new_context(java_script_enabled=True)
    page = context.new_page()
    events = {"console": [], "dialogs": [], "errors": [], "requests": []}
    page.on("console", lambda m: events["console"].append(m.text))
    page.on("dialog", lambda d: (events["dialogs"].append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: events["errors"].append(str(e)))
    page.on("request", lambda r: events["requests"].append(r.url))
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_timeout(150)  # anything scheduled for just after load
    seen = page.evaluate(READ_PAGE)
    context.close()
    return seen, events


def test_the_attacks_reached_the_grading_run(pages):
    """The class is a real test: the leaks are in what the kernel produced, before the page is built."""
    course, results, files = pages
    assert {r.student: r.status for r in results.values()} == {
        **{s: "graded" for s in results if s != "looper"},
        "looper": "failed",
    }
    assert len(files) == len(results)
    printed = {
        s: json.dumps(
            [
                c.get("outputs")
                for c in nbformat.read(course.autograded / s / LAB / f"{LAB}.ipynb", as_version=4).cells
                if c.cell_type == "code"
            ]
        )
        for s in ("historian", "tracer", "displays")
    }
    hidden = hidden_lines(course)
    for student in printed:  # the outputs of the grading run hold the hidden tests (the page must not)
        assert any(json.dumps(line)[1:-1] in printed[student] for line in hidden), student
    for mime in ("application/javascript", "image/svg+xml", "text/vnd.mermaid", "widget-view+json", "><script>"):
        assert mime in printed["displays"]


def test_every_feedback_page_renders_verdicts_and_runs_nothing(pages):
    course, results, files = pages
    hidden, secrets = hidden_lines(course), secret_patterns(course)
    with chromium() as browser:
        for path in files:
            student = path.parent.parent.name
            result = results[student]
            seen, events = open_page(browser, path)
            where = f"feedback page of {student}"

            # Nothing ran, nothing was fetched, no marker was set.
            assert events == {"console": [], "dialogs": [], "errors": [], "requests": [path.as_uri()]}, where
            assert seen["title"] == f"Feedback: {LAB} / {LAB} ({student})" and MARK not in seen["title"], where
            assert (seen["windowName"], seen["pwned"]) == ("", False), where
            assert seen["active"] == [] and seen["handlers"] == [], where
            assert (seen["styles"], seen["bodyStyles"]) == (1, 0), where
            assert all(h.startswith(("#", "https://", "http://", "mailto:")) for h in seen["hrefs"]), where
            assert all(s.startswith('<img src="data:image/') for s in seen["srcs"]), where

            # The policy is the first thing in <head>.
            assert seen["firstHead"].startswith('<meta http-equiv="Content-Security-Policy"'), where
            assert seen["csp"] == CSP
            for directive in ("default-src 'none'", "script-src 'none'", "img-src data:", "style-src 'unsafe-inline'"):
                assert directive in seen["csp"]

            # No hidden-test line, hidden input or hidden reference value, however printed.
            for line in hidden:
                assert line not in seen["innerText"] and line not in seen["html"], (where, line)
            for pattern in secrets:
                assert not pattern.search(seen["innerText"]), (where, pattern.pattern)

            # The summary: real headings and tables, the status (a failed run's reason), the scores.
            assert seen["h1"][0] == f"Feedback: {LAB} / {LAB}" and "Tiny lab" in seen["h1"], where
            assert {"Scores", "Your notebook", "What you compute"} <= set(seen["h2"]), where
            assert {k: seen["facts"][k] for k in ("Lab", "Notebook", "Student")} == {
                "Lab": LAB,
                "Notebook": LAB,
                "Student": student,
            }
            assert seen["facts"]["Status"] == result.status_text
            assert seen["scores"] == [
                [c.grade_id, f"{c.score:g} / {c.max_score:g}", f"{sum(k.passed for k in c.checks)} / {len(c.checks)}"]
                for c in result.cells
            ], where
            checks = {row[0]: row[1:] for row in seen["checks"]}
            assert {name: v[0] for name, v in checks.items()} == {
                k.name: "PASS" if k.passed else "FAIL" for c in result.cells for k in c.checks
            }, where

            # The lab's markdown: a real table, math as laid-out MathML (no TeX source left), code highlighted.
            assert ["function", "input", "output"] in seen["tables"], where
            assert sum(m["display"] == "block" for m in seen["maths"]) >= 1 and len(seen["maths"]) >= 3, where
            assert all(m["width"] > 0 and m["height"] > 0 for m in seen["maths"]), where
            assert seen["fraction"] > 1.3 * seen["lineHeight"], where  # numerator over denominator
            assert "\\frac" not in seen["innerText"] and "$$" not in seen["innerText"], where
            assert "def" in seen["keywords"] and "check.close('mean_square_small'" in seen["code"], where

            if student == "honest":
                assert seen["facts"]["Score"] == "3 / 3" and all(v[0] == "PASS" for v in checks.values())
            if student == "blank":
                assert seen["facts"]["Score"] == "0 / 3" and all(v[0] == "FAIL" for v in checks.values())
                assert "NotImplementedError" in checks["mean_square_small"][1]
            if student == "looper":
                assert seen["facts"]["Status"].startswith("failed: timeout")
                assert seen["facts"]["Score"] == "not scored (the run failed)"
            if student == "raiser":  # the exception is named by its type, its text is not shown
                assert "raised ValueError" in checks["mean_square_negative"][1]
                assert "raised an exception" in checks["outer_values"][1]
            if student == "markup":  # the student's markdown is shown, as text
                assert any(h.startswith("My notes") for h in seen["h2"])
                assert f"<script>{JS}</script>" in seen["innerText"]


def test_the_policy_alone_stops_script_that_escaping_let_through(pages, tmp_path):
    """The second layer: the honest page with script injected past the escaping still runs none."""
    course, _, _ = pages
    page = (course.feedback / "honest" / LAB / f"{LAB}.html").read_text()
    injected = page.replace(
        "<body>",
        f'<body><script>{JS}</script><img src="x" onerror="{JS}">'
        f'<svg onload="{JS}"></svg><a id="go" href="javascript:{JS}">go</a>',
        1,
    )
    assert injected != page
    target = tmp_path / "injected.html"
    target.write_text(injected)
    with chromium() as browser:
        context = browser.new_context()
        tab = context.new_page()
        console, dialogs = [], []
        tab.on("console", lambda m: console.append(m.text))
        tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        tab.goto(target.as_uri(), wait_until="load")
        tab.click("#go")
        tab.wait_for_timeout(150)
        assert (tab.title(), tab.evaluate("window.name"), tab.evaluate("!!document.getElementById('pwned')")) == (
            "Feedback: tiny / tiny (honest)",
            "",
            False,
        )
        context.close()
    assert dialogs == [] and MARK not in console
    assert any("Content Security Policy" in line for line in console)  # refused, and said so

"""`autograder feedback LAB`: per-student HTML that teaches without leaking hidden tests.

Built from the autograded notebook (coordinator-side). Hidden-test source is removed with
nbgrader's own ClearHiddenTests; every output of a test cell is replaced by the verdicts
(a hidden check's message never shows reference values; see checks.compare), so no
traceback line from a hidden test can reach the student.
"""

from __future__ import annotations

import html
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from nbgrader.preprocessors import ClearHiddenTests

from ..build.source_rules import is_test_cell, nbgrader_meta
from ..course import Course
from .results import Result, load_result


def write_feedback(course: Course, lab: str, students: list[str]) -> list[Path]:
    written = []
    for student in students:
        result = load_result(course.autograded, student, lab)
        if result is None:
            continue
        for notebook in sorted({c["notebook"] for c in result.cells} or _submitted_notebooks(course, student, lab)):
            written.append(_write_one(course, result, notebook))
    return written


def _submitted_notebooks(course: Course, student: str, lab: str) -> set[str]:
    return {p.stem for p in (course.autograded / student / lab).glob("*.ipynb")}


def _write_one(course: Course, result: Result, notebook: str) -> Path:
    source = course.autograded / result.student / result.lab / f"{notebook}.ipynb"
    nb = nbformat.read(source, as_version=4) if source.is_file() else nbformat.v4.new_notebook()
    nb, _ = ClearHiddenTests(config=course.config).preprocess(nb, {})
    cells = {c["grade_id"]: c for c in result.cells if c["notebook"] == notebook}
    for cell in nb.cells:
        if is_test_cell(cell):
            score = cells.get(nbgrader_meta(cell).get("grade_id"))
            cell.outputs = [_verdict_output(score)] if score else []
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(_summary_markdown(result, notebook, cells)))
    exporter = HTMLExporter(config=course.config)
    exporter.sanitize_html = True  # student outputs may hold HTML or scripts
    body, _ = exporter.from_notebook_node(nb)
    target = course.feedback / result.student / result.lab / f"{notebook}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body, encoding="utf-8")
    return target


def _verdict_output(score: dict):
    lines = [f"{score['score']:g} / {score['max_score']:g} points"]
    for check in score["checks"]:
        mark = "PASS" if check["passed"] else "FAIL"
        lines.append(f"[{mark}] {check['name']}" + ("" if check["passed"] else "\n" + _indent(check["message"])))
    return nbformat.v4.new_output("stream", name="stdout", text="\n".join(lines) + "\n")


def _summary_markdown(result: Result, notebook: str, cells: dict) -> str:
    lines = [f"# Feedback: {html.escape(result.lab)} / {html.escape(notebook)}",
             f"**Student:** {html.escape(result.student)}  ",
             f"**Status:** {html.escape(result.status_text)}  ",
             f"**Score:** {result.score:g} / {result.max_score:g}", "",
             "| test cell | points | checks passed |", "|---|---|---|"]
    for grade_id, cell in cells.items():
        passed = sum(c["passed"] for c in cell["checks"])
        lines.append(f"| {html.escape(grade_id)} | {cell['score']:g} / {cell['max_score']:g} | "
                     f"{passed} / {len(cell['checks'])} |")
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())

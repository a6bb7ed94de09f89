"""nbgrader's own grading engine, turned off: its autograde and generate_feedback refuse, naming ours.

nbgrader's Autograde runs the tests in the student's kernel, unsandboxed, as the instructor:
a student who patches `numpy.allclose` scores, one whose cell writes gradebook.db destroys
it. Its GenerateFeedback replaces our pages with nbgrader's (hidden tests in them) and copies
`result.json` into feedback/. Both are reached from formgrader's Autograde and Generate
Feedback buttons (NbGraderAPI.autograde / generate_feedback), and from `nbgrader autograde` /
`nbgrader generate_feedback`. The course's nbgrader_config.py makes every one of them refuse,
with a message naming the command to use, before nbgrader touches a file:

    c.Autograde.exporter_class = "autograder.grading.nbgrader_guard.RefuseAutograde"
    c.GenerateFeedback.exporter_class = "autograder.grading.nbgrader_guard.RefuseFeedback"

Why there: nbgrader's BaseConverter.start() (nbgrader/converters/base.py, 0.9.6) runs
`init_notebooks()` (globs the input folders, changes nothing), builds a FilesWriter, then
instantiates `exporter_class(parent=converter)`, and only then `convert_notebooks()`, where
every change happens: init_destination (with --force, which formgrader always passes, it
deletes autograded/<student>/<lab>/ or feedback/...), init_assignment (gradebook rows), the
kernel, and on a failure _handle_failure (deletes the destination again). The exporter's
constructor is therefore the earliest configurable point, per converter class (generate_assignment
and our build, which use GenerateAssignment, and our sanitize step, which calls nbgrader's
preprocessors itself, are untouched). It raises NbGraderException after logging the message:
`nbgrader autograde` exits 1 printing it; formgrader's dialog shows it in its log and traceback.
`pre_convert_hook` would come too late: it runs after init_destination, and nbgrader logs and
swallows its exceptions.

Refusing, not running our grader in nbgrader's place: stopping nbgrader's flow after ours ran
would mean an exception inside convert_notebooks (whose failure path deletes the destination:
our autograded results) or emptying nbgrader's internal list of submissions; and a sandboxed
batch does not belong in formgrader's request handler.

A benchmark that times nbgrader's own engine on synthetic submissions (never real ones) can
restore it on its command line, which outranks the config file:
`nbgrader autograde LAB --Autograde.exporter_class=nbconvert.exporters.NotebookExporter`.
"""

from __future__ import annotations

import re
import shlex

from nbconvert.exporters import Exporter
from nbgrader.converters.base import NbGraderException

AUTOGRADE_REFUSAL = (
    "nbgrader's autograde is turned off in this course: it runs student code unsandboxed, in "
    "the grader's own kernel (a student can patch the comparisons or overwrite gradebook.db), "
    "and would overwrite the scores of the course's sandboxed grader. Nothing was changed. "
    "Grade with the course's grader instead, in the course folder {root}:"
)
FEEDBACK_REFUSAL = (
    "nbgrader's generate_feedback is turned off in this course: its pages show the hidden tests "
    "and would replace the feedback written by the course's grader. Nothing was changed. "
    "Write feedback with the course's grader instead, in the course folder {root}:"
)


def submissions(converter) -> list[tuple[str, str]]:
    """(lab, student) of every submission the converter was about to process, from its input folders."""
    found = []
    try:
        pattern = converter._format_source("(?P<assignment_id>.*)", "(?P<student_id>.*)", escape=True)
        for folder in sorted(converter.assignments):
            match = re.match(pattern, folder)
            if match:
                found.append((match["assignment_id"], match["student_id"]))
    except Exception:  # the message must come whatever nbgrader's internals look like
        pass
    return found


def commands(converter, verb: str) -> list[str]:
    """The `autograder` commands that do what the converter was asked to do."""
    coursedir = converter.coursedir
    found = submissions(converter)
    labs = sorted({lab for lab, _ in found}) or [coursedir.assignment_id or "LAB"]
    everyone = coursedir.student_id in ("", "*")
    lines = []
    for lab in labs:
        words = ["autograder", verb, lab]
        if not everyone:
            students = sorted({s for lab_, s in found if lab_ == lab}) or [coursedir.student_id]
            for student in students:
                words += ["--student", student]
        if verb == "grade" and converter.force:
            words.append("--force")
        lines.append(shlex.join(words))
    return lines


class _Refusal(Exporter):
    """Instantiated by BaseConverter.start() before any file is touched; refuses there."""

    verb = ""
    template = ""

    def __init__(self, config=None, **kw):
        converter = kw.get("parent")
        if converter is None or getattr(converter, "coursedir", None) is None:
            raise NbGraderException(f"nbgrader's own engine is turned off in this course: use `autograder {self.verb}`")
        message = "\n".join(
            [
                self.template.format(root=converter.coursedir.root),
                *("    " + line for line in commands(converter, self.verb)),
            ]
        )
        converter.log.error(message)
        raise NbGraderException(message)


class RefuseAutograde(_Refusal):
    """c.Autograde.exporter_class: `nbgrader autograde` and formgrader's Autograde button refuse."""

    verb = "grade"
    template = AUTOGRADE_REFUSAL


class RefuseFeedback(_Refusal):
    """c.GenerateFeedback.exporter_class: `nbgrader generate_feedback` and formgrader's button refuse."""

    verb = "feedback"
    template = FEEDBACK_REFUSAL

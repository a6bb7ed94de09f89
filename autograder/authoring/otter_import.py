"""`autograder import-otter`: an otter-grader master notebook → a source notebook of this course.

otter assign's "v1" format is read with otter's own parser (the `otter` extra: otter-grader 7.0.0):
otter's NotebookTransformer first reads the whole master, so a master otter refuses is refused here
with otter's message; its block and config readers (`# ASSIGNMENT CONFIG`, `# BEGIN QUESTION`,
fenced ```otter cells), its test reader (`# HIDDEN`, `# BEGIN TEST CONFIG`, points per test) and
its point resolution decide what each cell is. This module only maps the result onto nbgrader's
authoring format:

- a code cell of a `# BEGIN SOLUTION` block → a solution cell; otter's `# BEGIN SOLUTION` /
  `# END SOLUTION` lines become `### BEGIN SOLUTION` / `### END SOLUTION`, a line ending in
  `# SOLUTION` becomes a region of its own (the release shows nbgrader's stub, not otter's `...`);
- a question's tests → one test cell `<question>_tests` with the question's points, public tests
  first, hidden ones between `### BEGIN HIDDEN TESTS` and `### END HIDDEN TESTS`;
- each otter test case → checks inside `with check.case(...)`, so one that raises fails alone, as
  an otter test case does. Otter runs a test's assertions in the student's kernel; this project
  never judges there (DESIGN.md, the trust boundary), so an assertion becomes a check that records
  a value for the coordinator to compare, where its form says which value:

      assert A == B                      check.equal(name, A, expected=B)    (sets: sorted(A), sorted(B))
      np.array_equal(A, B), (A == B).all()  the same
      assert np.allclose(A, B, rtol, atol)  check.close(name, A, rtol, atol, check_dtype=False, expected=B)
        (np.isclose(...).all(), torch.allclose, math.isclose with rel_tol/abs_tol: the same)
      assert A < c, A <= c (c a number)  check.at_most(name, A, c)   (> and >=: at_least; chains split)
      a last expression with an output   check.equal(name, E, expected=<the output as a literal>),
        in the master (a doctest)          or check.equal(name, repr(E), expected=<the output text>)

  `expected=` is evaluated by the build only (reference_code.py), and the reference the coordinator
  compares with is the solution's own value. Any other assertion (isinstance, `in`, `and`, an
  assertion inside a loop or function) cannot be split into a value and a reference: its boolean
  is recorded (`check.equal(name, bool(...))`), which is otter's verdict computed in the student's
  kernel; the import report names each such test.
- points: this project's points come from hidden checks (a value copied from the public references
  earns nothing), so a question's points are shared among its hidden tests by their otter points;
  a question without hidden tests is imported with 0 points, and the report says so.

What otter does and this course does not (seeds, export and check-all cells, support files,
Gradescope settings, manual questions, prompts, success messages, all-or-nothing...) is listed in
`OtterImport.not_carried`, one line each, and printed by the command.
"""

from __future__ import annotations

import ast
import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell

from ..atomic_file import write_atomically
from ..cells import BEGIN_HIDDEN, BEGIN_SOLUTION, END_HIDDEN, END_SOLUTION

SETUP = "from autograder.checks import Checker\ncheck = Checker()"
# A lab's folder and notebook name, and the part of an otter question name kept in ids.
LAB_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
OTTER_EXTRA = "otter-grader is not installed: pip install '.[otter]' (the otter extra) to import otter assignments"

# ASSIGNMENT CONFIG keys: what becomes of each in this course (a key not listed: "not carried over").
CONFIG_NOTES = {
    "name": None,  # the lab's name unless --lab says otherwise
    "init_cell": None,  # replaced by this course's set-up cell (the Checker)
    "check_all_cell": "the check-all cell is left out: `autograder validate` runs every public check",
    "export_cell": "the export cell is left out: students submit the .ipynb itself",
    "run_tests": "otter's test run of the solution is replaced by `autograder build` (it runs the solution)",
    "seed": "autograder-side seeds (seed.variable / autograder_value / student_value) are not carried over: "
    "the grader runs the same notebook the student ran; fix seeds in the notebook",
    "requirements": "requirements are not carried over: the course's environment is pyproject.toml",
    "overwrite_requirements": "requirements are not carried over: the course's environment is pyproject.toml",
    "environment": "a conda environment is not carried over: the course's environment is pyproject.toml",
    "files": "support files are not copied: put them in the lab's folder or stage them with `autograder data`",
    "autograder_files": "autograder support files are not copied: a grading kernel sees no course files",
    "student_files": "student files are not carried over: students submit the notebook only",
    "generate": "Gradescope / otter generate settings are not carried over (grading is `autograder grade`)",
    "plugins": "otter plugins are not carried over",
    "solutions_pdf": "PDFs are not made: solutions/<lab>/ holds the executed solution notebook",
    "template_pdf": "PDFs are not made",
    "save_environment": "otter's environment serialisation is not used (nothing is unpickled here)",
    "variables": "otter's variable type checks are not carried over",
    "ignore_modules": "otter's environment serialisation is not used",
    "tests": "otter's test file settings (tests.files, ok_format, url_prefix) do not apply: tests are test cells",
    "runs_on": "runs_on does not apply: the release runs wherever the student package is installed",
    "python_version": "python_version is not carried over: the course pins its Python in pyproject.toml",
    "show_question_points": "question points are not added to the question text",
    "config_file": "settings read from config_file are listed as if they were in the notebook",
}


class OtterImportError(Exception):
    """A master notebook that cannot be imported; str() says why and what to do."""


@dataclass
class ImportedQuestion:
    name: str
    points: float
    public_tests: int
    hidden_tests: int


@dataclass
class OtterImport:
    lab: str
    notebook: nbformat.NotebookNode
    questions: list[ImportedQuestion] = field(default_factory=list)
    not_carried: list[str] = field(default_factory=list)  # one sentence each, "q1: ..." where it is a question's
    path: Path | None = None

    @property
    def points(self) -> float:
        return sum(q.points for q in self.questions)


def import_otter(master: Path, course_root: Path, lab: str | None = None, *, force: bool = False) -> OtterImport:
    """Read `master`, write source/<lab>/<lab>.ipynb under `course_root`; refuses to overwrite
    an existing source notebook unless `force`."""
    master = Path(master)
    converted = convert_master(read_master(master), master, lab)
    target = Path(course_root) / "source" / converted.lab / f"{converted.lab}.ipynb"
    if target.exists() and not force:
        raise OtterImportError(f"{target} exists: choose another --lab, or --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    text = nbformat.writes(converted.notebook)
    write_atomically(target, text if text.endswith("\n") else text + "\n")
    converted.path = target
    return converted


def read_master(master: Path) -> nbformat.NotebookNode:
    if master.suffix.lower() in (".rmd", ".qmd"):
        raise OtterImportError(f"{master}: R Markdown and Quarto masters are not imported (Python notebooks only)")
    try:
        nb = nbformat.read(master, as_version=4)
        nbformat.validate(nb)
    except OSError as err:
        raise OtterImportError(f"{master}: cannot be read ({err.strerror or err})") from None
    except (ValueError, nbformat.ValidationError) as err:  # JSON errors are ValueErrors
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OtterImportError(f"{master}: not a valid notebook ({first})") from None
    language = str(
        nb.metadata.get("kernelspec", {}).get("language") or nb.metadata.get("language_info", {}).get("name") or ""
    )
    if language.lower() not in ("", "python"):
        raise OtterImportError(f"{master}: a {language} notebook; only Python otter assignments are imported")
    return nb


def convert_master(nb: nbformat.NotebookNode, master: Path, lab: str | None = None) -> OtterImport:
    """The source notebook for an otter master notebook (nothing written)."""
    otter = _otter()
    assignment, tests = _parse_with_otter(otter, nb, master)
    lab = lab or (assignment.name if isinstance(assignment.name, str) and assignment.name else Path(master).stem)
    if not LAB_NAME.match(lab):
        raise OtterImportError(
            f"{lab!r} is not a usable lab name (a letter, then letters, digits, - or _; at most 64): give --lab NAME"
        )
    result = OtterImport(lab=lab, notebook=nbformat.v4.new_notebook())
    result.notebook.metadata = copy.deepcopy(nb.metadata)
    result.notebook.metadata.pop("otter", None)
    for key in sorted(assignment.get_user_config()):
        note = CONFIG_NOTES.get(key, f"the assignment setting {key!r} is not carried over")
        if note:
            result.not_carried.append(f"ASSIGNMENT CONFIG {key}: {note}")
    _Walk(otter, tests, result).run(nb)
    return result


# --------------------------------------------------------------------------- otter's parser


def _otter():
    try:
        import otter.assign.blocks as blocks
        import otter.assign.solutions as solutions
        import otter.assign.tests_manager as tests_manager
        import otter.assign.utils as utils
        from otter.assign.assignment import Assignment
        from otter.assign.notebook_transformer import NotebookTransformer
        from otter.assign.question_config import QuestionConfig
        from otter.test_files.abstract_test import TestFile
    except ImportError:
        raise OtterImportError(OTTER_EXTRA) from None
    return _OtterApi(blocks, solutions, tests_manager, utils, Assignment, NotebookTransformer, QuestionConfig, TestFile)


@dataclass
class _OtterApi:
    blocks: object
    solutions: object
    tests_manager: object
    utils: object
    Assignment: type
    NotebookTransformer: type
    QuestionConfig: type
    TestFile: type


def _parse_with_otter(otter, nb, master: Path):
    """otter's own pass over the master: its format errors, its config, its test cases by question."""
    assignment = otter.Assignment()
    assignment.master, assignment.lang = Path(master), "python"
    tests = otter.tests_manager.AssignmentTestsManager(assignment)
    try:
        otter.NotebookTransformer(assignment, tests).transform_notebook(copy.deepcopy(nb))
    except Exception as err:  # noqa: BLE001  otter raises its format exception, ValueError, AssertionError, YAML errors
        raise OtterImportError(f"{master}: otter cannot read it as an otter assign master: {err}") from None
    return assignment, tests


# --------------------------------------------------------------------------- the walk


class _Walk:
    """otter's block structure (as NotebookTransformer walks it) → this course's cells."""

    def __init__(self, otter, tests, result: OtterImport):
        self.otter, self.tests, self.result = otter, tests, result
        self.cells = result.notebook.cells
        self.seen: set[str] = set()
        self.ignored = 0  # lines marked # IGNORE (or in # BEGIN IGNORE blocks)

    def run(self, nb) -> None:
        b = self.otter.blocks
        question: Any = None  # otter's QuestionConfig of the question being read
        blocks: list = []  # otter's BlockTypes open at this cell, innermost last
        test_cells: list = []
        solutions = 0
        cells = b.extract_all_fenced_otter_cells(copy.deepcopy(nb.cells))
        for cell in cells:  # otter itself merges the tests of two questions of one name: refuse first
            if b.is_block_boundary_cell(cell, b.BlockType.QUESTION):
                self._question_id(str(b.get_cell_config(cell).get("name")))
        self.seen.clear()
        self._setup_cell()
        for cell in cells:
            if self.otter.utils.is_ignore_cell(cell) or b.is_assignment_config_cell(cell):
                continue
            lines = cell.source.split("\n")
            kept = self.otter.solutions.remove_ignored_lines(lines)
            self.ignored += len(lines) - len(kept)
            cell.source = "\n".join(kept)
            ended = next((t for t in b.BlockType if b.is_block_boundary_cell(cell, t, end=True)), None)
            begun = next((t for t in b.BlockType if b.is_block_boundary_cell(cell, t)), None)
            if ended is not None:
                blocks.pop()
                if ended is b.BlockType.QUESTION:
                    self._end_question(question, test_cells)
                    question, test_cells, solutions = None, [], 0
                continue
            if begun is not None:
                blocks.append(begun)
                if begun is b.BlockType.QUESTION:
                    question = self.otter.QuestionConfig(b.get_cell_config(cell))
                    self._begin_question(question)
                elif begun is b.BlockType.PROMPT and not question.manual:
                    self._note(
                        question,
                        "its prompt (# BEGIN PROMPT) is not carried over: the release shows "
                        "nbgrader's stub (# YOUR CODE HERE) where the solution was",
                    )
                continue
            inside = blocks[-1] if blocks else None
            if inside is b.BlockType.TESTS:
                test_cells.append(cell)
            elif inside is b.BlockType.PROMPT:
                continue
            elif inside is b.BlockType.SOLUTION:
                if question.manual:
                    continue  # noted at the question's start
                solutions += 1
                self._solution_cell(question, cell, solutions)
            else:
                self._plain_cell(cell)
        if self.ignored:
            self.result.not_carried.append(
                f"{self.ignored} line(s) marked # IGNORE are left out, as otter leaves them out of what it writes"
            )

    def _setup_cell(self) -> None:
        self.cells.append(new_code_cell(SETUP, metadata={"nbgrader": _meta("setup", locked=True)}))

    def _plain_cell(self, cell) -> None:
        if cell.cell_type == "raw":
            return
        kept = nbformat.from_dict(dict(cell))
        if "id" not in kept:  # cells otter split out of a fenced ```otter cell have none
            kept.id = new_code_cell().id
        kept.metadata.pop("otter", None)
        if kept.cell_type == "code":
            kept.outputs, kept.execution_count = [], None
            if any(line.rstrip().endswith("# SEED") for line in kept.source.split("\n")):
                self.result.not_carried.append(
                    "a # SEED line is kept as written: otter swaps seeds under grading, this course does not"
                )
        self.cells.append(kept)

    def _question_id(self, name: str) -> str:
        """The question's id in grade_ids and check names (letters, digits, _), refused when taken."""
        safe = re.sub(r"[^A-Za-z0-9_]", "_", name)
        if not re.match(r"^[A-Za-z]", safe):
            safe = "q_" + safe
        if safe in self.seen:
            raise OtterImportError(
                f"two questions are named {name!r} (or the same once made an id: {safe!r}); otter would "
                "merge their tests: rename one"
            )
        self.seen.add(safe)
        return safe

    def _begin_question(self, question) -> None:
        safe = question.id = self._question_id(str(question.name))
        if safe != question.name:
            self._note(question, f"its name is not an id: its cells and checks are named {safe!r}")
        if question.manual:
            self._note(
                question,
                "a manually graded question (manual: true) is not carried over: its text is "
                "kept, its answer and points are not (write it as an nbgrader manual cell)",
            )
        if question.export:
            self._note(question, "export: true (PDF export) is not carried over")
        if question.all_or_nothing:
            self._note(question, "all_or_nothing is not carried over: its checks share the points by weight")

    def _solution_cell(self, question, cell, number: int) -> None:
        if cell.cell_type != "code":
            self._note(question, "a Markdown cell in its solution block is left out")
            return
        source, marked = nbgrader_solution(cell.source, self.otter.solutions)
        grade_id = f"{question.id}_solution" + (f"_{number}" if number > 1 else "")
        if not marked:
            self._note(
                question,
                "a code cell of its solution block has no solution markers: it ships to students "
                "as written (as otter ships it)",
            )
            self.cells.append(new_code_cell(source))
            return
        self.cells.append(new_code_cell(source, metadata={"nbgrader": _meta(grade_id, solution=True)}))

    def _end_question(self, question, test_cells) -> None:
        if question.manual:
            return
        cases = self.tests._tests_by_question.get(question.name, [])  # otter's TestCases, in cell order
        if not cases:
            self._note(question, "has no tests: nothing to grade, no test cell")
            return
        points = question.points
        if isinstance(points, dict):
            points = points.get("each", 1) * len(cases)
        resolved = self.otter.TestFile.resolve_test_file_points(points, cases)
        total = round(sum(tc.points for tc in resolved), 6)
        hidden_points = sum(tc.points for tc in resolved if tc.hidden)
        hidden_count = sum(1 for tc in resolved if tc.hidden)
        public_lines: list[str] = []
        hidden_lines: list[str] = []
        for number, (cell, case) in enumerate(zip(test_cells, resolved, strict=True), start=1):
            if case.hidden:
                # A hidden test's share of the question: its otter points (equal shares when all are 0).
                share = case.points / hidden_points if hidden_points else 1 / hidden_count
                weight = round(share * total, 6) if total else 1
            else:
                weight = 1
            lines, notes = test_case_code(
                f"{question.id}_{number}",
                test_source(cell, self.otter.tests_manager),
                _output_text(cell),
                weight,
                case.failure_message,
            )
            (hidden_lines if case.hidden else public_lines).append(lines)
            for note in notes:
                self._note(question, f"test {number}: {note}")
            if case.success_message:
                self._note(question, f"test {number}: its success message is not shown (checks print their own)")
        if hidden_count:
            cell_points = total
            public_points = round(total - hidden_points, 6)
            if public_points and any(not tc.hidden for tc in resolved):
                self._note(
                    question,
                    f"the {public_points:g} point(s) otter gives its public tests go to its hidden "
                    "tests (here public checks earn nothing: their references ship with the release)",
                )
        else:
            cell_points = 0
            self._note(
                question,
                f"has no hidden tests: imported with 0 points instead of {total:g} (points come "
                "from hidden checks here: add # HIDDEN tests)",
            )
        source = "\n".join(public_lines)
        if hidden_lines:
            source = "\n".join([*([source] if source else []), BEGIN_HIDDEN, *hidden_lines, END_HIDDEN])
        self.cells.append(
            new_code_cell(source, metadata={"nbgrader": _meta(f"{question.id}_tests", points=cell_points)})
        )
        self.result.questions.append(
            ImportedQuestion(question.id, float(cell_points), len(resolved) - hidden_count, hidden_count)
        )

    def _note(self, question, text: str) -> None:
        self.result.not_carried.append(f"{question.name}: {text}" if question is not None else text)


def _meta(grade_id: str, *, solution: bool = False, locked: bool = False, points: float | None = None) -> dict:
    meta = {
        "grade": points is not None,
        "solution": solution,
        "locked": locked or points is not None,
        "grade_id": grade_id,
        "schema_version": 3,
    }
    if points is not None:
        meta["points"] = points
    return meta


# --------------------------------------------------------------------------- solutions


def nbgrader_solution(source: str, otter_solutions) -> tuple[str, bool]:
    """otter's solution markers → nbgrader's; returns (source, whether it has a solution region).
    The markers are recognised by otter's own patterns (otter.assign.solutions)."""
    out: list[str] = []
    marked, in_block = False, False
    for line in source.split("\n"):
        stripped = line.rstrip()
        begin = otter_solutions.begin_solution_regex.match(line)
        if begin and not in_block:
            out.append(begin.group(1) + BEGIN_SOLUTION)
            in_block = marked = True
        elif stripped.endswith("# END SOLUTION") and in_block:
            out.append(line[: len(line) - len(line.lstrip())] + END_SOLUTION)
            in_block = False
        elif otter_solutions.solution_line_regex.match(line):
            code = re.sub(r"\s*# ?SOLUTION( NO PROMPT)?\s*$", "", line)
            if in_block:
                out.append(code)
                continue
            indent = line[: len(line) - len(line.lstrip())]
            if out and out[-1] == indent + END_SOLUTION:  # consecutive solution lines: one region
                out.insert(len(out) - 1, code)
            else:
                out += [indent + BEGIN_SOLUTION, code, indent + END_SOLUTION]
            marked = True
        else:
            out.append(line)
    return "\n".join(out), marked


# --------------------------------------------------------------------------- tests


def test_source(cell, otter_tests_manager) -> str:
    """The test's code: the cell without its `# HIDDEN` line or `# BEGIN TEST CONFIG` block (otter's
    read_test decides the same lines, with the same pattern)."""
    lines = cell.source.split("\n")
    start = -1
    if lines[0].lstrip().startswith("#") and re.search(r"\bhidden\b", lines[0], flags=re.IGNORECASE):
        start = 0
    if re.match(otter_tests_manager.BEGIN_TEST_CONFIG_REGEX, lines[0], flags=re.IGNORECASE):
        for index, line in enumerate(lines):
            if re.match(otter_tests_manager.END_TEST_CONFIG_REGEX, line, flags=re.IGNORECASE):
                start = index
                break
    return "\n".join(lines[start + 1 :])


def _output_text(cell) -> tuple[str, bool]:
    """(the displayed result the master's cell shows, whether it also printed something)."""
    shown, printed = "", False
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            printed = printed or bool(output.get("text"))
        text = output.get("data", {}).get("text/plain")
        if text:
            shown += "".join(text) if isinstance(text, list) else text
    return shown.strip(), printed


# Placeholders in check templates, filled per check (code may hold braces, so no str.format).
NAME, WEIGHT, HINT = "\0name\0", "\0weight\0", "\0hint\0"
CLOSE_CALLS = {("np", "allclose"), ("numpy", "allclose"), ("torch", "allclose"), ("math", "isclose")}
ISCLOSE_CALLS = {("np", "isclose"), ("numpy", "isclose")}
EQUAL_CALLS = {("np", "array_equal"), ("numpy", "array_equal"), ("torch", "equal")}
KERNEL_JUDGED = (
    "`{code}` is judged in the student's kernel (its boolean is recorded, so a student who patches what it "
    "calls passes it): write it as A == B, np.allclose(A, B) or A <= number to have the grader compare"
)


def test_case_code(
    name: str, source: str, output: tuple[str, bool], weight: float, hint: str | None
) -> tuple[str, list[str]]:
    """One otter test case as checks, each with the statements before it in a `with check.case(...)`
    block. Returns (code, notes for the report)."""
    tree = ast.parse(source)
    shown, printed = output
    notes = ["its printed output is not compared (only values are)"] if printed else []
    top_level = {id(stmt) for stmt in tree.body}
    nested = [n for n in ast.walk(tree) if isinstance(n, ast.Assert) and id(n) not in top_level]
    if nested:  # an assertion in a loop or function: only the case as a whole passes or fails
        notes.append(KERNEL_JUDGED.format(code=_short(source)))
        body = _indent(source) + "\n" + _indent("_otter_passed = True")
        code = (
            f"with check.case({name!r}):\n    try:\n{_indent(body)}\n    except AssertionError:\n"
            f"        _otter_passed = False\n    {_call('equal', name, '_otter_passed', weight, hint)}"
        )
        return code, notes
    blocks: list[str] = []
    pending: list[str] = []
    checks: list[tuple[str, list[str], str | None]] = []  # (check template, statements before it, hint)
    for index, stmt in enumerate(tree.body):
        if isinstance(stmt, ast.Assert):
            message = stmt.msg.value if isinstance(stmt.msg, ast.Constant) and isinstance(stmt.msg.value, str) else None
            calls, note = assertion_checks(stmt.test, source)
        elif index == len(tree.body) - 1 and isinstance(stmt, ast.Expr) and shown:
            message = None
            calls, note = doctest_checks(stmt.value, source, shown)
        else:
            pending.append(ast.get_source_segment(source, stmt) or ast.unparse(stmt))
            continue
        for call in calls:
            checks.append((call, pending, message or hint))
            pending = []
        if note:
            notes.append(note)
    if not checks:
        notes.append("it has no assertion and no displayed output to compare: it only runs (it records nothing)")
        return "\n".join(pending) if pending else "pass", notes
    for number, (template, before, check_hint) in enumerate(checks, start=1):
        check_name = name if len(checks) == 1 else f"{name}_{number}"
        code = (
            template.replace(NAME, repr(check_name))
            .replace(WEIGHT, _weight(round(weight / len(checks), 6)))
            .replace(HINT, f", hint={check_hint!r}" if check_hint else "")
        )
        lines = [*before, code, *(pending if number == len(checks) else [])]
        blocks.append(f"with check.case({check_name!r}):\n" + _indent("\n".join(lines)))
    return "\n".join(blocks), notes


def assertion_checks(test: ast.expr, source: str) -> tuple[list[str], str | None]:
    """Check calls for `assert <test>` (templates with {name}, {weight} and {hint}) and a note when
    the assertion can only be recorded as a boolean."""
    seg = _segment(test, source)
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
        return [_equal(test.left, test.comparators[0], source)], None
    if isinstance(test, ast.Compare) and all(isinstance(op, (ast.Lt, ast.LtE, ast.Gt, ast.GtE)) for op in test.ops):
        calls = []
        operands = [test.left, *test.comparators]
        for op, left, right in zip(test.ops, operands[:-1], operands[1:], strict=True):
            below = isinstance(op, (ast.Lt, ast.LtE))  # left below right
            if _is_number(right) and not _is_number(left):
                kind, value, limit = ("at_most" if below else "at_least"), left, right
            elif _is_number(left) and not _is_number(right):
                kind, value, limit = ("at_least" if below else "at_most"), right, left
            else:
                return [_boolean(seg)], KERNEL_JUDGED.format(code=_short(seg))
            calls.append(
                f"check.{kind}(\0name\0, {_segment(value, source)}, {_segment(limit, source)}\0weight\0\0hint\0)"
            )
        return calls, None
    if isinstance(test, ast.Call):
        called = _dotted(test.func)
        if called in CLOSE_CALLS and len(test.args) == 2:
            return [_close(test, source, called)], None
        if called in EQUAL_CALLS and len(test.args) == 2:
            return [_equal(test.args[0], test.args[1], source)], None
        if called in {("np", "all"), ("numpy", "all")} and len(test.args) == 1 and not test.keywords:
            inner = _elementwise(test.args[0], source)
            if inner:
                return [inner], None
    if (
        isinstance(test, ast.Call)
        and isinstance(test.func, ast.Attribute)
        and test.func.attr == "all"
        and not test.args
        and not test.keywords
    ):
        inner = _elementwise(test.func.value, source)
        if inner:
            return [inner], None
    return [_boolean(seg)], KERNEL_JUDGED.format(code=_short(seg))


def doctest_checks(expr: ast.expr, source: str, shown: str) -> tuple[list[str], str | None]:
    """Check calls for a last expression whose output the master shows (otter compares the printed
    repr, as a doctest does)."""
    if shown == "True":
        calls, note = assertion_checks(expr, source)
        return calls, note
    seg = _segment(expr, source)
    note = KERNEL_JUDGED.format(code=_short(seg)) if isinstance(expr, (ast.Compare, ast.BoolOp)) else None
    try:
        literal = ast.literal_eval(shown)
        json.dumps(literal, allow_nan=False)
        if isinstance(literal, tuple):
            raise ValueError  # JSON would make a list of it; compare the text instead
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return [f"check.equal(\0name\0, repr({seg}), expected={shown!r}\0weight\0\0hint\0)"], note
    return [f"check.equal(\0name\0, {seg}, expected={shown}\0weight\0\0hint\0)"], note


def _equal(left: ast.expr, right: ast.expr, source: str) -> str:
    if _is_literal(left) and not _is_literal(right):
        left, right = right, left  # `assert 9 == f(3)`: the value is f(3)
    value, expected = _segment(left, source), _segment(right, source)
    if _is_set(right) or _is_set(left):  # a set is not plain data: compare it sorted
        value, expected = f"sorted({value})", f"sorted({expected})"
    return f"check.equal(\0name\0, {value}, expected={expected}\0weight\0\0hint\0)"


def _close(call: ast.Call, source: str, called: tuple[str, str]) -> str:
    keywords = {k.arg: _segment(k.value, source) for k in call.keywords if k.arg}
    if called == ("math", "isclose"):
        rtol, atol = keywords.get("rel_tol", "1e-09"), keywords.get("abs_tol", "0.0")
    else:
        rtol, atol = keywords.get("rtol", "1e-05"), keywords.get("atol", "1e-08")
    value, expected = call.args
    if _is_literal(value) and not _is_literal(expected):
        value, expected = expected, value
    return (
        f"check.close(\0name\0, {_segment(value, source)}, rtol={rtol}, atol={atol}, check_dtype=False, "
        f"expected={_segment(expected, source)}\0weight\0\0hint\0)"
    )


def _elementwise(node: ast.expr, source: str) -> str | None:
    """`A == B` or `np.isclose(A, B)` inside np.all(...) / (...).all()."""
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq):
        return _equal(node.left, node.comparators[0], source)
    if isinstance(node, ast.Call) and _dotted(node.func) in ISCLOSE_CALLS and len(node.args) == 2:
        return _close(node, source, ("np", "allclose"))
    return None


def _boolean(seg: str) -> str:
    return f"check.equal(\0name\0, bool({seg})\0weight\0\0hint\0)"


def _call(kind: str, name: str, value: str, weight: float, hint: str | None) -> str:
    return f"check.{kind}({name!r}, {value}{_weight(weight)}" + (f", hint={hint!r})" if hint else ")")


def _weight(weight: float) -> str:
    return "" if weight == 1 else f", weight={weight:g}"


def _dotted(node: ast.expr) -> tuple[str, str] | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.value.id, node.attr
    return None


def _is_number(node: ast.expr) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _is_set(node: ast.expr) -> bool:
    return isinstance(node, (ast.Set, ast.SetComp)) or (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("set", "frozenset")
    )


def _segment(node: ast.expr, source: str) -> str:
    text = ast.get_source_segment(source, node) or ast.unparse(node)
    return f"({text})" if "\n" in text else text


def _short(code: str) -> str:
    code = " ".join(code.split())
    return code if len(code) <= 70 else code[:67] + "..."


def _indent(text: str) -> str:
    return "\n".join("    " + line if line.strip() else line for line in text.split("\n"))

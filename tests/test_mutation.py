"""`autograder mutate`: the bug catalogue, the instructor's declarations, and real gradings of mutants.

The tiny lab here has one well-tested function (a sum where a mean belongs is caught, with its
hint), and one that only a shape check guards (a relu): its mutants must survive, and the report
must say so in words. Lab 1, built from this repository, is measured on a sample with a floor.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_markdown_cell, new_notebook

from autograder.authoring.pipeline import build_lab
from autograder.cells import nbgrader_meta
from autograder.course import CourseError
from autograder.mutation.campaign import mutate_lab
from autograder.mutation.mutants import lab_mutants, sample
from autograder.mutation.operators import solution_edits
from autograder.mutation.report import summary_line, survivor_lines
from conftest import build_repo_lab, new_course
from notebooks import SETUP, grade_cell, locked_cell, solution_cell, write_lab

LAB = "weak"
SOURCE_WITH_EVERY_FAMILY = '''def f(x, W, b, y, model, optimizer):
    """the signature and docstring stay: x.sum() here is not the solution's"""
    ### BEGIN SOLUTION
    h = x @ W + b
    p = torch.softmax(h, dim=1)
    m = p.mean(dim=0, keepdim=True)
    s = torch.sqrt(p.var())
    first = h[1:3, 0]
    v = torch.tensor([1.0, 2.0])
    optimizer.zero_grad()
    z = h.detach()
    q = 0.5 * y ** 2
    e = x.exp()
    r = y * b
    g = h.T @ y
    g /= 4
    for _ in range(3):
        pass
    return -m, s, first, v, z, q, e
    ### END SOLUTION
'''


def weak_lab():
    relu = solution_cell(
        "relu_solution",
        'def relu(x):\n    """x: (N,) float32 -> max(x, 0), a new tensor (x unchanged)"""\n'
        "    ### BEGIN SOLUTION\n    return x.clamp(min=0)\n    ### END SOLUTION",
    )
    relu.metadata["mutation"] = {
        "mutants": [{"name": "abs instead of relu", "replace": "x.clamp(min=0)", "with": "x.abs()"}],
        "equivalent": [
            {"change": "x.clamp(min=0) -> x.clamp_(min=0)", "reason": "declared here to test the bookkeeping"}
        ],
    }
    return new_notebook(
        cells=[
            new_markdown_cell("# A lab with one weak test"),
            locked_cell("setup", SETUP),
            solution_cell(
                "mean_square_solution",
                'def mean_square(x):\n    """x: (N,) -> scalar mean of squares"""\n    ### BEGIN SOLUTION\n'
                "    return (x ** 2).mean()\n    ### END SOLUTION",
            ),
            grade_cell(
                "mean_square_tests",
                "check.close('ms_small', mean_square(torch.tensor([1.0, 2.0, 3.0])))\n"
                "### BEGIN HIDDEN TESTS\n"
                "check.close('ms_hidden', mean_square(torch.tensor([-1.0, -3.0, 2.0, 0.5])),"
                " hint='the MEAN of the squares: divide by N')\n"
                "### END HIDDEN TESTS",
                points=2,
            ),
            relu,
            grade_cell(
                "relu_tests",
                "check.shape('relu_shape', relu(torch.ones(3)), (3,))\n"
                "check.close('relu_public', relu(torch.tensor([-1.0, 0.5])))\n"
                "### BEGIN HIDDEN TESTS\n"
                "check.shape('relu_hidden_shape', relu(torch.tensor([-1.0, 2.0])), (2,))\n"
                "### END HIDDEN TESTS",
            ),
        ]
    )


@pytest.fixture(scope="module")
def weak_course(tmp_path_factory):
    course = new_course(tmp_path_factory.mktemp("weak-course"))
    write_lab(course.root, LAB, weak_lab())
    build_lab(course, LAB)
    return course


@pytest.fixture(scope="module")
def weak_report(weak_course):
    return mutate_lab(weak_course, LAB, workers=2)


# --------------------------------------------------------------------------- the catalogue


def test_every_family_proposes_its_bug_and_only_inside_the_solution():
    edits = solution_edits(SOURCE_WITH_EVERY_FAMILY)
    changes = {(e.operator, e.before, e.after) for e in edits}
    expected = {
        ("sum/mean, max/min", "p.mean(dim=0, keepdim=True)", "p.sum(dim=0, keepdim=True)"),
        ("transposed operand", "x @ W", "x.T @ W"),
        ("transposed operand", "x @ W", "x @ W.T"),
        ("flipped sign", "x @ W + b", "x @ W - b"),
        ("flipped sign", "-m", "m"),
        ("dropped term", "x @ W + b", "x @ W"),
        ("wrong dim", "torch.softmax(h, dim=1)", "torch.softmax(h, dim=0)"),
        ("keepdim dropped", "p.mean(dim=0, keepdim=True)", "p.mean(dim=0)"),
        ("off by one", "h[1:3, 0]", "h[0:3, 0]"),
        ("off by one", "h[1:3, 0]", "h[1:3, 1]"),
        ("off by one", "range(3)", "range(3 - 1)"),
        ("missing zero_grad()", "optimizer.zero_grad()", "pass"),
        ("missing detach()", "h.detach()", "h"),
        ("in-place update", "x.exp()", "x.exp_()"),
        ("in-place update", "r = y * b", "y *= b; r = y"),
        ("transposed operand", "h.T @ y", "h @ y"),
        ("inverted scale", "g /= 4", "g *= 4"),
        ("dropped update", "g /= 4", "pass"),
        ("dtype", "torch.tensor([1.0, 2.0])", "torch.tensor([1, 2])"),
        ("constant dropped", "0.5 * y ** 2", "y ** 2"),
        ("constant dropped", "y ** 2", "y"),
        ("std/variance", "p.var()", "p.std()"),
        ("std/variance", "torch.sqrt(p.var())", "p.var()"),
    }
    assert expected <= changes, sorted(expected - changes)
    lines = SOURCE_WITH_EVERY_FAMILY.splitlines()
    for edit in edits:
        mutated = edit.apply(SOURCE_WITH_EVERY_FAMILY)
        ast.parse(mutated)  # every mutant is Python
        assert mutated != SOURCE_WITH_EVERY_FAMILY
        new_lines = mutated.splitlines()
        assert new_lines[:3] == lines[:3], f"{edit}: the signature or docstring changed"
        assert new_lines[-1] == lines[-1]
        assert 3 < edit.line < len(lines), edit


def test_a_cell_without_markers_or_not_python_proposes_nothing():
    assert solution_edits("def f(x):\n    return x.sum()\n") == []
    assert solution_edits("### BEGIN SOLUTION\nreturn x.sum(\n### END SOLUTION") == []


def test_a_sample_visits_every_cell_and_keeps_the_declared_mutants(weak_course):
    mutants, equivalents, problems = lab_mutants(weak_course.source_notebooks(LAB))
    assert problems == []
    assert [e.change for e in equivalents] == ["x.clamp(min=0) -> x.clamp_(min=0)"]
    declared = [m for m in mutants if m.operator == "declared"]
    assert [(m.cell, m.name, m.after) for m in declared] == [("relu_solution", "abs instead of relu", "x.abs()")]
    chosen = sample(mutants, 2)
    assert {m.cell for m in chosen} >= {"relu_solution"} and declared[0] in chosen
    assert len(sample(mutants, 3)) == 3 and {m.cell for m in sample(mutants, 3)} == {
        "mean_square_solution",
        "relu_solution",
    }


def test_the_build_keeps_the_declarations_out_of_the_release_and_the_solutions(weak_course):
    for folder in (weak_course.release, weak_course.solutions):
        text = (folder / LAB / f"{LAB}.ipynb").read_text()
        assert '"mutation"' not in text and "abs instead of relu" not in text, folder
    source = nbformat.read(weak_course.source_notebooks(LAB)[0], as_version=4)
    assert any("mutation" in c.metadata for c in source.cells)  # the instructor's copy keeps them


# --------------------------------------------------------------------------- real gradings


def test_the_sum_for_a_mean_is_killed_and_its_message_names_the_cause(weak_report):
    by_change = {o.mutant.change: o for o in weak_report.outcomes}
    summed = by_change["(x ** 2).mean() -> (x ** 2).sum()"]
    assert summed.verdict == "killed" and summed.score < summed.max_score
    assert summed.names_cause, summed.failed_checks
    assert any("hint: the MEAN of the squares" in message for _, message in summed.failed_checks)


def test_what_only_a_shape_check_guards_survives_and_is_said_in_words(weak_report):
    by_name = {o.mutant.name: o for o in weak_report.outcomes if o.mutant.name}
    assert by_name["abs instead of relu"].verdict == "survived"
    lines = survivor_lines(weak_report)
    # relu_public catches it, but public checks earn no points: the line says so, and what to do
    assert (
        "only public checks, which earn no points, tell 'x.clamp(min=0) -> x.abs()' from the solution in cell "
        "'relu_solution' (line 4, abs instead of relu): relu_public failed; give that promise a hidden check too"
    ) in "\n".join(lines)
    assert by_name["abs instead of relu"].public_failures == ["relu_public"]
    equivalent = next(o for o in weak_report.outcomes if o.mutant.after == "x.clamp_(min=0)")
    assert (equivalent.verdict, equivalent.reason) == ("equivalent", "declared here to test the bookkeeping")
    judged = weak_report.judged
    assert equivalent not in judged
    assert weak_report.kill_rate == sum(o.killed for o in judged) / len(judged) < 1
    assert f"kill rate {sum(o.killed for o in judged)}/{len(judged)}" in summary_line(weak_report)


def test_the_cli_prints_the_survivors_keeps_the_report_and_fails_below_the_floor(weak_course):
    done = mutate_cli(LAB, "--min-kill-rate", "0.99", "--course", str(weak_course.root))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "only public checks, which earn no points, tell 'x.clamp(min=0) -> x.abs()'" in done.stdout
    assert "kill rate 2/3 = 66.7 %" in done.stdout, done.stdout
    assert "kill rate 0.667 < 0.99" in done.stdout + done.stderr
    saved = json.loads((weak_course.private / LAB / "mutation.json").read_text())
    assert saved["lab"] == LAB and saved["kill_rate"] < 0.99
    assert {o["verdict"] for o in saved["outcomes"]} == {"killed", "survived", "equivalent"}
    # the course itself never saw a mutant
    assert not weak_course.submitted.exists() and not weak_course.autograded.exists()


def test_a_declaration_that_does_not_apply_is_reported_and_strict_fails(tmp_path):
    course = new_course(tmp_path / "course")
    nb = weak_lab()
    relu = next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == "relu_solution")
    relu.metadata["mutation"]["mutants"].append({"name": "gone", "replace": "x.relu()", "with": "x"})
    write_lab(course.root, LAB, nb)
    mutants, _, problems = lab_mutants(course.source_notebooks(LAB))
    assert problems == [
        "cell 'relu_solution' of weak: declared mutant 'gone' replaces 'x.relu()', which occurs 0 times in the "
        "cell (it must occur once)"
    ]
    assert "gone" not in {m.name for m in mutants}  # reported, not graded as if it applied
    build_lab(course, LAB)
    done = mutate_cli(LAB, "--strict", "--limit", "1", "--course", str(course.root))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "declaration not applied: cell 'relu_solution' of weak: declared mutant 'gone'" in done.stdout
    assert "weak: 1 survivors, 1 declarations not applied" in done.stdout


def test_a_source_edited_since_the_build_is_refused_with_the_fix(tmp_path):
    course = new_course(tmp_path / "course")
    write_lab(course.root, LAB, weak_lab())
    build_lab(course, LAB)
    path = course.source_notebooks(LAB)[0]
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == "mean_square_solution")
    cell.source = cell.source.replace("(x ** 2).mean()", "(x ** 2).mean() + 1")
    nbformat.write(nb, path)
    with pytest.raises(CourseError, match=r"does not score full marks as a student .*rebuild"):
        mutate_lab(course, LAB, limit=1, workers=1)


def mutate_cli(*args: str) -> subprocess.CompletedProcess:
    """`autograder mutate ARGS`, its table wide enough to read back."""
    command = [str(Path(sys.executable).with_name("autograder")), "mutate", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})


# --------------------------------------------------------------------------- lab 1, CI-sized


def test_lab1_kills_its_mutants(tmp_path_factory):
    """A sample of lab 1's mutants, spread over its cells; the floor is below the measured rate
    (README, Measured) so that noise does not fail CI, and above what a weakened lab would get."""
    course = build_repo_lab(tmp_path_factory, "lab1_cross_entropy")
    report = mutate_lab(course, "lab1_cross_entropy", limit=24, workers=2)
    print("\n" + summary_line(report))
    for line in survivor_lines(report):
        print("  " + line)
    assert len(report.outcomes) == 24 and len({o.mutant.cell for o in report.outcomes}) >= 10
    assert report.kill_rate >= 0.9, summary_line(report)  # 98.3 % over all 63 (README, Measured)


def test_mutants_of_chosen_cells_only_and_a_pattern_matching_none_is_refused(weak_course):
    """`--cell` re-measures one part of a lab after editing it; a typo measures nothing and says so."""
    done = mutate_cli(LAB, "--cell", "mean_*", "--course", str(weak_course.root))
    assert done.returncode == 0, done.stdout + done.stderr
    saved = json.loads((weak_course.private / LAB / "mutation.json").read_text())
    assert saved["cells"] == ["mean_*"] and saved["outcomes"], saved
    assert {o["cell"] for o in saved["outcomes"]} == {"mean_square_solution"}, saved["outcomes"]
    assert f"{LAB}: {saved['mutants']} mutants of the cells mean_*:" in done.stdout, done.stdout
    done = mutate_cli(LAB, "--cell", "relu", "--cell", "nope*", "--course", str(weak_course.root))
    assert done.returncode == 1
    assert "no solution cell of weak with mutants matches 'relu', 'nope*'" in done.stdout + done.stderr
    assert "its cells with mutants: mean_square_solution, relu_solution" in done.stdout + done.stderr

"""`autograder build`: release, references and solutions from a source notebook, and its refusals."""

import nbformat
import pytest

from autograder.authoring.pipeline import build_lab
from autograder.authoring.source_rules import SourceError
from autograder.references import load_references
from conftest import new_course, public_checks
from notebooks import grade_cell, locked_cell, mean_square_lab, write_lab


def release_text(course, lab="tiny"):
    nb = nbformat.read(course.release / lab / f"{lab}.ipynb", as_version=4)
    return "\n".join(cell.source for cell in nb.cells)


def test_release_has_stubs_and_no_solution_or_hidden_text(tiny_course):
    text = release_text(tiny_course)
    assert "raise NotImplementedError()" in text
    for secret in (
        "(x ** 2).mean()",
        "a[:, None] * b[None, :]",
        "mean_square_negative",
        "outer_values",
        "BEGIN SOLUTION",
        "HIDDEN TESTS",
    ):
        assert secret not in text


def test_public_references_hold_public_checks_only(tiny_course):
    public = public_checks(tiny_course.release / "tiny")
    assert set(public) == {"mean_square_small", "outer_shape"}
    assert not any("grade_id" in entry for entry in public.values())


def test_private_references_know_cell_and_visibility(tiny_course):
    refs = load_references(tiny_course.references_file("tiny"))
    assert {n: (r.grade_id, r.hidden) for n, r in refs.items()} == {
        "mean_square_small": ("mean_square_tests", False),
        "mean_square_negative": ("mean_square_tests", True),
        "outer_shape": ("outer_tests", False),
        "outer_values": ("outer_tests", True),
    }
    assert float(refs["mean_square_small"].observation.value) == pytest.approx(14 / 3)
    assert float(refs["mean_square_negative"].observation.value) == pytest.approx((1 + 9 + 4 + 0.25) / 4)


def test_solutions_are_executed_without_markers_or_hidden_tests(tiny_course):
    nb = nbformat.read(tiny_course.solutions / "tiny" / "tiny.ipynb", as_version=4)
    text = "\n".join(cell.source for cell in nb.cells)
    assert "(x ** 2).mean()" in text and "BEGIN SOLUTION" not in text and "outer_values" not in text
    assert all(cell.execution_count for cell in nb.cells if cell.cell_type == "code")


def test_the_gradebook_knows_the_cells_and_points(tiny_course):
    from autograder.grading.gradebook import max_scores

    assert max_scores(tiny_course, "tiny") == {"tiny": {"mean_square_tests": 2.0, "outer_tests": 1.0}}


# ----------------------------------------------------------------- refusals, each naming the cell


def broken(mutate):
    nb = mean_square_lab()
    mutate(nb)
    return nb


def _plain(cell):
    cell.metadata = {}


def _as_plain_code(index):
    return lambda nb: _plain(nb.cells[index])


def _dup_grade_id(nb):
    nb.cells[4].metadata.nbgrader.grade_id = "mean_square_solution"


STATIC_CASES = [
    ("solution region outside a solution cell", _as_plain_code(2), "cell 2: a solution region"),
    ("hidden tests outside a test cell", _as_plain_code(3), "cell 3: hidden tests"),
    ("repeated grade_id", _dup_grade_id, "grade_id 'mean_square_solution' repeats: cell 2"),
    (
        "unbalanced markers",
        lambda nb: setattr(nb.cells[2], "source", nb.cells[2].source.replace("    ### END SOLUTION", "")),
        "never closed",
    ),
]


@pytest.mark.parametrize("story, mutate, expected", STATIC_CASES, ids=[c[0] for c in STATIC_CASES])
def test_static_mistakes_are_refused_before_running(tmp_path, story, mutate, expected):
    course = new_course(tmp_path)
    write_lab(course.root, "tiny", broken(mutate))
    with pytest.raises(SourceError, match="tiny.ipynb") as err:
        build_lab(course, "tiny")
    assert expected in str(err.value)


def _repeat_check_name(nb):
    nb.cells[5].source = nb.cells[5].source.replace("'outer_values'", "'mean_square_small'")


def _test_cell_without_check(nb):
    nb.cells.append(grade_cell("empty_tests", "x = 1"))


def _declared_shape_wrong(nb):
    nb.cells[5].source = nb.cells[5].source.replace("(3, 4))", "(4, 3))")


def _solution_raises(nb):
    nb.cells[2].source = nb.cells[2].source.replace("return (x ** 2).mean()", "return x.nonexistent()")


def _case_names_no_check(nb):
    """A misspelt case name: the block's exception would fail no check under grading."""
    source = "with check.case('outer_valeus'):\n    check.close('outer_case', torch.ones(2))"
    nb.cells.append(grade_cell("case_tests", source))


def _solution_raises_inside_a_case(nb):
    source = "with check.case('outer_case'):\n    check.close('outer_case', torch.ones(2) @ torch.ones(3))"
    nb.cells.append(grade_cell("case_tests", source))


def _check_outside_test_cell(nb):
    nb.cells.append(locked_cell("extra", "check.close('stray', torch.ones(1))"))


RUN_CASES = [
    ("check name repeats", _repeat_check_name, "check name 'mean_square_small' repeats: cell 3"),
    ("test cell records nothing", _test_cell_without_check, "this test cell records no check"),
    ("solution fails its own check", _declared_shape_wrong, "the solution fails its own check"),
    ("solution raises", _solution_raises, "the solution raised AttributeError"),
    ("check outside a test cell", _check_outside_test_cell, "called outside a test cell"),
    (
        "solution raises inside a case",
        _solution_raises_inside_a_case,
        "the solution raised RuntimeError: inconsistent tensor size",
    ),
    ("case names no check", _case_names_no_check, "check.case('outer_valeus') on line 1 names no check"),
]


@pytest.mark.parametrize("story, mutate, expected", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_mistakes_found_by_running_the_solution_are_refused(tmp_path, story, mutate, expected):
    course = new_course(tmp_path)
    write_lab(course.root, "tiny", broken(mutate))
    with pytest.raises(SourceError, match="tiny.ipynb, cell") as err:
        build_lab(course, "tiny")
    assert expected in str(err.value)
    assert not (course.release / "tiny").exists()  # nothing half-built is published


def test_a_source_that_is_not_a_notebook_is_refused(tmp_path):
    course = new_course(tmp_path)
    (course.source / "tiny").mkdir(parents=True)
    (course.source / "tiny" / "tiny.ipynb").write_text("{ not json")
    with pytest.raises(SourceError, match="not a readable notebook"):
        build_lab(course, "tiny")

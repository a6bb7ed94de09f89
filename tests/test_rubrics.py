"""Written answers in the build: a manually graded answer cell needs a rubric whose points sum to the
cell's, the release and the published solutions carry neither the rubric nor the model answer, and
private/<lab>/rubrics.json keeps both for the TAs. Built for real (nbgrader's generate_assignment,
a trusted kernel) on the tiny lab plus one written question."""

from __future__ import annotations

import copy
import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell

from autograder.authoring.pipeline import build_lab
from autograder.authoring.source_rules import SourceError, check_source
from autograder.rubrics import RUBRIC_KEY, load_rubrics, rubrics_file
from conftest import new_course
from notebooks import mean_square_lab, write_lab

LAB = "tiny"
MODEL_ANSWER = "The mean of squares weighs large errors more: MODEL-ANSWER-SENTINEL."
CRITERIA = [
    {
        "points": 2,
        "text": "RUBRIC-SENTINEL says that squaring weighs large errors",
        "comment": "What does squaring do?",
    },
    {"points": 1, "text": "quotes the student's own numbers"},
]


def written_cell(grade_id: str = "reflection", points: float = 3, rubric=None, cell_type: str = "markdown"):
    """nbgrader's manually graded answer cell (solution and grade), with `rubric` in its metadata."""
    metadata = {
        "nbgrader": {
            "grade": True,
            "solution": True,
            "locked": False,
            "grade_id": grade_id,
            "points": points,
            "schema_version": 3,
        }
    }
    if rubric is not None:
        metadata[RUBRIC_KEY] = rubric
    make = new_markdown_cell if cell_type == "markdown" else new_code_cell
    return make(MODEL_ANSWER, metadata=metadata)


def written_lab(**kwargs):
    nb = mean_square_lab()
    nb.cells.append(new_markdown_cell("## Reflection\nWhy a mean of squares? Quote your numbers."))
    nb.cells.append(written_cell(rubric={"criteria": copy.deepcopy(CRITERIA)}, **kwargs))
    return nb


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    course = new_course(tmp_path_factory.mktemp("rubric-course"))
    write_lab(course.root, LAB, written_lab())
    report = build_lab(course, LAB)
    return course, report


def test_a_written_answer_builds_and_counts_its_points(built):
    course, report = built
    assert report.points == 2 + 1 + 3  # the two test cells and the written answer


def test_the_rubric_and_model_answer_stay_private(built):
    course, _ = built
    for folder in (course.release / LAB, course.solutions / LAB):
        text = (folder / f"{LAB}.ipynb").read_text()
        assert "RUBRIC-SENTINEL" not in text and f'"{RUBRIC_KEY}"' not in text, folder
    release = (course.release / LAB / f"{LAB}.ipynb").read_text()
    assert "MODEL-ANSWER-SENTINEL" not in release  # nbgrader's ClearSolutions left "YOUR ANSWER HERE"
    assert "YOUR ANSWER HERE" in release
    # the published solutions show the model answer (after the deadline), never the rubric
    assert "MODEL-ANSWER-SENTINEL" in (course.solutions / LAB / f"{LAB}.ipynb").read_text()


def test_rubrics_json_holds_the_rubric_and_model_answer(built):
    course, _ = built
    rubrics = load_rubrics(rubrics_file(course, LAB))
    assert set(rubrics) == {"reflection"}
    rubric = rubrics["reflection"]
    assert (rubric.notebook, rubric.points, rubric.model_answer) == (LAB, 3.0, MODEL_ANSWER)
    assert [(c.points, c.comment) for c in rubric.criteria] == [(2.0, "What does squaring do?"), (1.0, "")]


def test_the_release_lists_the_written_answer_as_an_answer_cell(built):
    course, _ = built
    block = json.loads((course.release / LAB / f"{LAB}.ipynb").read_text())["metadata"]["autograder"]
    assert block["cells"]["reflection"]["role"] == "answer" and block["cells"]["reflection"]["points"] == 3.0


def test_rebuilding_leaves_rubrics_json_byte_for_byte(built):
    course, _ = built
    before = rubrics_file(course, LAB).read_bytes()
    build_lab(course, LAB)
    assert rubrics_file(course, LAB).read_bytes() == before


def _refusal(nb) -> str:
    with pytest.raises(SourceError) as caught:
        check_source(nb, "tiny.ipynb")
    return str(caught.value)


def test_a_written_answer_without_a_rubric_is_refused_naming_the_cell():
    nb = mean_square_lab()
    nb.cells.append(written_cell())
    message = _refusal(nb)
    assert f"cell {len(nb.cells) - 1} (grade_id 'reflection')" in message
    assert "without a rubric" in message and '"criteria"' in message


@pytest.mark.parametrize(
    ("rubric", "phrase"),
    [
        ({"criteria": [{"points": 2, "text": "half of it"}]}, "sum to 2 points, the cell has 3"),
        ({"criteria": []}, "non-empty list"),
        ([{"points": 3, "text": "a list, not an object"}], "the one key"),
        ({"criteria": [{"points": 3, "text": "x"}], "extra": 1}, "the one key"),
        ({"criteria": [{"points": True, "text": "x"}]}, "positive number, not True"),
        ({"criteria": [{"points": -1, "text": "x"}, {"points": 4, "text": "y"}]}, "positive number, not -1"),
        ({"criteria": [{"points": float("nan"), "text": "x"}]}, "positive number"),
        ({"criteria": [{"points": "3", "text": "x"}]}, "positive number, not '3'"),
        ({"criteria": [{"points": 3, "text": "  "}]}, "what earns its points"),
        ({"criteria": [{"points": 3, "text": "x", "comment": 7}]}, "comment must be text"),
        ({"criteria": [{"points": 3, "text": "x", "weight": 1}]}, 'optionally "comment"'),
    ],
)
def test_a_malformed_rubric_is_refused_with_what_is_wrong(rubric, phrase):
    nb = mean_square_lab()
    nb.cells.append(written_cell(rubric=rubric))
    message = _refusal(nb)
    assert "(grade_id 'reflection')" in message and phrase in message, message


def test_a_rubric_on_a_cell_that_is_not_a_written_answer_is_refused():
    nb = mean_square_lab()
    nb.cells[3].metadata[RUBRIC_KEY] = {"criteria": [{"points": 2, "text": "x"}]}  # the autograded test cell
    assert "not a manually graded answer cell" in _refusal(nb)


def test_a_code_answer_graded_by_hand_takes_a_rubric_too():
    nb = mean_square_lab()
    nb.cells.append(written_cell(rubric={"criteria": copy.deepcopy(CRITERIA)}, cell_type="code"))
    check_source(nb, "tiny.ipynb")  # no error


def test_a_written_question_id_repeated_in_two_notebooks_is_refused(tmp_path):
    course = new_course(tmp_path / "course")
    write_lab(course.root, LAB, written_lab())
    write_lab(course.root, LAB, nbformat.v4.new_notebook(cells=[written_lab().cells[-1]]), name="second")
    with pytest.raises(SourceError, match="written answer 'reflection' repeats: second has it too"):
        build_lab(course, LAB)

"""Reproducible builds: rebuilding an unchanged lab elsewhere leaves release/ and solutions/ byte-identical.

Another machine differs from this one in the last bits of float results (threads, CPU kernels). A
rebuild whose references agree within each check's own tolerance, and whose notebook sources are
unchanged, keeps the files already there; a real change rewrites them.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
from nbformat.v4 import new_code_cell

from autograder.authoring.agreement import references_agree
from autograder.authoring.pipeline import write_solution
from autograder.checks.observation import Observation, encode
from conftest import new_course, public_checks
from notebooks import grade_cell, mean_square_lab, write_lab

AUTOGRADER = Path(sys.executable).with_name("autograder")

# A float32 mean over a million values, whose last bits depend on the number of threads that
# sum it; a value that differs in its 12th digit with the thread count for sure; and a printed
# line that differs in every rebuild with another thread count (a solution notebook's output).
NOISE_CELL = (
    "x = torch.randn(1_000_003, generator=torch.Generator().manual_seed(0))\n"
    "check.close('big_mean_square', mean_square(x))\n"
    "check.close('last_bits', torch.tensor(1.0, dtype=torch.float64) + 1e-12 * torch.get_num_threads())\n"
    "### BEGIN HIDDEN TESTS\n"
    "check.close('big_mean_square_head', mean_square(x[:500_000]))\n"
    "### END HIDDEN TESTS"
)
PRINT_CELL = (
    "print('threads:', torch.get_num_threads(), 'mean square:', "
    "mean_square(torch.randn(999_999, generator=torch.Generator().manual_seed(1))).item())"
)


def noisy_lab():
    nb = mean_square_lab()
    nb.cells += [grade_cell("noise_tests", NOISE_CELL), new_code_cell(PRINT_CELL)]
    return nb


def build(course, lab: str, threads: int, **variables: str) -> None:
    """`autograder build LAB` in a process of its own (its kernel inherits the environment)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **variables}
    done = subprocess.run(
        [str(AUTOGRADER), "build", lab, "--course", str(course.root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def committed_files(course, lab: str) -> dict[str, bytes]:
    """What a course commits of `lab`: release/<lab>/ and solutions/<lab>/, byte for byte."""
    files = {}
    for folder in (course.release / lab, course.solutions / lab):
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                files[str(path.relative_to(course.root))] = path.read_bytes()
    return files


def test_rebuild_with_other_threads_is_byte_identical_and_a_real_change_rewrites(tmp_path):
    course = new_course(tmp_path / "course")
    source = write_lab(course.root, "tiny", noisy_lab())
    build(course, "tiny", threads=1)
    first = committed_files(course, "tiny")
    assert set(first) == {"release/tiny/tiny.ipynb", "solutions/tiny/tiny.ipynb"}
    assert "threads: 1" in first["solutions/tiny/tiny.ipynb"].decode()
    private = course.references_file("tiny").read_bytes()

    build(course, "tiny", threads=2)
    assert committed_files(course, "tiny") == first  # the whole release/ and solutions/, bytes
    assert course.references_file("tiny").read_bytes() == private
    assert not list(course.root.rglob("*.new"))

    # A real change: a test input whose value moves far beyond the tolerance.
    nb = nbformat.read(source, as_version=4)
    tests = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "mean_square_tests")
    tests.source = tests.source.replace("[1.0, 2.0, 3.0]", "[1.0, 2.0, 4.0]")
    nbformat.write(nb, source)
    build(course, "tiny", threads=2)
    changed = committed_files(course, "tiny")
    assert set(changed) == set(first)
    assert all(changed[name] != first[name] for name in first), [n for n in first if changed[n] == first[n]]
    public = public_checks(course.release / "tiny")
    assert "threads: 2" in changed["solutions/tiny/tiny.ipynb"].decode()  # this run's outputs, written
    assert (
        public.keys()
        == json.loads(first["release/tiny/tiny.ipynb"])["metadata"]["autograder"]["public_references"]["checks"].keys()
    )


def test_unchanged_sources_but_a_value_beyond_tolerance_rewrites(tmp_path):
    course = new_course(tmp_path / "course")
    nb = mean_square_lab()
    nb.cells.append(
        grade_cell(
            "scaled_tests",
            "import os\nscale = float(os.environ.get('SCALE', '1'))\n"
            "check.close('scaled', mean_square(torch.tensor([1.0, 2.0])) * scale)\n"
            "print('scale', scale)\n"
            "### BEGIN HIDDEN TESTS\n"
            "check.close('scaled_hidden', mean_square(torch.tensor([3.0])) * scale)\n"
            "### END HIDDEN TESTS",
        )
    )
    write_lab(course.root, "tiny", nb)
    build(course, "tiny", threads=1)
    first = committed_files(course, "tiny")
    build(course, "tiny", threads=1, SCALE="1.001")  # beyond rtol=1e-5: the references move, the sources do not
    second = committed_files(course, "tiny")
    # the cells are nbgrader's, from the source; the public references in its metadata moved
    assert _cells(second["release/tiny/tiny.ipynb"]) == _cells(first["release/tiny/tiny.ipynb"])
    assert second["release/tiny/tiny.ipynb"] != first["release/tiny/tiny.ipynb"]
    assert "scale 1.001" in second["solutions/tiny/tiny.ipynb"].decode()  # this run's outputs


# ----------------------------------------------------------------------------- the rule, without a build


def document(*observations: Observation, **fields) -> bytes:
    checks = {obs.name: {**encode(obs), **fields} for obs in observations}
    return (json.dumps({"version": 1, "checks": checks}, indent=1, sort_keys=True) + "\n").encode()


def close(value, name="c", **params) -> Observation:
    return Observation(
        name,
        "close",
        np.asarray(value, dtype=np.float32),
        {"rtol": 1e-5, "atol": 1e-8, "check_dtype": True, "weight": 1.0, **params},
        line=1,
    )


def test_close_and_grad_agree_within_their_own_tolerance():
    base = document(close([1.0, 2.0]))
    assert references_agree(base, base)
    assert references_agree(base, document(close([1.0 + 1e-7, 2.0])))
    assert not references_agree(base, document(close([1.001, 2.0])))
    assert references_agree(document(close([1.0], rtol=1e-2)), document(close([1.001], rtol=1e-2)))
    assert not references_agree(base, document(close([1.0, 2.0], rtol=1e-4)))  # a tolerance changed
    assert not references_agree(base, document(close([1.0, 2.0], hint="h")))  # a hint
    assert not references_agree(base, document(close([1.0, 2.0, 3.0])))  # a shape
    assert not references_agree(
        base, document(Observation("c", "close", np.asarray([1.0, 2.0]), close([1.0]).params, line=1))
    )  # a dtype
    assert not references_agree(base, document(close([1.0, 2.0]), cell_index=3))  # where it was recorded
    assert not references_agree(base, document(close([1.0, 2.0]), close([3.0], name="d")))
    grad = Observation(
        "g",
        "grad",
        np.asarray([1.0, -2.0]),
        {
            "rtol": 1e-6,
            "floor": 1e-8,
            "weight": 1.0,
            "expected": {"autograd": [1.0, -2.0], "finite differences": [1.0 + 1e-9, -2.0]},
        },
    )
    moved = Observation(
        "g",
        "grad",
        np.asarray([1.0 + 1e-10, -2.0]),
        {**grad.params, "expected": {"autograd": [1.0, -2.0], "finite differences": [1.0, -2.0]}},
    )
    assert references_agree(document(grad), document(moved))
    far = Observation(
        "g",
        "grad",
        grad.value,
        {**grad.params, "expected": {"autograd": [1.1, -2.0], "finite differences": [1.0, -2.0]}},
    )
    assert not references_agree(document(grad), document(far))


def test_other_kinds_agree_exactly_and_thresholds_by_their_limit():
    equal = Observation("e", "equal", [3, 4], {"weight": 1.0})
    assert references_agree(document(equal), document(equal))
    assert not references_agree(document(equal), document(Observation("e", "equal", [3, 5], {"weight": 1.0})))
    shape = Observation("s", "shape", {"shape": [3, 4], "dtype": "torch.float32"}, {"shape": [None, 4], "weight": 1.0})
    other = Observation("s", "shape", {"shape": [5, 4], "dtype": "torch.float32"}, shape.params)
    assert not references_agree(document(shape), document(other))  # passes the check, but not the same record
    loss = Observation("l", "at_most", np.asarray(0.31), {"limit": 0.5, "weight": 1.0})
    assert references_agree(document(loss), document(Observation("l", "at_most", np.asarray(0.29), loss.params)))
    assert not references_agree(
        document(loss), document(Observation("l", "at_most", np.asarray(0.31), {"limit": 0.4, "weight": 1.0}))
    )
    assert not references_agree(b"not json", document(loss))


def test_a_solution_keeps_its_outputs_only_when_told_and_its_cells_are_unchanged(tmp_path):
    nb = nbformat.v4.new_notebook(
        cells=[
            new_code_cell(
                "print(1)",
                outputs=[nbformat.v4.new_output("stream", name="stdout", text="0.30000000000000004\n")],
                execution_count=1,
            )
        ]
    )
    target = tmp_path / "solutions" / "lab.ipynb"
    assert not write_solution(nb, target, keep_outputs=True)  # nothing there yet
    old = target.read_bytes()
    noisy = copy.deepcopy(nb)  # the same cells (ids included), run elsewhere
    noisy.cells[0].outputs[0].text = "0.30000000000000009\n"
    noisy.cells[0].execution_count = 2
    assert write_solution(noisy, target, keep_outputs=True) and target.read_bytes() == old
    assert not write_solution(noisy, target, keep_outputs=False) and target.read_bytes() != old
    edited = copy.deepcopy(nb)
    edited.cells[0].source = "print(2)"
    assert not write_solution(edited, target, keep_outputs=True) and "print(2)" in target.read_text()


def _cells(notebook: bytes) -> list:
    return json.loads(notebook)["cells"]

"""The student wheel on the Pythons students have (3.12, 3.13): installed, its public checks judge.

The grading side is pinned to 3.11; the student package promises 3.11-3.13. A fresh venv per
version gets the wheel (without its heavy dependencies: torch has no wheel for these versions on
this machine's local store) plus numpy and safetensors from PyPI, the two the checks package
imports, and judges a real release notebook's public check from a folder that is not the
notebook's, as JupyterLab would start the kernel (JPY_SESSION_NAME).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from autograder.kit import build_student_wheel

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "release" / "lab1_cross_entropy" / "lab1_cross_entropy.ipynb"

# Run inside the other Python: one public check that passes, one that fails with its message.
JUDGE = """
import numpy as np, sys
from autograder.checks import Checker
from autograder.checks.checker import CheckFailed
check = Checker()
check.close("second_row", np.arange(4.0, 8.0, dtype=np.float32))
try:
    check.close("second_row", np.arange(4.0, 8.0, dtype=np.float32) * 2)
except CheckFailed as failure:
    print("FAILED:", failure)
print("python", sys.version_info[:2])
"""


def interpreter(version: str) -> str | None:
    """The machine's CPython `version` (pyenv's own folders: its shims refuse an inactive version)."""
    found = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")))
    return found[-1] if found else shutil.which(f"python{version}")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_student_wheel(tmp_path_factory.mktemp("student-wheel"))


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_public_checks_judge_on_python(version, wheel, tmp_path):
    python = interpreter(version)
    if python is None:
        pytest.skip(f"no Python {version} on this machine")
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q", "install"]
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True)
    subprocess.run([*pip, "numpy>=1.26,<3", "safetensors>=0.4,<1"], check=True, timeout=600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "JPY_SESSION_NAME": str(NOTEBOOK)}
    run = subprocess.run(
        [str(venv / "bin" / "python"), "-c", JUDGE], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("\u2713 "), run.stdout  # the reference came from the notebook's metadata
    assert lines[1].startswith("FAILED: check 'second_row' failed"), run.stdout
    assert f"python ({version.replace('.', ', ')})" in lines[-1]

"""Where a student's own Jupyter finds held-out labels for an immediate accuracy check.

Only used in student mode. Under grading the labels are not in the sandbox at all: the
coordinator scores the recorded predictions (grading/verdicts.py) with its own copy.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

LABELS_FOLDER = "labels"  # data/labels/<dataset>.npy: staged by `autograder data`, never mounted


def local_labels(dataset: str) -> np.ndarray:
    """Labels from data/labels/<dataset>.npy under AUTOGRADER_DATA or ../../data (the course's data/)."""
    root = Path(os.environ.get("AUTOGRADER_DATA", Path.cwd().parent.parent / "data"))
    path = root / LABELS_FOLDER / f"{dataset}.npy"
    if not path.is_file():
        raise OSError(f"no {path}")
    return np.load(path, allow_pickle=False)

"""The course directory: where each kind of file lives, and its configuration.

The layout is nbgrader's (`source/`, `release/`, `submitted/`, `autograded/`, `feedback/`)
plus `solutions/` (published solution notebooks) and `private/` (the references recorded
from the instructor's solutions; never shipped, never mounted into a sandbox). Courses made
before it was renamed keep them in `build/`: Course.load says how to move them.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from .checks.accuracy import LABELS_FOLDER
from .settings import Grading

CONFIG_FILE = "nbgrader_config.py"
PRIVATE_FOLDER = "private"
OLD_PRIVATE_FOLDER = "build"  # its name until the redesign; tools treat a folder named build/ as output


class CourseError(Exception):
    """A problem with the course folder or a command's arguments, said plainly."""


@dataclass
class Course:
    root: Path
    config: Config = field(default_factory=Config)

    @classmethod
    def load(cls, root: str | Path = ".") -> Course:
        root = Path(root).resolve()
        _put_venv_on_path()
        config = Config()
        if (root / CONFIG_FILE).is_file():
            config = PyFileConfigLoader(CONFIG_FILE, path=str(root)).load_config()
        config.CourseDirectory.root = str(root)
        old = root / OLD_PRIVATE_FOLDER
        if not (root / PRIVATE_FOLDER).exists() and any(old.glob("*/references.json")):
            raise CourseError(
                f"{old} holds this course's private references under their old folder name: move it "
                f"with `mv {old} {root / PRIVATE_FOLDER}` (nothing else changes)"
            )
        return cls(root=root, config=config)

    # ------------------------------------------------------------------ folders

    @property
    def source(self) -> Path:
        return self.root / "source"

    @property
    def release(self) -> Path:
        return self.root / "release"

    @property
    def solutions(self) -> Path:
        return self.root / "solutions"

    @property
    def private(self) -> Path:
        return self.root / PRIVATE_FOLDER

    @property
    def submitted(self) -> Path:
        return self.root / "submitted"

    @property
    def autograded(self) -> Path:
        return self.root / "autograded"

    @property
    def feedback(self) -> Path:
        return self.root / "feedback"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def coursedir(self) -> CourseDirectory:
        return CourseDirectory(config=self.config)

    @property
    def db_url(self) -> str:
        return self.coursedir().db_url

    @property
    def grading(self) -> Grading:
        return Grading(config=self.config)

    # ------------------------------------------------------------------ labs

    def labs(self) -> list[str]:
        if not self.source.is_dir():
            raise CourseError(f"no source/ folder in {self.root}: is this a course folder?")
        return sorted(p.name for p in self.source.iterdir() if p.is_dir() and list(p.glob("*.ipynb")))

    def check_lab(self, lab: str) -> str:
        labs = self.labs()
        if lab not in labs:
            raise CourseError(f"no lab {lab!r} in {self.source} (labs: {', '.join(labs) or 'none'})")
        return lab

    def source_notebooks(self, lab: str) -> list[Path]:
        return sorted((self.source / lab).glob("*.ipynb"))

    def held_out_labels(self, dataset: str):
        """Labels the coordinator keeps: data/labels/<dataset>.npy (never mounted in a sandbox)."""
        import numpy as np

        path = self.data / LABELS_FOLDER / f"{dataset}.npy"
        if not path.is_file():
            raise CourseError(f"no held-out labels {path}: run `autograder data` to stage the data sets")
        return np.load(path, allow_pickle=False)

    def references_file(self, lab: str) -> Path:
        return self.private / lab / "references.json"


def _put_venv_on_path() -> None:
    """nbgrader runs its `alembic` executable through PATH; find it beside our interpreter."""
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")

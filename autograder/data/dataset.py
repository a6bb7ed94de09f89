"""What a data set is to `autograder data`: its description, its staging context, its errors.

Kept apart from the registry (__init__.py) so that each data set's module imports these
without importing the package that imports it back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..checks.accuracy import LABELS_FOLDER

MANIFEST = "MANIFEST.json"
LABELS = LABELS_FOLDER  # data/labels/: held out, never mounted in a sandbox
MANIFEST_VERSION = 1
FASHION_MNIST_SOURCE = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist


class DataError(Exception):
    """A data set could not be staged or verified, said plainly."""


class Unavailable(DataError):
    """The source of a data set is not on this machine (the message says how to get it)."""


@dataclass(frozen=True)
class StageContext:
    """What a data set's stage function may use.

    data_root: the course's data/ folder (read data sets staged before this one from it);
    staging: the empty folder to write into, laid out like data/ (`<key>/...`, `labels/...`).
    """

    data_root: Path
    staging: Path
    mnist_from: Path | None = None
    fashion_mnist_from: Path = FASHION_MNIST_SOURCE
    download: bool = True
    log: Callable[[str], None] = lambda message: None


@dataclass(frozen=True)
class Dataset:
    key: str  # its folder under data/ (and prefix of its labels files)
    title: str
    stage: Callable[[StageContext], str]  # writes into context.staging; returns where it came from
    required: bool = False  # a lab cannot do without it (missing: `autograder data` fails)
    requires: tuple[str, ...] = field(default_factory=tuple)  # keys staged before it, read from data_root

"""Fashion-MNIST from Debian's `dataset-fashion-mnist` (offline), read with torchvision.

Staged layout (data/ is the course's data folder):

    data/fashion_mnist/FashionMNIST/raw/<the IDX files, uncompressed>   FashionMNIST(root, train=True)
    data/fashion_mnist/test_images.npy      uint8 (10000, 28, 28), the test images in their order
    data/labels/fashion_mnist_test.npy      int64 (10000,), held out: never mounted in a sandbox

torchvision's FashionMNIST(root) insists that all four raw files exist before it reads any, so
the raw test-labels file in data/fashion_mnist/ is a short text placeholder: the training set
loads as usual, the real test labels are only in data/labels/. The helpers here serve every
data set in the MNIST format (see mnist.py).
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np

from .dataset import LABELS, DataError, Dataset, StageContext, Unavailable

KEY = "fashion_mnist"
RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
HELD_OUT_FILE = "t10k-labels-idx1-ubyte"
TEST_IMAGES = "test_images.npy"
PLACEHOLDER = """HELD OUT: not the test labels.
The {title} test labels stay with the grader in data/{labels}/{key}_test.npy, which never enters
the grading sandbox. This placeholder exists because torchvision's {cls}(root) needs all four raw
files before it loads the training set. Load the test images from {key}/{images} instead.
"""


def stage(context: StageContext) -> str:
    from torchvision.datasets import FashionMNIST

    source = Path(context.fashion_mnist_from)
    if not source.is_dir():
        raise Unavailable(
            f"{source} is missing: install Debian's dataset-fashion-mnist (`apt-get install "
            "dataset-fashion-mnist`, or run scripts/setup.sh) and run `autograder data` again"
        )
    stage_idx_dataset(context, KEY, "Fashion-MNIST", FashionMNIST, find_raw_files(source, FashionMNIST.__name__))
    return f"{source} (Debian's dataset-fashion-mnist)"


DATASET = Dataset(KEY, "Fashion-MNIST (Zalando), 60000 training and 10000 test images", stage, required=True)


# ---------------------------------------------------------------------------- MNIST-format helpers


def find_raw_files(folder: Path, class_name: str) -> dict[str, Path]:
    """The four IDX files (gzipped or not) in `folder`, or in torchvision's `folder/<class_name>/raw`."""
    folder = Path(folder)
    for candidate in (folder, folder / class_name / "raw", folder / "raw"):
        found = {}
        for name in RAW_FILES:
            for path in (candidate / name, candidate / f"{name}.gz"):
                if path.is_file():
                    found[name] = path
                    break
        if len(found) == len(RAW_FILES):
            return found
    missing = [n for n in RAW_FILES if not ((folder / n).is_file() or (folder / f"{n}.gz").is_file())]
    raise Unavailable(f"{folder} lacks {', '.join(n + '[.gz]' for n in missing)} (the four original IDX files)")


def stage_idx_dataset(context: StageContext, key: str, title: str, dataset_class, raw_files: dict[str, Path]) -> None:
    """Uncompress the IDX files where torchvision looks, read them with `dataset_class`, and write the
    test images (public) and the test labels (held out); the raw test-labels file becomes a placeholder."""
    root = context.staging / key
    raw = root / dataset_class.__name__ / "raw"
    raw.mkdir(parents=True)
    for name, path in raw_files.items():
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rb") as src, open(raw / name, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (OSError, EOFError) as err:
            raise DataError(f"{key}: cannot read {path}: {err}") from None

    test = _load(dataset_class, root, key, train=False)
    images, labels = test.data.numpy(), test.targets.numpy().astype(np.int64)
    _expect(key, "test", images, labels, 10000)
    np.save(root / TEST_IMAGES, np.ascontiguousarray(images, dtype=np.uint8), allow_pickle=False)
    (context.staging / LABELS).mkdir(exist_ok=True)
    np.save(context.staging / LABELS / f"{key}_test.npy", labels, allow_pickle=False)
    (raw / HELD_OUT_FILE).write_text(
        PLACEHOLDER.format(title=title, labels=LABELS, key=key, images=TEST_IMAGES, cls=dataset_class.__name__)
    )
    train = _load(dataset_class, root, key, train=True)  # what the labs do, with the placeholder in place
    _expect(key, "training", train.data.numpy(), train.targets.numpy(), 60000)


def _load(dataset_class, root: Path, key: str, train: bool):
    try:
        return dataset_class(root, train=train)
    except Exception as err:  # torchvision raises RuntimeError, AssertionError, ValueError... on bad files
        raise DataError(
            f"{key}: torchvision's {dataset_class.__name__} cannot read the "
            f"{'training' if train else 'test'} files: {type(err).__name__}: {err}"
        ) from None


def _expect(key: str, split: str, images: np.ndarray, labels: np.ndarray, n: int) -> None:
    if images.shape != (n, 28, 28) or images.dtype != np.uint8 or labels.shape != (n,):
        raise DataError(
            f"{key}: the {split} set has images {images.shape} {images.dtype} and labels {labels.shape}; "
            f"expected ({n}, 28, 28) uint8 and ({n},)"
        )
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{key}: {split} labels outside 0..9")

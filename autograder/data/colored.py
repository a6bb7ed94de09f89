"""Colored Fashion-MNIST (lab 5): "is this a coat?" with a hidden attribute that is rare among coats.

Every image is a grey Fashion-MNIST garment on a red or a green background,
x = g + (1 - g) * 0.9 * colour (g in [0, 1]; red = (1, 0, 0), green = (0, 1, 0)). The colour
is the hidden attribute, and the training set is imbalanced in it on purpose, the way face
data sets are imbalanced in skin tone (MIT 6.S191, lab 2 part 2):

    training (10000)   coats 5000: 4750 red, 250 green (5 %)    others 5000: 2500 red, 2500 green
    validation (600)   150 per (class, colour): balanced, labels public (for the error analysis)
    test (2000)        coats 1000: 500 red, 500 green           others 1000: 500 red, 500 green

"Others" are drawn uniformly from the nine other classes. Training and validation come from
Fashion-MNIST's training split, the test set from its test split (all 1000 test coats).

Staged layout (data/ is the course's data folder):

    data/colored_fashion_mnist/train_images.npy   uint8 (10000, 3, 28, 28)
    data/colored_fashion_mnist/train_labels.npy   int64 (10000,)   1 = coat, 0 = another class
    data/colored_fashion_mnist/train_colors.npy   int64 (10000,)   0 = red, 1 = green
    data/colored_fashion_mnist/valid_{images,labels,colors}.npy   the same for 600 images
    data/colored_fashion_mnist/test_images.npy    uint8 (2000, 3, 28, 28)
    data/colored_fashion_mnist/test_colors.npy    int64 (2000,)    public: selects the rare group
    data/colored_fashion_mnist/README.txt         this description
    data/labels/colored_fashion_mnist_test.npy        int64 (2000,) held out
    data/labels/colored_fashion_mnist_test_rare.npy   int64 (1000,) held out: the labels of the green
                                                      test images (test_colors == 1), in their order

The rare subgroup of the test set is every green test image (500 coats, 500 others): the
colours are public, so a notebook selects those images without any label, and since both
classes are in it, "predict 1 everywhere" scores 50 %, not 100 %.

Built from the staged Fashion-MNIST (data/fashion_mnist/, read with torchvision, and its
held-out test labels): stage `fashion_mnist` first. Deterministic: numpy's PCG64 with a
fixed seed, so every machine stages the same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .dataset import LABELS, DataError, Dataset, StageContext, Unavailable

KEY = "colored_fashion_mnist"
SOURCE_KEY = "fashion_mnist"
TARGET_CLASS = 4  # Fashion-MNIST's "Coat"
COLORS = ("red", "green")  # index = the colour code in *_colors.npy
RARE_COLOR = 1  # green: rare among the training coats
BACKGROUND = 0.9  # strength of the background colour
N_POSITIVE = 5000  # training coats
N_NEGATIVE = 5000  # training images of the other classes
N_RARE_POSITIVE = 250  # green training coats (5 %)
N_VALID_PER_GROUP = 150  # validation images per (class, colour)
N_TEST_PER_CLASS = 1000  # test coats (all of them) and test others
SEED = 20240605

_COLOR_VECTORS = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)


def colorize(gray: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """gray: uint8 (N, 28, 28), colors: int (N,) in {0, 1} -> uint8 (N, 3, 28, 28): the garment stays
    grey, the background takes the colour (x = g + (1 - g) * BACKGROUND * colour, g in [0, 1])."""
    g = gray.astype(np.float32)[:, None] / 255.0
    tint = _COLOR_VECTORS[np.asarray(colors)][:, :, None, None]
    return np.round(255.0 * (g + (1.0 - g) * BACKGROUND * tint)).astype(np.uint8)


def _colors(n: int, n_rare: int, rng: np.random.Generator) -> np.ndarray:
    colors = np.zeros(n, dtype=np.int64)
    colors[:n_rare] = RARE_COLOR
    return rng.permutation(colors)


def build(
    train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray, test_labels: np.ndarray
) -> dict[str, np.ndarray]:
    """The colored data set from Fashion-MNIST's arrays (uint8 (N, 28, 28), int (N,)).

    Returns {file stem: array}: the public files and "labels_test", "labels_test_rare".
    """
    rng = np.random.default_rng(SEED)
    positives = rng.permutation(np.flatnonzero(train_labels == TARGET_CLASS))
    negatives = rng.permutation(np.flatnonzero(train_labels != TARGET_CLASS))
    n_valid = 2 * N_VALID_PER_GROUP
    if len(positives) < N_POSITIVE + n_valid or len(negatives) < N_NEGATIVE + n_valid:
        raise DataError(f"{KEY}: Fashion-MNIST's training split is too small ({len(positives)} coats)")

    # Training: coats mostly red, others balanced; shuffled together.
    index = np.concatenate([positives[:N_POSITIVE], negatives[:N_NEGATIVE]])
    labels = np.concatenate([np.ones(N_POSITIVE, np.int64), np.zeros(N_NEGATIVE, np.int64)])
    colors = np.concatenate([_colors(N_POSITIVE, N_RARE_POSITIVE, rng), _colors(N_NEGATIVE, N_NEGATIVE // 2, rng)])
    order = rng.permutation(len(index))
    index, labels, colors = index[order], labels[order], colors[order]
    files = {"train_images": colorize(train_images[index], colors), "train_labels": labels, "train_colors": colors}

    # Validation: balanced in class and colour, from the training split's remaining images.
    v_index = np.concatenate(
        [positives[N_POSITIVE : N_POSITIVE + n_valid], negatives[N_NEGATIVE : N_NEGATIVE + n_valid]]
    )
    v_labels = np.concatenate([np.ones(n_valid, np.int64), np.zeros(n_valid, np.int64)])
    v_colors = np.concatenate([_colors(n_valid, N_VALID_PER_GROUP, rng), _colors(n_valid, N_VALID_PER_GROUP, rng)])
    order = rng.permutation(len(v_index))
    v_index, v_labels, v_colors = v_index[order], v_labels[order], v_colors[order]
    files.update(valid_images=colorize(train_images[v_index], v_colors), valid_labels=v_labels, valid_colors=v_colors)

    # Test: every test coat and as many others, each half red, half green.
    t_positives = np.flatnonzero(test_labels == TARGET_CLASS)
    t_negatives = rng.permutation(np.flatnonzero(test_labels != TARGET_CLASS))[:N_TEST_PER_CLASS]
    if len(t_positives) != N_TEST_PER_CLASS:
        raise DataError(f"{KEY}: expected {N_TEST_PER_CLASS} test coats, found {len(t_positives)}")
    t_index = np.concatenate([t_positives, t_negatives])
    t_labels = np.concatenate([np.ones(N_TEST_PER_CLASS, np.int64), np.zeros(N_TEST_PER_CLASS, np.int64)])
    half = N_TEST_PER_CLASS // 2
    t_colors = np.concatenate([_colors(N_TEST_PER_CLASS, half, rng), _colors(N_TEST_PER_CLASS, half, rng)])
    order = rng.permutation(len(t_index))
    t_index, t_labels, t_colors = t_index[order], t_labels[order], t_colors[order]
    files.update(
        test_images=colorize(test_images[t_index], t_colors),
        test_colors=t_colors,
        labels_test=t_labels,
        labels_test_rare=t_labels[t_colors == RARE_COLOR],
    )
    return files


def stage(context: StageContext) -> str:
    from torchvision.datasets import FashionMNIST

    source = Path(context.data_root) / SOURCE_KEY
    held_out = Path(context.data_root) / LABELS / f"{SOURCE_KEY}_test.npy"
    if not (source / "test_images.npy").is_file() or not held_out.is_file():
        raise Unavailable(f"it is built from the staged Fashion-MNIST ({source}), which is not staged")
    try:
        train = FashionMNIST(source, train=True)
    except Exception as err:  # torchvision raises several types on bad files
        raise DataError(
            f"{KEY}: torchvision cannot read the staged Fashion-MNIST: {type(err).__name__}: {err}"
        ) from None
    files = build(
        train.data.numpy(),
        train.targets.numpy(),
        np.load(source / "test_images.npy"),
        np.load(held_out, allow_pickle=False),
    )

    folder = context.staging / KEY
    folder.mkdir(parents=True)
    (context.staging / LABELS).mkdir(exist_ok=True)
    for stem, array in files.items():
        if stem.startswith("labels_"):
            path = context.staging / LABELS / f"{KEY}_{stem[len('labels_') :]}.npy"
        else:
            path = folder / f"{stem}.npy"
        np.save(path, np.ascontiguousarray(array), allow_pickle=False)
    (folder / "README.txt").write_text(__doc__.split("Staged layout")[0].strip() + "\n")
    return f"data/{SOURCE_KEY} (Fashion-MNIST), coats on red or green backgrounds, seed {SEED}"


DATASET = Dataset(
    KEY,
    "Colored Fashion-MNIST: coat or not, green backgrounds rare among training coats",
    stage,
    requires=(SOURCE_KEY,),
)

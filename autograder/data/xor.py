"""XOR (lab 2, toy problem 3): held-out test points for the XOR networks, labels kept by the grader.

Four Gaussian clouds around the corners (-1, -1), (-1, 1), (1, -1), (1, 1) of the square, with
standard deviation 0.4 in each coordinate, 100 points per corner, shuffled. A point's label
is the XOR of the signs of its two coordinates: 1 when x1 * x2 < 0 (the clouds at (-1, 1)
and (1, -1), and any point that the noise carried across an axis), 0 otherwise. Lab 2
generates its training points with the same recipe from its own seed.

The labels are a function of the points, so a student could compute them; holding them out
is not about secrecy but about the trust boundary: the accuracy is computed by the
coordinator from the recorded predictions, outside the kernel that ran the student's code.

Staged layout (data/ is the course's data folder):

    data/xor/test_points.npy   float64 (400, 2)
    data/xor/README.txt        this description
    data/labels/xor_test.npy   int64 (400,) held out: 1 where x1 * x2 < 0

Deterministic: numpy's PCG64 with a fixed seed, so every machine stages the same files.
"""

from __future__ import annotations

import numpy as np

from .dataset import LABELS, Dataset, StageContext

KEY = "xor"
CORNERS = ((-1.0, -1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0))
NOISE = 0.4  # standard deviation of each cloud, in each coordinate
N_PER_CORNER = 100  # test points per corner
SEED = 20240610


def build(n_per_corner: int = N_PER_CORNER, noise: float = NOISE, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(points float64 (4 n, 2), labels int64 (4 n,)): the four clouds, shuffled; label = x1 * x2 < 0."""
    rng = np.random.default_rng(seed)
    centres = np.repeat(np.array(CORNERS), n_per_corner, axis=0)
    points = centres + noise * rng.standard_normal(centres.shape)
    points = points[rng.permutation(len(points))]
    return points, (points[:, 0] * points[:, 1] < 0).astype(np.int64)


def stage(context: StageContext) -> str:
    points, labels = build()
    folder = context.staging / KEY
    folder.mkdir(parents=True)
    (context.staging / LABELS).mkdir(exist_ok=True)
    np.save(folder / "test_points.npy", points, allow_pickle=False)
    np.save(context.staging / LABELS / f"{KEY}_test.npy", labels, allow_pickle=False)
    (folder / "README.txt").write_text(__doc__.split("Staged layout")[0].strip() + "\n")
    return f"generated: four Gaussian clouds at the corners, noise {NOISE}, seed {SEED}"


DATASET = Dataset(KEY, "XOR: four Gaussian clouds, label = XOR of the signs (lab 2's held-out test points)", stage)

"""MNIST digits: torchvision's own download when a network exists, or a local folder of the original
IDX files (`autograder data --mnist-from DIR`). Same layout as Fashion-MNIST (see fashion_mnist.py):

    data/mnist/MNIST/raw/...          MNIST(root, train=True)
    data/mnist/test_images.npy        uint8 (10000, 28, 28)
    data/labels/mnist_test.npy        int64 (10000,), held out
"""

from __future__ import annotations

import contextlib
import io
import socket
import tempfile
from pathlib import Path

from .dataset import Dataset, StageContext, Unavailable
from .fashion_mnist import find_raw_files, stage_idx_dataset

KEY = "mnist"
DOWNLOAD_TIMEOUT = 30  # seconds per network operation (urllib has none by default)
HOW_TO = (
    "the labs use Fashion-MNIST without it; to add MNIST, run `autograder data --mnist-from DIR` with a folder "
    "holding the four original IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
    "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz])"
)


def stage(context: StageContext) -> str:
    from torchvision.datasets import MNIST

    if context.mnist_from is not None:
        folder = Path(context.mnist_from)
        if not folder.is_dir():
            raise Unavailable(f"--mnist-from {folder} is not a folder; {HOW_TO}")
        stage_idx_dataset(context, KEY, "MNIST", MNIST, find_raw_files(folder, MNIST.__name__))
        return f"the IDX files in {folder.resolve()}"
    if not context.download:
        raise Unavailable(f"no --mnist-from DIR given and downloads are off; {HOW_TO}")
    with tempfile.TemporaryDirectory(prefix="autograder-mnist-") as tmp:
        context.log(f"{KEY}: trying torchvision's download...")
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT), contextlib.redirect_stdout(io.StringIO()):
                MNIST(tmp, train=True, download=True)
        except Exception as err:  # URLError, RuntimeError (every mirror failed), timeouts
            first_line = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            raise Unavailable(
                f"torchvision could not download it (no network? {first_line}) and no "
                f"--mnist-from DIR was given; {HOW_TO}"
            ) from None
        stage_idx_dataset(context, KEY, "MNIST", MNIST, find_raw_files(Path(tmp), MNIST.__name__))
    return "torchvision's download (MNIST.mirrors)"


DATASET = Dataset(KEY, "MNIST handwritten digits, 60000 training and 10000 test images", stage)


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)

"""`autograder data`: stage the course's data sets into data/, with a sha256 manifest.

Layout contract (the grader depends on it):

- every folder directly under data/ except `labels/` is mounted read-only into the grading
  sandbox at $AUTOGRADER_DATA/<folder>: a data set's public files live in data/<key>/;
- data/labels/<name>.npy (int64 (N,)) holds held-out labels; they stay with the coordinator
  (Course.held_out_labels, check.accuracy(..., dataset=<name>)) and never enter a sandbox;
- data/MANIFEST.json records the sha256 of every staged file, per data set.

Staging is idempotent: a data set whose files all match the manifest (and whose folder holds
nothing else) is verified and skipped; a missing, changed or unexpected file is reported and
the data set is staged again from its source. Each data set is staged into a temporary folder
outside data/ and moved into place whole, so an interrupted run never leaves labels where a
sandbox could see them.

To add a data set: write a module in this package with `DATASET = Dataset(...)`, whose `stage`
function writes into the staging folder it is given (its own `<key>/` folder and
`labels/<key>_*.npy` only), and add the module's name to REGISTRY below, after the data sets it
`requires` (it can read them from context.data_root).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import replace
from importlib import import_module
from pathlib import Path

from ..atomic_file import write_atomically
from .dataset import (
    FASHION_MNIST_SOURCE,
    LABELS,
    MANIFEST,
    MANIFEST_VERSION,
    DataError,
    Dataset,
    StageContext,
    Unavailable,
)

# The data sets `autograder data` stages, in order (a data set comes after those it `requires`).
# To add one: one line with its module's name; the module defines DATASET = Dataset(...).
REGISTRY: list[Dataset] = [
    import_module(f".{name}", __name__).DATASET
    for name in (
        "fashion_mnist",
        "mnist",
        "colored",
        "xor",
        "transpose",
    )
]


def stage_all(
    data_root: Path,
    mnist_from: Path | None = None,
    *,
    datasets: Iterable[str] | None = None,
    download: bool = True,
    fashion_mnist_from: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> list[str]:
    """Stage (or verify) every registered data set into data_root; returns the keys available.

    datasets: only these keys (default: all). download: let torchvision try the network for data
    sets that need it. fashion_mnist_from: Debian's folder by default (FASHION_MNIST_SOURCE).
    log: receives one line per data set (and per problem found).
    Raises DataError when a required data set is unavailable (after staging the others).
    """
    log = log or (lambda message: None)
    data_root = Path(data_root)
    data_root.mkdir(parents=True, exist_ok=True)
    wanted = None if datasets is None else set(datasets)
    unknown = (wanted or set()) - {d.key for d in REGISTRY}
    if unknown:
        raise DataError(
            f"unknown data set(s) {', '.join(sorted(unknown))} (known: {', '.join(d.key for d in REGISTRY)})"
        )
    context = StageContext(
        data_root=data_root,
        staging=data_root,
        mnist_from=mnist_from,
        download=download,
        log=log,
        fashion_mnist_from=Path(fashion_mnist_from or FASHION_MNIST_SOURCE),
    )
    manifest = read_manifest(data_root)
    available, missing_required = [], []
    for dataset in REGISTRY:
        if wanted is not None and dataset.key not in wanted:
            continue
        if _stage_or_verify(dataset, context, manifest):
            available.append(dataset.key)
        elif dataset.required:
            missing_required.append(dataset.key)
    if missing_required:
        raise DataError(f"required data set(s) not staged: {', '.join(missing_required)} (see above)")
    return available


def _stage_or_verify(dataset: Dataset, context: StageContext, manifest: dict[str, dict]) -> bool:
    """Verify `dataset` against the manifest, staging it (again) when needed; True when it is in place.
    Updates `manifest` and data/MANIFEST.json."""
    data_root, log = context.data_root, context.log
    entry = manifest.get(dataset.key)
    problems = verify(data_root, dataset.key, entry["files"]) if entry is not None else []
    if entry is not None and not problems:
        log(f"{dataset.key}: verified {len(entry['files'])} files against {MANIFEST}, nothing to do")
        return True
    if problems:
        log(f"{dataset.key}: does not match {MANIFEST}: {'; '.join(problems)}; staging it again")
    absent = [key for key in dataset.requires if key not in manifest or verify(data_root, key, manifest[key]["files"])]
    try:
        if absent:
            raise Unavailable(f"it needs {', '.join(absent)}, which is not staged")
        manifest[dataset.key] = _stage_one(dataset, context)
    except Unavailable as err:
        if entry is not None:  # files that no longer match must not stay where a sandbox sees them
            _remove_dataset(data_root, dataset.key)
            manifest.pop(dataset.key)
            write_manifest(data_root, manifest)
        log(f"{dataset.key}: not staged: {err}" + ("; its old files were removed" if entry is not None else ""))
        return False
    write_manifest(data_root, manifest)
    log(f"{dataset.key}: staged {len(manifest[dataset.key]['files'])} files from {manifest[dataset.key]['source']}")
    return True


def _stage_one(dataset: Dataset, context: StageContext) -> dict:
    """Stage into a temporary folder outside data/, check what was written, move it into place."""
    data_root = context.data_root
    with tempfile.TemporaryDirectory(prefix=f"autograder-data-{dataset.key}-") as tmp:
        staging = Path(tmp)
        source = dataset.stage(replace(context, staging=staging))
        files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
        stray = [f for f in files if not _belongs_to(dataset.key, f)]
        if stray:
            raise DataError(
                f"{dataset.key}: the stage function wrote outside data/{dataset.key}/ and "
                f"data/{LABELS}/{dataset.key}_*: {', '.join(stray)}"
            )
        if not files:
            raise DataError(f"{dataset.key}: the stage function wrote nothing")
        hashes = {f: sha256_file(staging / f) for f in files}
        _remove_dataset(data_root, dataset.key)
        (data_root / LABELS).mkdir(exist_ok=True)
        shutil.move(str(staging / dataset.key), str(data_root / dataset.key))
        for f in files:
            if f.startswith(f"{LABELS}/"):
                shutil.move(str(staging / f), str(data_root / f))
    return {"title": dataset.title, "source": source, "files": hashes}


def _belongs_to(key: str, relative: str) -> bool:
    parts = relative.split("/")
    if parts[0] == key and len(parts) > 1:
        return True
    return len(parts) == 2 and parts[0] == LABELS and parts[1].startswith(f"{key}_") and parts[1].endswith(".npy")


def _remove_dataset(data_root: Path, key: str) -> None:
    shutil.rmtree(data_root / key, ignore_errors=True)
    for path in (data_root / LABELS).glob(f"{key}_*.npy"):
        path.unlink()


# ---------------------------------------------------------------------------- manifest


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(data_root: Path) -> dict[str, dict]:
    """{key: {"title", "source", "files": {relative path: sha256}}}; {} when there is none."""
    path = Path(data_root) / MANIFEST
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text())
        datasets = document["datasets"]
        assert isinstance(datasets, dict)
    except (ValueError, KeyError, AssertionError):
        return {}  # unreadable: every data set is staged again and a fresh manifest written
    return datasets


def write_manifest(data_root: Path, datasets: dict[str, dict]) -> Path:
    """Write data/MANIFEST.json atomically (sorted, one file per line)."""
    path = Path(data_root) / MANIFEST
    document = {
        "version": MANIFEST_VERSION,
        "about": "sha256 of every file `autograder data` staged, per data set; paths relative to data/",
        "datasets": {key: datasets[key] for key in sorted(datasets)},
    }
    return write_atomically(path, json.dumps(document, indent=1, sort_keys=True) + "\n")


def verify(data_root: Path, key: str, files: dict[str, str]) -> list[str]:
    """Problems with a staged data set: missing or changed files, and files the manifest does not list
    in data/<key>/ (a stray labels file there would reach the sandbox)."""
    data_root = Path(data_root)
    problems = []
    for relative, expected in sorted(files.items()):
        path = data_root / relative
        if not path.is_file():
            problems.append(f"{relative} is missing")
        elif sha256_file(path) != expected:
            problems.append(f"{relative} has changed (sha256 differs)")
    folder = data_root / key
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(data_root).as_posix()
            if path.is_file() and relative not in files:
                problems.append(f"{relative} is not in the manifest")
    return problems

"""`autograder data`: staging layout, manifest, idempotence, corruption, held-out labels.

Real data: Debian's Fashion-MNIST under /usr/share/datasets (scripts/setup.sh installs it).
MNIST is exercised through `--mnist-from` with a folder of IDX files in MNIST's format (copies
of Fashion-MNIST's: the same format, and no network is needed).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autograder.course import Course
from autograder.data import (
    FASHION_MNIST_SOURCE,
    MANIFEST,
    REGISTRY,
    DataError,
    read_manifest,
    sha256_file,
    stage_all,
)
from autograder.grading.kernel_policy import read_only_binds
from conftest import new_course

AUTOGRADER = str(Path(sys.executable).with_name("autograder"))
RAW = "fashion_mnist/FashionMNIST/raw"

pytestmark = pytest.mark.skipif(
    not FASHION_MNIST_SOURCE.is_dir(),
    reason="Debian's dataset-fashion-mnist is not installed (scripts/setup.sh installs it)",
)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    """data/ with Fashion-MNIST staged once for the module (tests that change it work on a copy)."""
    data = tmp_path_factory.mktemp("staged") / "data"
    lines: list[str] = []
    assert stage_all(data, datasets=["fashion_mnist"], log=lines.append) == ["fashion_mnist"]
    assert lines == [f"fashion_mnist: staged 6 files from {FASHION_MNIST_SOURCE} (Debian's dataset-fashion-mnist)"]
    return data


@pytest.fixture
def data_copy(staged, tmp_path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(staged, target)
    return target


def test_layout_the_grader_depends_on(staged):
    from torchvision.datasets import FashionMNIST

    files = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
    assert files == [
        MANIFEST,
        f"{RAW}/t10k-images-idx3-ubyte",
        f"{RAW}/t10k-labels-idx1-ubyte",
        f"{RAW}/train-images-idx3-ubyte",
        f"{RAW}/train-labels-idx1-ubyte",
        "fashion_mnist/test_images.npy",
        "labels/fashion_mnist_test.npy",
    ]
    images = np.load(staged / "fashion_mnist" / "test_images.npy", allow_pickle=False)
    labels = np.load(staged / "labels" / "fashion_mnist_test.npy", allow_pickle=False)
    assert (images.shape, images.dtype, labels.shape, labels.dtype) == ((10000, 28, 28), np.uint8, (10000,), np.int64)
    assert np.bincount(labels).tolist() == [1000] * 10  # Fashion-MNIST's test set is balanced
    train = FashionMNIST(staged / "fashion_mnist", train=True)  # what the labs do
    assert tuple(train.data.shape) == (60000, 28, 28) and len(train.targets) == 60000
    assert 0.28 < train.data.float().div(255).mean().item() < 0.29


def test_the_sandbox_copy_holds_no_test_labels(staged):
    """The raw test-labels file in data/fashion_mnist/ is a placeholder: the real labels (as the IDX
    file or as .npy) are only in data/labels/, which is not mounted."""
    from torchvision.datasets import FashionMNIST

    with gzip.open(FASHION_MNIST_SOURCE / "t10k-labels-idx1-ubyte.gz") as f:
        secrets = {sha256_bytes(f.read()), sha256_file(staged / "labels" / "fashion_mnist_test.npy")}
    placeholder = (staged / RAW / "t10k-labels-idx1-ubyte").read_text()
    assert placeholder.startswith("HELD OUT") and "test_images.npy" in placeholder
    mounted = [p for p in (staged / "fashion_mnist").rglob("*") if p.is_file()]
    assert mounted and not {sha256_file(p) for p in mounted} & secrets
    with pytest.raises((AssertionError, RuntimeError, ValueError)):
        FashionMNIST(staged / "fashion_mnist", train=False)  # no labels to read there


def test_labels_are_where_the_grader_expects(staged, tmp_path):
    course = new_course(tmp_path / "course")
    shutil.copytree(staged, course.data)
    labels = course.held_out_labels("fashion_mnist_test")
    assert labels.shape == (10000,) and labels.dtype == np.int64
    binds = read_only_binds(course)
    mounted = {inside: host for host, inside in binds if str(inside).startswith("/course-data")}
    assert mounted == {"/course-data/fashion_mnist": course.data / "fashion_mnist"}


def test_manifest_records_every_file(staged):
    document = json.loads((staged / MANIFEST).read_text())
    assert document["version"] == 1
    files = document["datasets"]["fashion_mnist"]["files"]
    on_disk = {p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()} - {MANIFEST}
    assert set(files) == on_disk
    assert all(sha256_file(staged / f) == h for f, h in files.items())


def test_a_second_run_verifies_and_changes_nothing(data_copy):
    before = {p: p.stat().st_mtime_ns for p in data_copy.rglob("*") if p.is_file()}
    lines: list[str] = []
    assert stage_all(data_copy, datasets=["fashion_mnist"], log=lines.append) == ["fashion_mnist"]
    assert lines == [f"fashion_mnist: verified 6 files against {MANIFEST}, nothing to do"]
    assert {p: p.stat().st_mtime_ns for p in data_copy.rglob("*") if p.is_file()} == before


def test_a_corrupted_file_is_detected_and_staged_again(data_copy):
    path = data_copy / "fashion_mnist" / "test_images.npy"
    good = sha256_file(path)
    with open(path, "r+b") as f:
        f.seek(1000)
        f.write(b"\xff\x00\xff")
    lines: list[str] = []
    stage_all(data_copy, datasets=["fashion_mnist"], log=lines.append)
    assert lines[0] == (
        "fashion_mnist: does not match MANIFEST.json: fashion_mnist/test_images.npy has changed "
        "(sha256 differs); staging it again"
    )
    assert lines[1].startswith("fashion_mnist: staged 6 files")
    assert sha256_file(path) == good


def test_a_missing_label_file_or_a_stray_file_is_detected(data_copy):
    (data_copy / "labels" / "fashion_mnist_test.npy").unlink()
    stray = data_copy / RAW / "t10k-labels-idx1-ubyte.gz"  # the real labels, where a sandbox would see them
    shutil.copy(FASHION_MNIST_SOURCE / "t10k-labels-idx1-ubyte.gz", stray)
    lines: list[str] = []
    stage_all(data_copy, datasets=["fashion_mnist"], log=lines.append)
    assert "labels/fashion_mnist_test.npy is missing" in lines[0]
    assert f"{RAW}/t10k-labels-idx1-ubyte.gz is not in the manifest" in lines[0]
    assert not stray.exists() and (data_copy / "labels" / "fashion_mnist_test.npy").is_file()


def test_files_that_no_longer_match_and_cannot_be_restaged_are_removed(data_copy, tmp_path):
    (data_copy / "fashion_mnist" / "test_images.npy").write_bytes(b"tampered")
    lines: list[str] = []
    with pytest.raises(DataError, match="fashion_mnist"):
        stage_all(data_copy, datasets=["fashion_mnist"], fashion_mnist_from=tmp_path / "nowhere", log=lines.append)
    assert "has changed" in lines[0] and lines[1].endswith("its old files were removed")
    assert not (data_copy / "fashion_mnist").exists() and not (data_copy / "labels" / "fashion_mnist_test.npy").exists()
    assert read_manifest(data_copy) == {}


def test_a_missing_source_is_a_clear_error(tmp_path):
    lines: list[str] = []
    with pytest.raises(DataError, match="required data set.*fashion_mnist"):
        stage_all(
            tmp_path / "data", datasets=["fashion_mnist"], fashion_mnist_from=tmp_path / "nowhere", log=lines.append
        )
    assert "apt-get install dataset-fashion-mnist" in lines[0] and "autograder data" in lines[0]
    assert not (tmp_path / "data" / "fashion_mnist").exists()
    assert read_manifest(tmp_path / "data") == {}


def test_mnist_without_network_or_folder_is_skipped_with_a_reason(tmp_path):
    lines: list[str] = []
    assert stage_all(tmp_path / "data", datasets=["mnist"], download=False, log=lines.append) == []
    assert lines[0].startswith("mnist: not staged:") and "--mnist-from DIR" in lines[0]
    assert "Fashion-MNIST" in lines[0]


@pytest.fixture
def fake_mnist(tmp_path) -> Path:
    """MNIST's four IDX files (here Fashion-MNIST's, which share the format), two gzipped, two not."""
    folder = tmp_path / "mnist-idx"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        shutil.copy(FASHION_MNIST_SOURCE / f"{name}.gz", folder / f"{name}.gz")
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(FASHION_MNIST_SOURCE / f"{name}.gz") as src:
            (folder / name).write_bytes(src.read())
    return folder


def test_the_cli_stages_mnist_from_a_folder_and_verifies_the_rest(staged, fake_mnist, tmp_path):
    course = new_course(tmp_path / "course")
    shutil.copytree(staged, course.data)
    done = subprocess.run(
        [AUTOGRADER, "data", "--mnist-from", str(fake_mnist)],
        cwd=course.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = " ".join(done.stdout.split())
    assert "fashion_mnist: verified 6 files" in out and "mnist: staged 6 files from the IDX files in" in out
    assert "data sets in" in out and "fashion_mnist, mnist" in out
    assert (course.data / "mnist" / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    assert Course.load(course.root).held_out_labels("mnist_test").shape == (10000,)
    assert set(read_manifest(course.data)) == {"fashion_mnist", "mnist", "colored_fashion_mnist", "xor", "transpose"}
    again = subprocess.run([AUTOGRADER, "data"], cwd=course.root, capture_output=True, text=True, check=False)
    assert again.returncode == 0 and "mnist: verified 6 files" in " ".join(again.stdout.split())


def test_the_cli_fails_plainly_without_fashion_mnist(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import autograder.data as data
    from autograder.cli import app

    course = new_course(tmp_path / "course")
    monkeypatch.setattr(data, "FASHION_MNIST_SOURCE", tmp_path / "nowhere")
    result = CliRunner().invoke(app, ["data", "--no-download", "--course", str(course.root)])
    text = " ".join(result.output.split())
    assert result.exit_code == 1, text
    assert "apt-get install dataset-fashion-mnist" in text and "mnist: not staged" in text
    assert "required data set(s) not staged: fashion_mnist" in text and "Traceback" not in result.output


def _inverted(context):
    """A derived data set (like a coloured variant): reads a staged one, writes its own folder and labels."""
    images = np.load(context.data_root / "fashion_mnist" / "test_images.npy")
    (context.staging / "inverted").mkdir()
    np.save(context.staging / "inverted" / "test_images.npy", 255 - images)
    (context.staging / "labels").mkdir()
    shutil.copy(
        context.data_root / "labels" / "fashion_mnist_test.npy", context.staging / "labels" / "inverted_test.npy"
    )
    return "fashion_mnist, inverted"


def _trespasser(context):
    (context.staging / "labels").mkdir()
    np.save(context.staging / "labels" / "fashion_mnist_test.npy", np.zeros(3, dtype=np.int64))
    return "nowhere"


def test_a_registered_data_set_builds_on_another_and_keeps_to_its_files(data_copy, monkeypatch):
    import autograder.data as data

    inverted = data.Dataset("inverted", "inverted test images", _inverted, requires=("fashion_mnist",))
    monkeypatch.setattr(data, "REGISTRY", [*REGISTRY[:1], inverted])
    assert stage_all(data_copy, download=False) == ["fashion_mnist", "inverted"]
    files = read_manifest(data_copy)["inverted"]["files"]
    assert set(files) == {"inverted/test_images.npy", "labels/inverted_test.npy"}
    before = sha256_file(data_copy / "labels" / "fashion_mnist_test.npy")
    monkeypatch.setattr(data, "REGISTRY", [data.Dataset("trespasser", "writes another's labels", _trespasser)])
    with pytest.raises(DataError, match="wrote outside data/trespasser/ and data/labels/trespasser_"):
        stage_all(data_copy)
    assert sha256_file(data_copy / "labels" / "fashion_mnist_test.npy") == before
    assert not (data_copy / "trespasser").exists()


def test_the_registry_keys_are_folders_and_label_prefixes():
    keys = [d.key for d in REGISTRY]
    assert keys[:2] == ["fashion_mnist", "mnist"] and len(set(keys)) == len(keys)
    assert all(k.isidentifier() and k != "labels" for k in keys)


def test_xor_is_staged_deterministically_with_its_labels_held_out(tmp_path, monkeypatch):
    """Lab 2's XOR test points: public points in data/xor/, labels (the XOR of the signs) in data/labels/."""
    from autograder.data.xor import build

    course = new_course(tmp_path / "course")
    lines: list[str] = []
    assert stage_all(course.data, datasets=["xor"], log=lines.append) == ["xor"]
    assert lines == [
        "xor: staged 3 files from generated: four Gaussian clouds at the corners, noise 0.4, seed 20240610"
    ]
    assert sorted(p.relative_to(course.data).as_posix() for p in course.data.rglob("*") if p.is_file()) == [
        MANIFEST,
        "labels/xor_test.npy",
        "xor/README.txt",
        "xor/test_points.npy",
    ]
    points = np.load(course.data / "xor" / "test_points.npy", allow_pickle=False)
    labels = course.held_out_labels("xor_test")
    assert (points.shape, points.dtype, labels.shape, labels.dtype) == ((400, 2), np.float64, (400,), np.int64)
    assert np.array_equal(labels, (points[:, 0] * points[:, 1] < 0).astype(np.int64))
    assert 180 <= labels.sum() <= 220  # both classes, about half each
    quadrants = np.bincount((points[:, 0] > 0) * 2 + (points[:, 1] > 0), minlength=4)
    assert quadrants.min() >= 80  # every cloud is there
    again_points, again_labels = build()
    assert np.array_equal(points, again_points) and np.array_equal(labels, again_labels)
    binds = read_only_binds(course)
    assert {inside: host for host, inside in binds if str(inside).startswith("/course-data")} == {
        "/course-data/xor": course.data / "xor"
    }


def test_transpose_is_staged_deterministically_with_music21s_targets_held_out(tmp_path):
    """Lab 6's transposition: public melodies and intervals in data/transpose/, the targets in data/labels/,
    equal to music21's transposition of each melody as a whole stream (not the module's note-by-note route)."""
    from music21 import note, stream

    from autograder.data.transpose import build

    course = new_course(tmp_path / "course")
    lines: list[str] = []
    assert stage_all(course.data, datasets=["transpose"], log=lines.append) == ["transpose"]
    assert lines == [
        "transpose: staged 3 files from generated: 300 melodies in 6 keys, 6 intervals, seed 20241206, "
        "music21's transposition"
    ]
    assert sorted(p.relative_to(course.data).as_posix() for p in course.data.rglob("*") if p.is_file()) == [
        MANIFEST,
        "labels/transpose_test.npy",
        "transpose/README.txt",
        "transpose/test_inputs.json",
    ]
    document = json.loads((course.data / "transpose" / "test_inputs.json").read_text())
    labels = course.held_out_labels("transpose_test")
    vocabulary, examples = document["vocabulary"], document["examples"]
    assert vocabulary[:3] == ["<pad>", "<bos>", "<eos>"] and len(set(vocabulary)) == len(vocabulary)
    assert labels.dtype == np.int64 and labels.shape == (sum(len(e["notes"]) + 1 for e in examples),)
    assert "labels" not in json.dumps(document) and not any("target" in e for e in examples)
    targets = []
    for example in examples:
        melody = stream.Stream([note.Note(name) for name in example["notes"]])
        targets += [n.pitch.nameWithOctave for n in melody.transpose(example["interval"]).notes] + ["<eos>"]
    assert [vocabulary[i] for i in labels] == targets
    assert {e["interval"] for e in examples} == set(document["intervals"]) and len(examples) == 300
    assert {len(e["notes"]) for e in examples} == set(range(4, 11))
    assert sum(a != b for e in examples for a, b in zip(e["notes"], e["notes"][1:], strict=False)) > 1000
    spelled = {vocabulary[i] for i in labels}
    assert {"G#4", "D#5", "B-4", "E-5"} <= spelled  # sharps and flats as music21 spells the new keys
    again_document, again_labels = build()
    assert again_document == document and np.array_equal(again_labels, labels)
    binds = read_only_binds(course)
    assert {inside: host for host, inside in binds if str(inside).startswith("/course-data")} == {
        "/course-data/transpose": course.data / "transpose"
    }

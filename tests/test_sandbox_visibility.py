"""Nothing held out is visible in the grading sandbox, wherever it lives (judged from the host).

A kernel started exactly as grading starts one (the runner's job spec: its binds, environment
and limits, through the grading executor) walks every file it can see and reports sizes and,
for the files whose size could match, sha256 hashes; gzip files and zip members (npz) count by
their decompressed content too. The host compares those hashes with every held-out file: the
course's labels (and their raw label values), references, source notebooks and gradebook, and
the copies system packages install (Debian's Fashion-MNIST test labels, raw and decompressed).
Two control files in the public data, one raw and one gzipped, must be found: a walk that
hashes nothing cannot pass.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from autograder.course import Course
from autograder.data import FASHION_MNIST_SOURCE, stage_all
from autograder.executors.sandbox import probe
from autograder.grading.kernel_policy import SANDBOX_DATA, make_executor
from autograder.grading.lab import LabContext

pytestmark = pytest.mark.skipif(not probe().available, reason=f"no sandbox here: {probe().reason}")

DEBIAN_TEST_LABELS = FASHION_MNIST_SOURCE / "t10k-labels-idx1-ubyte.gz"
LAB = "tiny"
MIN_FILES = 20_000  # the venv alone holds ~60k files: a walk seeing fewer saw too little

# Runs inside the sandboxed kernel: walk /, following links (each file once), and report.
WALKER = r"""
import hashlib, json, os, stat, time, zipfile, zlib
SIZES = set(%(sizes)r)
SKIP = ("/proc", "/sys", "/dev")
def skipped(path):
    return any(path == s or path.startswith(s + "/") for s in SKIP)
def digest(chunks):
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()
def read_all(fh):
    return iter(lambda: fh.read(1 << 20), b"")
def gunzip(fh):
    fh.seek(0)
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for chunk in read_all(fh):
        yield d.decompress(chunk)
        while d.eof and d.unused_data:   # a multi-member gzip
            rest, d = d.unused_data, zlib.decompressobj(16 + zlib.MAX_WBITS)
            yield d.decompress(rest)
    yield d.flush()
began = time.monotonic()
counts = dict(dirs=0, files=0, readable=0, unreadable=0, gzip=0, zip=0, hashed=0, dir_errors=0)
seen, hashes, stack = set(), [], ["/"]
while stack:
    folder = stack.pop()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        counts["dir_errors"] += 1
        continue
    counts["dirs"] += 1
    for entry in entries:
        path = entry.path
        if skipped(path):
            continue
        try:
            st = os.stat(path)   # follows links
        except OSError:
            continue             # a dangling link
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        if stat.S_ISDIR(st.st_mode):
            if not skipped(os.path.realpath(path)):
                stack.append(path)
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        counts["files"] += 1
        try:
            fh = open(path, "rb")
        except OSError:
            counts["unreadable"] += 1
            continue
        with fh:
            counts["readable"] += 1
            head = fh.read(4)
            if st.st_size in SIZES:
                fh.seek(0)
                hashes.append([path, "raw", digest(read_all(fh))])
            try:
                if head[:2] == b"\x1f\x8b" and st.st_size >= 18:
                    counts["gzip"] += 1
                    fh.seek(-4, 2)
                    if int.from_bytes(fh.read(4), "little") in SIZES:   # ISIZE: the size mod 2**32
                        hashes.append([path, "gunzip", digest(gunzip(fh))])
                elif head == b"PK\x03\x04":
                    counts["zip"] += 1
                    fh.seek(0)
                    with zipfile.ZipFile(fh) as archive:
                        for info in archive.infolist():
                            if info.file_size in SIZES:
                                with archive.open(info) as member:
                                    hashes.append([path + "!" + info.filename, "unzip", digest(read_all(member))])
            except (OSError, EOFError, zlib.error, zipfile.BadZipFile, ValueError, NotImplementedError) as err:
                hashes.append([path, "error", repr(err)])
counts["hashed"] = len(hashes)
counts["seconds"] = round(time.monotonic() - began, 2)
print(json.dumps({"counts": counts, "hashes": hashes}))
"""

ATTACK = r"""
import gzip, json, os
found = {}
for path in ["/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", "%(data)s/labels/fashion_mnist_test.npy"]:
    try:
        with gzip.open(path) if path.endswith(".gz") else open(path, "rb") as fh:
            found[path] = "read %%d bytes" %% len(fh.read())
    except Exception as err:
        found[path] = type(err).__name__
listings = {}
for folder in ["/usr", "/usr/share", "/usr/share/datasets", "%(data)s"]:
    try:
        listings[folder] = sorted(os.listdir(folder))
    except Exception as err:
        listings[folder] = type(err).__name__
print(json.dumps({"open": found, "list": listings}))
"""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def course(tiny_course, tmp_path_factory) -> Course:
    """The built tiny course, copied, with real staged data: Fashion-MNIST where Debian's package
    is installed, plus a held-out data/labels/x.npy and a public data set holding two controls."""
    root = tmp_path_factory.mktemp("visibility") / "course"
    shutil.copytree(tiny_course.root, root)
    course = Course.load(root)
    if FASHION_MNIST_SOURCE.is_dir():
        assert stage_all(course.data, datasets=["fashion_mnist"]) == ["fashion_mnist"]
    (course.data / "labels").mkdir(parents=True, exist_ok=True)
    np.save(course.data / "labels" / "x.npy", np.arange(40, 1040, dtype=np.int64) % 7)
    public = course.data / "public_set"
    public.mkdir()
    rng = np.random.default_rng(0)
    (public / "control.bin").write_bytes(rng.bytes(4321))
    (public / "control.bin.gz").write_bytes(gzip.compress(rng.bytes(5432)))
    return course


def held_out(course: Course) -> tuple[dict[str, str], set[int]]:
    """sha256 → what it is, for every held-out file and the label values inside them; and their sizes."""
    targets: dict[str, str] = {}
    sizes: set[int] = set()

    def add(data: bytes, what: str) -> None:
        targets.setdefault(sha256(data), what)
        sizes.add(len(data))

    files = [
        *sorted((course.data / "labels").glob("*.npy")),  # held-out labels
        *sorted(p for p in course.private.rglob("*") if p.is_file()),  # private/: references
        *sorted(p for p in course.source.rglob("*") if p.is_file()),  # solutions, hidden tests
        course.root / "gradebook.db",
    ]
    for path in files:
        add(path.read_bytes(), str(path))
        if path.suffix == ".npy":
            labels = np.load(path)
            add(labels.tobytes(), f"{path} (its values as int64)")
            if labels.min() >= 0 and labels.max() < 256:
                add(labels.astype(np.uint8).tobytes(), f"{path} (its values as uint8)")
    for path in sorted(Path("/usr/share/datasets").rglob("*labels*")) if Path("/usr/share/datasets").is_dir() else []:
        if "t10k" in path.name or "test" in path.name:
            raw = path.read_bytes()
            add(raw, str(path))
            if raw[:2] == b"\x1f\x8b":
                add(gzip.decompress(raw), f"{path} (decompressed)")
                add(gzip.decompress(raw)[8:], f"{path} (decompressed, the IDX header cut)")
    return targets, sizes


def run_in_grading_sandbox(course: Course, source: str):
    """One cell in a kernel that the grading executor starts for this lab; its result."""
    context = LabContext.load(course, LAB)
    executor = make_executor(context.job_spec(), context.settings, jobs=1, workers=1)
    try:
        result = executor.execute(new_notebook(cells=[new_code_cell(source)]), "visibility")
    finally:
        executor.close()
    assert (result.status, result.reason, result.sandboxed, result.cell_errors) == ("completed", None, True, {})
    text = "".join(o.get("text", "") for o in result.notebook.cells[0].outputs if o.get("name") == "stdout")
    return json.loads(text.strip().splitlines()[-1])


def test_nothing_held_out_is_readable_in_the_sandbox(course):
    if FASHION_MNIST_SOURCE.is_dir():
        assert DEBIAN_TEST_LABELS.is_file()
    targets, sizes = held_out(course)
    public = course.data / "public_set"
    controls = {
        sha256((public / "control.bin").read_bytes()): "raw",
        sha256(gzip.decompress((public / "control.bin.gz").read_bytes())): "gunzip",
    }
    sizes |= {4321, 5432}
    report = run_in_grading_sandbox(course, WALKER % {"sizes": sorted(sizes)})
    counts, hashes = report["counts"], report["hashes"]
    print(f"\nsandbox walk: {counts}; {len(targets)} held-out hashes, {len(sizes)} sizes")
    matches = [(path, how, targets[value]) for path, how, value in hashes if value in targets]
    assert matches == [], f"held-out content readable in the sandbox: {matches}"
    found = {(Path(path).name, how) for path, how, value in hashes if value in controls}
    assert found == {("control.bin", "raw"), ("control.bin.gz", "gunzip")}, (found, counts)
    assert [h for h in hashes if h[1] == "error"] == []
    assert counts["files"] >= MIN_FILES and counts["readable"] >= MIN_FILES, counts
    assert counts["unreadable"] == 0 and counts["dir_errors"] == 0, counts


def test_the_debian_labels_attack_finds_nothing(course):
    """What the lab-3 submission did: read Debian's Fashion-MNIST test labels (and look for them)."""
    report = run_in_grading_sandbox(course, ATTACK % {"data": SANDBOX_DATA})
    print(f"\n{report}")
    assert set(report["open"].values()) == {"FileNotFoundError"}, report
    assert "datasets" not in report["list"]["/usr/share"], report
    assert report["list"]["/usr/share/datasets"] == "FileNotFoundError", report
    assert "share" in report["list"]["/usr"] and "labels" not in report["list"][SANDBOX_DATA], report
    assert "public_set" in report["list"][SANDBOX_DATA], report  # the public data is there: the view is real

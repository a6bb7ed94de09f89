"""The student kit (autograder/kit.py): a real kit of this course, scanned for everything private.

The kit is made once per session from a temporary course holding this repository's source/,
its committed release/ and data staged by the project's own `autograder data` (stage_all), and no
private/: a kit that needed the private references could not be made from it.

The scanner reads EVERY file of the kit, every member of the wheel (a zip) and the strings of
every JSON document (notebooks), and reports findings (file, kind) of four kinds of secret:

- solution: lines (stripped, >= 12 characters, not comments) found only inside `### BEGIN
  SOLUTION` regions of the source notebooks;
- hidden-test: lines found only inside `### BEGIN HIDDEN TESTS` regions;
- hidden-reference: the base64 payload of every hidden check's reference (private/<lab>/
  references.json), and the repr of each distinctive float in it (not integral, 8 characters or
  more); a value that a public check of the course also carries is public by design and left out;
- labels: the bytes of data/labels/*.npy (whole files, and windows of the arrays' raw bytes, as
  int64 and as uint8) and windows of Debian's Fashion-MNIST test labels (decompressed).

Hidden references come from this repository's private/ when it is built there; a lab without
them is built in a temporary copy (slow: a CI checkout has no private/). test_scanner_finds_*
plants each kind of secret into a copy of the kit and proves the scanner reports it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import numpy as np
import pytest

from autograder import __version__
from autograder.authoring.pipeline import copy_course_skeleton
from autograder.cells import BEGIN_HIDDEN, BEGIN_SOLUTION, END_HIDDEN, END_SOLUTION, marker_lines
from autograder.checks.notebook_metadata import course_metadata, read_notebook_json
from autograder.checks.observation import decode, encode
from autograder.course import Course
from autograder.data import FASHION_MNIST_SOURCE, stage_all
from autograder.kit import MARKER, KitError, build_student_wheel, make_kit
from autograder.references import load_references
from conftest import REPO, build_repo_lab

LABS = sorted(p.name for p in (REPO / "source").iterdir() if p.is_dir() and list(p.glob("*.ipynb")))
WHEEL = f"autograder_student-{__version__}-py3-none-any.whl"
LINE_MIN = 12
LINE_ANYWHERE = 60  # a solution or hidden-test line this long is a leak anywhere, not only as a whole line
FLOAT_MIN = 8  # characters of a float's repr: shorter ones (0.5, 0.25, 1e-06) prove nothing
FLOAT_TOKEN = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
PRINTABLE_RUN = re.compile(rb"[\t\x20-\x7e]{8,}")
LABEL_BITS = 192  # a label window holds at least this much information, so chance matches are negligible
FORBIDDEN_DEPENDENCIES = {"nbgrader", "ray", "nvidia-ml-py"}


# ------------------------------------------------------------------------------------------ scanner


@dataclass(frozen=True)
class Finding:
    file: str  # relative to the kit; a wheel member as "wheels/x.whl!member"
    kind: str  # solution, hidden-test, hidden-reference, labels
    what: str  # a short description of the needle


@dataclass
class Secrets:
    lines: dict[str, set[str]] = field(default_factory=dict)  # kind -> stripped lines
    strings: dict[str, set[str]] = field(default_factory=dict)  # kind -> substrings (payloads)
    floats: dict[str, set[str]] = field(default_factory=dict)  # kind -> float reprs (matched as tokens)
    windows: dict[str, dict[bytes, str]] = field(default_factory=dict)  # kind -> byte needle -> description


def documents(kit: Path):
    """(name, bytes) of every file of the kit, and of every member of every zip in it."""
    for path in sorted(kit.rglob("*")):
        if path.is_symlink() or not path.is_file():
            assert not path.is_symlink(), f"{path} is a symbolic link"
            continue
        name = path.relative_to(kit).as_posix()
        data = path.read_bytes()
        yield name, data
        if zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for member in archive.namelist():
                    yield f"{name}!{member}", archive.read(member)


def text_views(name: str, data: bytes) -> list[str]:
    """The texts a secret could hide in: the file as UTF-8 (or its printable runs when binary), and
    the strings of a JSON document (a notebook's sources, outputs and metadata) unescaped."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # every byte of an ASCII needle is printable, so it lies inside one printable run
        return ["\n".join(run.decode("ascii") for run in PRINTABLE_RUN.findall(data))]
    views = [text]
    if name.endswith((".ipynb", ".json")):
        try:
            document = json.loads(text)
        except ValueError:
            return views
        views.append("\n".join(_json_strings(document)))
    return views


def _json_strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _json_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _json_strings(item)
    elif isinstance(value, float):
        yield repr(value)


def scan(kit: Path, secrets: Secrets) -> list[Finding]:
    """Findings in the kit. Lines match whole (stripped) lines of a text, as check_release decides,
    or anywhere when LINE_ANYWHERE characters or longer, or anywhere in a binary file's printable
    runs (a line has no business there at all); a formula shown in a hint or in prose, such as
    `out = x @ W + b`, is not a leak. Strings match anywhere, floats as whole number tokens and
    byte windows anywhere in the raw bytes."""
    found: set[Finding] = set()
    for name, data in documents(kit):
        for kind, windows in secrets.windows.items():
            found.update(Finding(name, kind, what) for needle, what in windows.items() if needle in data)
        binary = not _is_text(data)
        for view in text_views(name, data):
            tokens = set(FLOAT_TOKEN.findall(view))
            lines = {line.strip() for line in view.splitlines()}
            for kind, numbers in secrets.floats.items():
                found.update(Finding(name, kind, f"float {token}") for token in tokens & numbers)
            for kind, needles in secrets.lines.items():
                found.update(Finding(name, kind, line[:60]) for line in lines & needles)
                found.update(
                    Finding(name, kind, line[:60])
                    for line in needles
                    if (binary or len(line) >= LINE_ANYWHERE) and line in view
                )
            for kind, needles in secrets.strings.items():
                found.update(Finding(name, kind, needle[:60]) for needle in needles if needle in view)
        if binary and not data.isascii():  # non-ASCII needles against a binary file's raw bytes
            for kind, needles in list(secrets.lines.items()) + list(secrets.strings.items()):
                found.update(Finding(name, kind, n[:60]) for n in needles if not n.isascii() and n.encode() in data)
    return sorted(found, key=lambda f: (f.file, f.kind, f.what))


def _is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# ------------------------------------------------------------------------------------------ secrets


def region_only_lines(notebooks: list[Path]) -> tuple[set[str], set[str]]:
    """(solution lines, hidden-test lines): inside their regions in some source notebook and
    nowhere outside a region in any of them (a line also written outside proves nothing)."""
    solution: set[str] = set()
    hidden: set[str] = set()
    outside: set[str] = set()
    for path in notebooks:
        for cell in nbformat.read(path, as_version=4).cells:
            regions = {
                "solution": marker_lines(cell.source, BEGIN_SOLUTION, END_SOLUTION),
                "hidden": marker_lines(cell.source, BEGIN_HIDDEN, END_HIDDEN),
            }
            inside = {kind: {n for a, b in pairs for n in range(a + 1, b)} for kind, pairs in regions.items()}
            for number, line in enumerate(cell.source.splitlines(), start=1):
                if number in inside["solution"]:
                    solution.add(line.strip())
                elif number in inside["hidden"]:
                    hidden.add(line.strip())
                else:
                    outside.add(line.strip())

    def keep(lines: set[str]) -> set[str]:
        return {line for line in lines - outside if len(line) >= LINE_MIN and not line.startswith("#")}

    return keep(solution), keep(hidden)


def distinctive_floats(value) -> set[str]:
    """The reprs of a value's floats that say something: not integral, 8 characters or more."""
    found: set[str] = set()
    if isinstance(value, np.ndarray):
        if value.dtype.kind != "f":
            return found
        flat = np.unique(value.ravel())
        for item in flat:
            x = float(item)
            if math.isfinite(x) and x != round(x):
                found.update(s for s in (repr(x), str(item)) if len(s) >= FLOAT_MIN)  # float64 and float32 reprs
        return found
    if isinstance(value, float) and math.isfinite(value) and value != round(value):
        return {repr(value)} if len(repr(value)) >= FLOAT_MIN else set()
    if isinstance(value, dict):
        return set().union(*(distinctive_floats(v) for v in value.values())) if value else found
    if isinstance(value, list | tuple):
        return set().union(*(distinctive_floats(v) for v in value)) if value else found
    return found


def label_windows(values: np.ndarray, origin: str) -> dict[bytes, str]:
    """Windows from the middle of an array of labels, as int64 and as uint8, long enough to carry
    LABEL_BITS of information (binary labels need more of them than ten classes)."""
    windows: dict[bytes, str] = {}
    values = np.asarray(values).ravel()
    classes = len(np.unique(values))
    if classes < 2:
        return windows
    count = math.ceil(LABEL_BITS / math.log2(classes))
    if values.size < 2 * count:
        return windows
    middle = values.size // 2
    for dtype in ("<i8", "u1"):
        if dtype == "u1" and (values.min() < 0 or values.max() > 255):
            continue
        for start in (middle, values.size // 4, values.size - count - 1):
            window = values[start : start + count].astype(dtype).tobytes()
            windows[window] = f"{origin}[{start}:{start + count}] as {dtype}"
    return windows


def debian_test_labels() -> bytes:
    for name in ("t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte"):
        path = FASHION_MNIST_SOURCE / name
        if path.is_file():
            return gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
    pytest.fail(f"{FASHION_MNIST_SOURCE} has no t10k-labels-idx1-ubyte[.gz]: install dataset-fashion-mnist")


def public_values(kit: Path) -> tuple[set[str], set[str]]:
    """(payload data strings, float reprs) of every public check the kit's notebooks carry."""
    payloads: set[str] = set()
    floats: set[str] = set()
    for notebook in sorted((kit / "labs").rglob("*.ipynb")):
        for payload in course_metadata(read_notebook_json(notebook))["public_references"]["checks"].values():
            if isinstance(payload.get("data"), str):
                payloads.add(payload["data"])
            floats |= distinctive_floats(decode(payload).value)
    return payloads, floats


def collect_secrets(course: Course, kit: Path, references: dict[str, dict]) -> Secrets:
    solution, hidden = region_only_lines(sorted(course.source.glob("*/*.ipynb")))
    public_payloads, public_floats = public_values(kit)
    payloads: set[str] = set()
    floats: set[str] = set()
    public = "\n".join(sorted(public_payloads))
    for refs in references.values():
        for ref in refs.values():
            if not ref.hidden:
                continue
            data = encode(ref.observation)["data"]
            if isinstance(data, str) and len(data) >= 24 and data not in public_payloads:
                payloads.add(data)
                window = data[len(data) // 2 : len(data) // 2 + 64]  # the tensor's bytes, past the header
                if len(data) >= 256 and window not in public:  # a run of zeros, say, is in public ones too
                    payloads.add(window)
            floats |= distinctive_floats(ref.observation.value) - public_floats
    windows: dict[bytes, str] = {}
    for path in sorted((course.data / "labels").glob("*.npy")):
        windows[path.read_bytes()] = f"the whole file data/labels/{path.name}"
        windows.update(label_windows(np.load(path, allow_pickle=False), f"data/labels/{path.name}"))
    debian = debian_test_labels()
    windows[debian] = "Debian's whole t10k-labels-idx1-ubyte"
    for start in range(8, len(debian) - 64, (len(debian) - 72) // 6):
        windows[debian[start : start + 64]] = f"Debian's t10k-labels-idx1-ubyte[{start}:{start + 64}]"
    return Secrets(
        lines={"solution": solution, "hidden-test": hidden},
        strings={"hidden-reference": payloads},
        floats={"hidden-reference": floats},
        windows={"labels": windows},
    )


# ------------------------------------------------------------------------------------------ fixtures


def hidden_references(tmp_path_factory) -> dict[str, dict]:
    """lab -> its private references: this repository's private/ where built, else a fresh build
    (the one the lab's own tests use: conftest.build_repo_lab builds each lab once per run)."""
    references = {}
    for lab in LABS:
        file = REPO / "private" / lab / "references.json"
        if not file.is_file():
            file = build_repo_lab(tmp_path_factory, lab).references_file(lab)
        references[lab] = load_references(file)
    return references


@pytest.fixture(scope="session")
def kit_course(tmp_path_factory) -> Course:
    """This course's source/ and committed release/, data staged by `autograder data`, no private/."""
    unbuilt = [lab for lab in LABS if not list((REPO / "release" / lab).glob("*.ipynb"))]
    if unbuilt:
        pytest.fail(f"release/ of {', '.join(unbuilt)} is not built: run `autograder build` (it is committed)")
    root = copy_course_skeleton(REPO, tmp_path_factory.mktemp("kit-course"))
    for lab in LABS:
        shutil.copytree(REPO / "release" / lab, root / "release" / lab, ignore=shutil.ignore_patterns("*.json"))
    course = Course.load(root)
    staged = stage_all(course.data, download=False)
    assert {"fashion_mnist", "colored_fashion_mnist", "xor"} <= set(staged), staged
    return course


@pytest.fixture(scope="session")
def kit(kit_course, tmp_path_factory):
    output = tmp_path_factory.mktemp("kits") / "kit"
    report = make_kit(kit_course, None, output)
    return output, report


@pytest.fixture(scope="session")
def secrets(kit_course, kit, tmp_path_factory) -> Secrets:
    return collect_secrets(kit_course, kit[0], hidden_references(tmp_path_factory))


# ------------------------------------------------------------------------------------------ tests


def test_nothing_private_in_the_kit(kit, secrets):
    findings = scan(kit[0], secrets)
    assert not findings, "private material in the kit:\n" + "\n".join(f"{f.file}: {f.kind}: {f.what}" for f in findings)


def test_the_secrets_are_worth_looking_for(secrets):
    """The scan above proves something only if there was something to find."""
    assert len(secrets.lines["solution"]) > 50 and len(secrets.lines["hidden-test"]) > 20
    assert len(secrets.strings["hidden-reference"]) > 20 and len(secrets.floats["hidden-reference"]) > 50
    assert any("Debian" in what for what in secrets.windows["labels"].values())
    assert sum("data/labels/" in what for what in secrets.windows["labels"].values()) > 8


def test_scanner_finds_planted_secrets(kit, secrets, tmp_path):
    """Each kind of secret, planted where a careless build could put it, is reported with its file."""
    copy = tmp_path / "kit"
    shutil.copytree(kit[0], copy)
    solution = sorted(secrets.lines["solution"])[len(secrets.lines["solution"]) // 2]
    hidden = sorted(secrets.lines["hidden-test"])[0]
    payload = max(secrets.strings["hidden-reference"], key=len)
    number = sorted(secrets.floats["hidden-reference"])[0]
    label, _ = next((w, d) for w, d in secrets.windows["labels"].items() if "data/labels/" in d and "[" in d)
    debian, _ = next((w, d) for w, d in secrets.windows["labels"].items() if "Debian's t10k" in d)

    notebook = next((copy / "labs").rglob("*.ipynb"))  # in a cell's source: JSON-escaped on disk
    nb = json.loads(notebook.read_text())
    nb["cells"][-1]["source"] = ["x = 1\n", "    " + solution + "\n"]
    notebook.write_text(json.dumps(nb, indent=1))
    wheel = copy / "wheels" / WHEEL  # a wheel member
    with zipfile.ZipFile(wheel, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("autograder/student/leak.py", f"def f():\n    {hidden}\n")
    (copy / "README.md").write_text((copy / "README.md").read_text() + f"\nref: {payload}\nvalue = [{number}]\n")
    (copy / "data" / "xor" / "extra.npy").write_bytes(b"\x93NUMPY" + os.urandom(100) + label + os.urandom(7))
    (copy / "data" / "xor" / "raw.bin").write_bytes(os.urandom(33) + debian)

    findings = scan(copy, secrets)
    assert {(f.file, f.kind) for f in findings} == {
        (f"labs/{notebook.parent.name}/{notebook.name}", "solution"),
        (f"wheels/{WHEEL}!autograder/student/leak.py", "hidden-test"),
        ("README.md", "hidden-reference"),
        ("data/xor/extra.npy", "labels"),
        ("data/xor/raw.bin", "labels"),
    }
    assert {f.what for f in findings if f.file == "README.md"} >= {payload[:60], f"float {number}"}


def test_kit_layout(kit, kit_course):
    output, report = kit
    assert sorted(p.name for p in output.iterdir()) == sorted([MARKER, "README.md", "data", "labs", "wheels"])
    for lab in LABS:
        released = sorted(p.name for p in (REPO / "release" / lab).glob("*.ipynb"))
        assert sorted(p.name for p in (output / "labs" / lab).iterdir()) == released
        for name in released:
            assert (output / "labs" / lab / name).read_bytes() == (REPO / "release" / lab / name).read_bytes()
            course_metadata(read_notebook_json(output / "labs" / lab / name))  # its public references travel inside
    assert not list(output.rglob("public_references.json"))
    assert sorted(p.name for p in (output / "data").iterdir()) == report.datasets
    assert set(report.datasets) == {"colored_fashion_mnist", "fashion_mnist", "transpose", "xor"}
    assert "mnist" in report.missing  # optional, not staged without a network: said, not fatal
    for key in report.datasets:  # the same files as data/<key>/, byte for byte
        staged = sorted(p.relative_to(kit_course.data / key) for p in (kit_course.data / key).rglob("*") if p.is_file())
        shipped = sorted(
            p.relative_to(output / "data" / key) for p in (output / "data" / key).rglob("*") if p.is_file()
        )
        assert shipped == staged
    assert [p.name for p in (output / "wheels").iterdir()] == [WHEEL]
    readme = (output / "README.md").read_text()
    for phrase in (
        "python -m venv .venv",
        f"pip install 'wheels/{WHEEL}[jupyter]'",
        "python -m ipykernel install --user --name",
        "jupyter lab labs/",
        "autograder validate labs/",
        "- 4:",
        "Submit the notebook file",
    ):
        assert phrase in readme
    assert (output.stat().st_mode & 0o055) == (0o755 & ~_umask() & 0o055)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_no_file_of_source_private_or_solutions(kit, kit_course):
    folders = [REPO / "source", REPO / "private", REPO / "solutions", REPO / "data" / "labels"]
    private = {}
    for folder in [*folders, kit_course.data / "labels"]:
        for path in folder.rglob("*") if folder.is_dir() else []:
            if path.is_file() and path.stat().st_size:
                private[hashlib.sha256(path.read_bytes()).hexdigest()] = path
    assert len(private) >= 2 * len(LABS), "nothing to compare with"
    shipped = {name: hashlib.sha256(data).hexdigest() for name, data in documents(kit[0])}
    leaked = {name: private[digest] for name, digest in shipped.items() if digest in private}
    assert not leaked


def test_the_wheel(kit):
    with zipfile.ZipFile(kit[0] / "wheels" / WHEEL) as archive:
        names = archive.namelist()
        metadata = archive.read(f"autograder_student-{__version__}.dist-info/METADATA").decode()
        entry_points = archive.read(f"autograder_student-{__version__}.dist-info/entry_points.txt").decode()
        init = archive.read("autograder/__init__.py").decode()
    dist_info = f"autograder_student-{__version__}.dist-info/"
    allowed = ("autograder/checks/", "autograder/student/", dist_info)
    assert [n for n in names if not (n == "autograder/__init__.py" or n.startswith(allowed))] == []
    assert "autograder/checks/by_hand/judge.py" in names and "autograder/student/cli.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "/test_" in n]
    local = {p.relative_to(REPO).as_posix() for p in (REPO / "autograder" / "checks").rglob("*.py")}
    local |= {p.relative_to(REPO).as_posix() for p in (REPO / "autograder" / "student").rglob("*.py")}
    assert {n for n in names if n.endswith(".py")} - {"autograder/__init__.py"} == local
    assert init == f'"""{sys.modules["autograder"].__doc__.strip()}"""\n\n__version__ = "{__version__}"\n'

    assert "Name: autograder-student" in metadata and f"Version: {__version__}" in metadata
    requires_python = re.search(r"^Requires-Python: (.+)$", metadata, re.M)
    assert requires_python and set(requires_python.group(1).split(",")) == {">=3.11", "<3.14"}
    requirements = re.findall(r"^Requires-Dist: (.+)$", metadata, re.M)
    names_of = {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower().replace("_", "-") for r in requirements}
    assert names_of >= {"torch", "torchvision", "numpy", "nbformat", "nbclient", "ipykernel", "typer", "jupyterlab"}
    assert not names_of & FORBIDDEN_DEPENDENCIES
    assert not [r for r in requirements if "==" in r.split(";")[0]], "the student wheel pins nothing exactly"
    assert [r for r in requirements if r.startswith("jupyterlab")] == ['jupyterlab<5,>=4; extra == "jupyter"']
    assert "autograder = autograder.student.cli:app" in entry_points


def test_the_wheel_is_reproducible(kit, tmp_path):
    again = build_student_wheel(tmp_path)
    assert again.name == WHEEL
    assert again.read_bytes() == (kit[0] / "wheels" / WHEEL).read_bytes()


def _autograder(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "autograder"), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=dict(os.environ, COLUMNS="200"))


def test_an_unbuilt_lab_is_refused(tmp_path):
    root = copy_course_skeleton(REPO, tmp_path / "course", ["lab1_cross_entropy"])
    run = _autograder("kit", "lab1_cross_entropy", "--output", str(tmp_path / "kit"), cwd=root)
    assert run.returncode == 1, run.stdout + run.stderr
    message = " ".join((run.stdout + run.stderr).split())
    assert "lab 'lab1_cross_entropy' is not built" in message
    assert "run `autograder build lab1_cross_entropy` first" in message
    assert not (tmp_path / "kit").exists() and not list(tmp_path.glob(".kit*"))  # no half kit left
    unknown = _autograder("kit", "no_such_lab", "--output", str(tmp_path / "kit"), cwd=root)
    assert unknown.returncode == 1 and "no lab 'no_such_lab'" in unknown.stdout + unknown.stderr


def test_data_sets_not_staged(tmp_path):
    """A required data set a lab reads (Fashion-MNIST for lab3) stops the kit and names `autograder
    data`; an optional one (xor for lab2) is left out and said so; a lab reading none needs no data/."""
    labs = ["lab1_cross_entropy", "lab2_backprop_xor", "lab3_mnist_lenet"]
    root = copy_course_skeleton(REPO, tmp_path / "course", labs)
    for name in labs:
        shutil.copytree(REPO / "release" / name, root / "release" / name)
    course = Course.load(root)
    with pytest.raises(
        KitError, match=r"lab 'lab3_mnist_lenet' reads the data set 'fashion_mnist' .* `autograder data`"
    ):
        make_kit(course, labs, tmp_path / "kit")
    assert not (tmp_path / "kit").exists() and not list(tmp_path.glob(".kit*"))
    report = make_kit(course, labs[:2], tmp_path / "kit")
    assert report.datasets == [] and not (tmp_path / "kit" / "data").exists()
    assert list(report.missing) == ["xor"] and "lab2_backprop_xor" in report.missing["xor"]
    assert "`xor`" in (tmp_path / "kit" / "README.md").read_text()


def test_output_folders(tmp_path):
    lab = "lab1_cross_entropy"
    root = copy_course_skeleton(REPO, tmp_path / "course", [lab])
    shutil.copytree(REPO / "release" / lab, root / "release" / lab)
    course = Course.load(root)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(KitError, match="not a kit made by `autograder kit`.*--force"):
        make_kit(course, [lab], other)
    assert (other / "mine.txt").read_text() == "keep me"

    output = tmp_path / "kit"
    make_kit(course, [lab], output)
    (output / "labs" / lab / "stale.ipynb").write_text("{}")
    make_kit(course, [lab], output)  # a previous kit is replaced whole
    assert not (output / "labs" / lab / "stale.ipynb").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["course", "kit", "notes"]  # no temporary sibling left
    make_kit(course, [lab], other, force=True)
    assert not (other / "mine.txt").exists() and (other / "README.md").is_file()
    for folder in (root, root.parent, root / "release", root / "source" / "kit"):  # --force never touches the course
        with pytest.raises(KitError, match="the course's own files"):
            make_kit(course, [lab], folder, force=True)
    assert (root / "source" / lab).is_dir() and not (root / "source" / "kit").exists()

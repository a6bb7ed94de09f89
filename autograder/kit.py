"""`autograder kit`: what a student downloads, in one folder.

    DIR/README.md                       how to install, open, check, validate and submit
    DIR/labs/<lab>/<nb>.ipynb           the release notebooks, as built (they carry their public references)
    DIR/data/<key>/...                  the public data folders the kit's labs read (never data/labels/)
    DIR/wheels/autograder_student-<version>-py3-none-any.whl

A notebook's `DATA = Path(os.environ.get("AUTOGRADER_DATA", "../../data"))` finds DIR/data from
DIR/labs/<lab>/. The wheel (`autograder-student`, packaging/student/pyproject.toml) holds
autograder/__init__.py (docstring and version only), autograder/checks/** and
autograder/student/**: the public checks and `autograder validate`, nothing of the build, the
grader, the references or nbgrader.

What goes in is chosen by name, never by "everything but": only *.ipynb of release/<lab>/, only
the data folders a lab's code names (as grading's check_course_data decides), only the .py files
of the two packages. source/, solutions/, private/ and data/labels/ are never read. The kit is
written into a temporary sibling of DIR and renamed into place, so a failed run leaves no half
kit that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import __doc__ as PACKAGE_DOC
from . import __version__
from .checks.accuracy import LABELS_FOLDER
from .checks.notebook_metadata import MetadataProblem, course_metadata, read_notebook_json
from .course import Course, CourseError

DISTRIBUTION = "autograder-student"
PACKAGE_ROOT = Path(__file__).resolve().parent
TEMPLATE = PACKAGE_ROOT.parent / "packaging" / "student" / "pyproject.toml"
VERSION_PLACEHOLDER = "@VERSION@"
STUDENT_PACKAGES = ("checks", "student")  # under autograder/, copied whole (.py files, no tests)
KERNEL_NAME = "autograder-student"
MARKER = ".autograder-kit.json"  # tells a previous kit (safe to replace) from any other folder
DEFAULT_EPOCH = 315532800  # 1980-01-01, the earliest time a zip file can hold: no build machine's clock


class KitError(CourseError):
    """The kit cannot be made (an unbuilt lab, a required data set not staged, a failed wheel build)."""


@dataclass
class KitReport:
    output: Path
    labs: list[str]
    notebooks: list[str] = field(default_factory=list)  # paths relative to output
    datasets: list[str] = field(default_factory=list)  # data/<key>/ folders copied
    missing: dict[str, str] = field(default_factory=dict)  # optional data set a lab names -> why absent
    wheel: Path | None = None

    def summary(self) -> list[str]:
        lines = [
            f"{len(self.notebooks)} notebook(s) of {len(self.labs)} lab(s): {', '.join(self.labs)}",
            f"data: {', '.join(self.datasets) or 'none'}",
        ]
        lines += [f"data set {key!r} not in the kit: {why}" for key, why in sorted(self.missing.items())]
        if self.wheel is not None:
            lines.append(f"wheel: wheels/{self.wheel.name}")
        return lines


# ---------------------------------------------------------------------------------------- the wheel


def build_student_wheel(output_dir: str | Path) -> Path:
    """Build autograder_student-<version>-py3-none-any.whl into output_dir; returns its path.

    Stages packaging/student/pyproject.toml (version filled in) with the student packages' .py
    files in a temporary folder and runs `pip wheel --no-deps --no-build-isolation` there
    (setuptools from this environment, no network). SOURCE_DATE_EPOCH (1980-01-01 unless set)
    keeps the build machine's clock out of the zip.
    """
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="autograder-student-") as tmp:
        staging = Path(tmp) / "src"
        _stage_student_sources(staging)
        wheels = Path(tmp) / "wheels"
        env = dict(os.environ, SOURCE_DATE_EPOCH=os.environ.get("SOURCE_DATE_EPOCH", str(DEFAULT_EPOCH)))
        env.pop("PIP_REQUIRE_VIRTUALENV", None)
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
        command += ["--disable-pip-version-check", "-q", "-w", str(wheels), str(staging)]
        run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp)
        built = sorted(wheels.glob("autograder_student-*.whl")) if wheels.is_dir() else []
        if run.returncode != 0 or len(built) != 1:
            tail = "\n".join((run.stdout + run.stderr).strip().splitlines()[-15:])
            raise KitError(
                f"building the {DISTRIBUTION} wheel failed (pip exit {run.returncode}; setuptools must be "
                f"installed in {sys.prefix}):\n{tail}"
            )
        target = output_dir / built[0].name
        shutil.copyfile(built[0], target)
    return target


def _stage_student_sources(staging: Path) -> None:
    template = TEMPLATE.read_text(encoding="utf-8")
    if VERSION_PLACEHOLDER not in template:
        raise KitError(f"{TEMPLATE} lacks the {VERSION_PLACEHOLDER} placeholder for the version")
    staging.mkdir(parents=True)
    (staging / "pyproject.toml").write_text(template.replace(VERSION_PLACEHOLDER, __version__), encoding="utf-8")
    package = staging / "autograder"
    package.mkdir()
    # Not a copy of autograder/__init__.py: whatever it grows stays out of the student's package.
    (package / "__init__.py").write_text(f'"""{(PACKAGE_DOC or "").strip()}"""\n\n__version__ = "{__version__}"\n')
    for name in STUDENT_PACKAGES:
        source = PACKAGE_ROOT / name
        target = package / name
        target.mkdir()
        if not source.is_dir():  # not written yet: an empty package, so the wheel still builds
            (target / "__init__.py").write_text("")
            continue
        for path in sorted(source.rglob("*.py")):
            relative = path.relative_to(source)
            if any(part in ("tests", "__pycache__") for part in relative.parts) or path.name.startswith("test_"):
                continue
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / relative)


# ---------------------------------------------------------------------------------------- the kit


def make_kit(course: Course, labs: list[str] | None, output: str | Path, *, force: bool = False) -> KitReport:
    """Write the student kit of `labs` (default: every lab) into `output`; see the module docstring.

    Raises KitError when a lab is not built, a required data set it reads is not staged, or
    `output` is a non-empty folder that is not a previous kit (unless force).
    """
    labs = list(dict.fromkeys(labs or course.labs()))
    output = Path(output).resolve()
    _check_output(course, output, force)
    notebooks = {lab: _release_notebooks(course, lab) for lab in labs}
    datasets, missing = _datasets_read(course, notebooks)

    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    try:
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's 0700 would keep the kit from the people it is for
        report = KitReport(output=output, labs=labs, datasets=sorted(datasets), missing=missing)
        for lab, paths in notebooks.items():
            (staging / "labs" / lab).mkdir(parents=True)
            for path in paths:
                shutil.copyfile(path, staging / "labs" / lab / path.name)
                report.notebooks.append(f"labs/{lab}/{path.name}")
        for key in sorted(datasets):
            _copy_dataset(course, key, datasets[key], staging / "data" / key)
        wheel = build_student_wheel(staging / "wheels")
        (staging / "README.md").write_text(readme(report, wheel.name), encoding="utf-8")
        marker = {"kit": DISTRIBUTION, "version": __version__, "labs": labs, "datasets": sorted(datasets)}
        (staging / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
        _swap_into_place(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.wheel = output / "wheels" / wheel.name
    return report


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _check_output(course: Course, output: Path, force: bool) -> None:
    folders = [course.source, course.release, course.solutions, course.private, course.data]
    folders += [course.submitted, course.autograded, course.feedback]
    if output == course.root or output in course.root.parents or any(output.is_relative_to(f) for f in folders):
        raise KitError(f"--output {output} is (or holds, or lies inside) the course's own files: choose another folder")
    if output.exists() and not output.is_dir():
        raise KitError(f"{output} exists and is not a folder")
    if output.is_dir() and any(output.iterdir()) and not (output / MARKER).is_file() and not force:
        raise KitError(
            f"{output} is not empty and is not a kit made by `autograder kit`: choose another --output "
            "or pass --force to replace it"
        )


def _release_notebooks(course: Course, lab: str) -> list[Path]:
    """The lab's release notebooks, one per source notebook, each carrying its verified metadata."""
    course.check_lab(lab)
    wanted = [path.name for path in course.source_notebooks(lab)]
    folder = course.release / lab
    missing = [name for name in wanted if not (folder / name).is_file()]
    if missing:
        raise KitError(
            f"lab {lab!r} is not built ({', '.join(f'release/{lab}/{n}' for n in missing)} missing): "
            f"run `autograder build {lab}` first"
        )
    paths = [folder / name for name in wanted]
    for path in paths:
        try:
            course_metadata(read_notebook_json(path))
        except (MetadataProblem, OSError, ValueError) as err:
            raise KitError(
                f"release/{lab}/{path.name} is not a release notebook of this autograder ({err}): "
                f"run `autograder build {lab}` again"
            ) from None
    return paths


def _code_text(path: Path) -> str:
    cells = read_notebook_json(path).get("cells", [])
    return "\n".join(
        "".join(cell["source"]) if isinstance(cell.get("source"), list) else str(cell.get("source", ""))
        for cell in cells
        if isinstance(cell, dict) and cell.get("cell_type") == "code"
    )


def _names(text: str, key: str) -> bool:
    """A lab reads data set `key` when its code quotes the key (grading's check_course_data rule)."""
    return f'"{key}"' in text or f"'{key}'" in text


def _datasets_read(course: Course, notebooks: dict[str, list[Path]]) -> tuple[dict[str, dict], dict[str, str]]:
    """{key: its manifest entry} to copy, and {key: why absent} for optional data sets not staged.

    Candidates: every registered data set and every folder directly under data/ but labels/.
    """
    from .data import REGISTRY, read_manifest

    texts = {lab: "\n".join(_code_text(path) for path in paths) for lab, paths in notebooks.items()}
    staged = read_manifest(course.data)
    registered = {dataset.key: dataset for dataset in REGISTRY}
    folders = {p.name for p in course.data.iterdir() if p.is_dir()} if course.data.is_dir() else set()
    candidates = (set(registered) | folders) - {LABELS_FOLDER}
    copy: dict[str, dict] = {}
    missing: dict[str, str] = {}
    for key in sorted(candidates):
        readers = [lab for lab, text in texts.items() if _names(text, key)]
        if not readers:
            continue
        dataset = registered.get(key)
        if key in folders and (key in staged or dataset is None):
            copy[key] = staged.get(key, {})
        elif dataset is not None and dataset.required:
            raise KitError(
                f"lab {readers[0]!r} reads the data set {key!r} ({dataset.title}), which is not staged in "
                f"{course.data}: run `autograder data` first"
            )
        else:
            missing[key] = (
                f"read by {', '.join(readers)} but not staged in {course.data} (optional; "
                "`autograder data` stages it where it can)"
            )
    return copy, missing


def _copy_dataset(course: Course, key: str, entry: dict, target: Path) -> None:
    """Copy data/<key>/ file by file, each checked against the manifest `autograder data` wrote."""
    source = course.data / key
    expected = {path: digest for path, digest in entry.get("files", {}).items() if path.startswith(f"{key}/")}
    seen = set()
    for path in sorted(source.rglob("*")):
        relative = f"{key}/{path.relative_to(source).as_posix()}"
        if path.is_symlink():
            raise KitError(f"data/{relative} is a symbolic link: the kit copies staged files only")
        if path.is_dir():
            continue
        if not path.is_file():
            raise KitError(f"data/{relative} is not a regular file")
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        digest = _copy_hashing(path, destination)
        if expected and expected.get(relative) != digest:
            raise KitError(
                f"data/{relative} is not what `autograder data` staged (not in or different from data/MANIFEST.json): "
                "run `autograder data` again"
            )
        seen.add(relative)
    absent = sorted(set(expected) - seen)
    if absent:
        raise KitError(f"data/{absent[0]} is in data/MANIFEST.json but missing: run `autograder data` again")


def _copy_hashing(source: Path, target: Path) -> str:
    digest = hashlib.sha256()
    with open(source, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            dst.write(chunk)
    return digest.hexdigest()


def _swap_into_place(staging: Path, output: Path) -> None:
    """Rename the finished kit onto `output`; a previous one is moved aside first, then removed."""
    old = None
    if output.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{output.name}.old-", dir=output.parent))
        os.rename(output, old / output.name)
    try:
        os.rename(staging, output)
    except OSError:
        if old is not None:  # put the previous kit back
            os.rename(old / output.name, output)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------- README


def readme(report: KitReport, wheel: str) -> str:
    notebooks = "\n".join(f"- `{path}`" for path in report.notebooks)
    first = report.notebooks[0] if report.notebooks else "labs/<lab>/<notebook>.ipynb"
    missing = ""
    if report.missing:
        missing = "\nOptional data sets the labs can use, not staged when this kit was made: " + ", ".join(
            f"`{key}`" for key in sorted(report.missing)
        )
        missing += ".\n"
    return f"""# Course labs: the student kit

This folder holds the labs' notebooks, the data they read and the `autograder` package that runs
their public checks on your machine.

{notebooks}

Data: {", ".join(f"`data/{key}/`" for key in report.datasets) or "none"} (the notebooks find it at
`../../data` from their folder; set `AUTOGRADER_DATA` to use another place).
{missing}
## 1. Install (once)

You need Python 3.11, 3.12 or 3.13. In this folder:

```
python -m venv .venv
source .venv/bin/activate            # Windows: .venv\\Scripts\\activate
pip install 'wheels/{wheel}[jupyter]'
```

This installs PyTorch (CPU or GPU build, whatever pip picks for your machine), Jupyter and the
`autograder` command. Optional, to see the course's environment as a kernel in an existing Jupyter:

```
python -m ipykernel install --user --name {KERNEL_NAME} --display-name "Course labs (autograder)"
```

## 2. Open a lab

```
jupyter lab labs/
```

Open a notebook and fill in the parts marked `# YOUR CODE HERE`. Keep the notebook where it is
(it reads `../../data`) and do not edit the cells you did not write: they are restored when you submit.

## 3. Check as you go

Run the cells. The test cells run the public checks at once: a passing check prints a line
starting with ✓, a failing one says what was expected, what your code gave, and the likely cause.
Some checks have no public value; they print so, and the autograder checks them when you submit.
Passing the public checks is a good sign, not your grade: hidden checks are run when you submit.

## 4. Validate before you submit

```
autograder validate {first}
```

It runs the notebook from top to bottom in a fresh kernel, as the grader will, and exits with

- 0: every cell ran and every public check passed;
- 1: a public check failed or a cell raised an error (the message says which);
- 2: the command was used wrongly (a path that does not exist, an unknown option);
- 3: the notebook cannot be graded: not a valid notebook, a cell you should not edit was changed
  or deleted, or its public references are missing or edited (copy your answers into a fresh copy
  of the notebook from this kit);
- 4: it ran over the time limit the grader allows.

## 5. Submit

Submit the notebook file itself (`{first.rsplit("/", 1)[-1]}` for example), saved, as your course asks.
Not a copy exported to another format, and not this folder.
"""

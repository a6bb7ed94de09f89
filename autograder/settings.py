"""Our settings, `c.Grading.*`, `c.Collect.*`, `c.Deadlines.*` and `c.LatePolicy.*` in the course's
nbgrader_config.py.

Every default is written once, here: nbgrader_config.py sets only what a course changes, the
sandbox's limits are mapped from these by grading/kernel_policy.py (limits_from), and
`autograder config` lists every setting with its default, the course's value and its help.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from traitlets import Bool, Dict, Enum, Float, Int, List, Unicode
from traitlets.config import Config, Configurable

from .grading.late_policy import LatePolicy


class Grading(Configurable):
    """Limits and choices for grading runs (all overridable in nbgrader_config.py)."""

    cell_timeout = Int(300, help="Wall-clock seconds one cell may run.").tag(config=True)
    notebook_timeout = Int(1200, help="Wall-clock seconds the whole notebook may run.").tag(config=True)
    cpu_seconds = Int(3600, help="CPU seconds of the kernel process (RLIMIT_CPU).").tag(config=True)
    memory_gib = Float(8.0, help="Address-space limit of CPU-only kernels (RLIMIT_AS); 0: none.").tag(config=True)
    max_processes = Int(256, help="Processes a kernel may have (cgroup pids.max).").tag(config=True)
    tmpfs_mib = Int(1024, help="Size of the sandbox's private /tmp (and of its /dev/shm).").tag(config=True)
    file_size_mib = Int(256, help="Largest file a kernel may write (RLIMIT_FSIZE).").tag(config=True)
    max_output_mib = Int(
        64, help="Outputs a notebook may produce in all (their JSON size); more fails the run: output over the limit."
    ).tag(config=True)
    job_folder_mib = Int(
        64,
        help="Size of each kernel's job folder, the one host folder it can write (its "
        "sockets): a tmpfs of its own where the coordinator may mount.",
    ).tag(config=True)
    job_folder_inodes = Int(4096, help="Files and folders each kernel's job folder may hold.").tag(config=True)
    threads_per_job = Int(1, help="OMP/MKL/torch threads per kernel.").tag(config=True)
    workers = Int(0, help="Submissions graded at once on a CPU-only machine; 0: one per threads_per_job cores.").tag(
        config=True
    )
    jobs_per_gpu = Int(1, help="Submissions sharing one GPU at once (each sees only its GPU).").tag(config=True)
    max_submission_mib = Float(
        20.0, help="Largest submitted notebook file graded (MiB); a larger one is failed with its size, unread."
    ).tag(config=True)
    max_feedback_mib = Float(
        5.0,
        help="Largest feedback page written (MiB): images, then long sources, are "
        "left out of a page that would be larger, and it says so.",
    ).tag(config=True)
    require_sandbox = Bool(False, help="Refuse to grade (status failed) where bubblewrap cannot run.").tag(config=True)
    gpus = Unicode(
        "auto",
        help="GPUs to grade on: 'auto' (every /dev/nvidiaN), 'none' (CPU slots only), or minor numbers such as '0,2'.",
    ).tag(config=True)
    prepared_per_slot = Int(
        1,
        help="Kernels each slot keeps started ahead (sandbox, imports, CUDA) for the "
        "submissions to come; 0: start each when its submission comes.",
    ).tag(config=True)
    kernel_start = Enum(
        ["fresh", "fork"],
        "fork",
        help="How each kernel starts: 'fresh' (a new sandbox and Python per kernel) or 'fork' (forked in "
        "milliseconds from a per-slot factory that imported the lab's modules once, each fork in namespaces "
        "of its own); 'fork' falls back to 'fresh', with a warning in every result, where the machine cannot "
        "nest namespaces.",
    ).tag(config=True)
    warm_up_modules = List(
        Unicode(),
        [],
        help="Imported in each kernel before it gets its notebook, besides "
        "the modules the lab's source notebooks import.",
    ).tag(config=True)
    executor = Enum(
        ["local", "ray"], "local", help="Where kernels run: this machine, or a Ray cluster (the `ray` extra)."
    ).tag(config=True)
    ray_address = Unicode("", help="Ray cluster address ('' starts a local Ray; 'auto' finds a running one).").tag(
        config=True
    )
    ray_gpus_per_job = Float(
        0.0,
        help="GPUs each Ray task asks for (fractions share a GPU); 0: 1 / jobs_per_gpu "
        "when the cluster has GPUs, else none.",
    ).tag(config=True)


class Collect(Configurable):
    """How `autograder collect` reads LMS downloads (nbgrader_config.py: `c.Collect.*`)."""

    layout = Enum(
        ["plain", "canvas", "moodle"],
        "plain",
        help="The LMS's file naming, which alone says whose a file is: 'canvas' (<name>_<userid>_"
        "<attachmentid>_<file>; id: the user id), 'moodle' (<Full Name>_<participantid>_"
        "assignsubmission_file_...; id: the participant id), 'plain' (<student>_<notebook>.ipynb "
        "or <student>/LAB/<notebook>.ipynb).",
    ).tag(config=True)
    max_file_mib = Float(
        64.0,
        help="Largest notebook, or student's zip, extracted (MiB): checked on the zip's "
        "header and counted while reading.",
    ).tag(config=True)
    max_archive_mib = Float(256.0, help="Largest total of the notebooks one student's zip yields (MiB).").tag(
        config=True
    )
    max_entries = Int(100000, help="Most entries a zip may have (a download or a student's zip).").tag(config=True)
    zip_dates = Bool(
        True,
        help="Moodle and plain: a zip entry's date is the submission time (timestamp.txt) "
        "and orders duplicates. Canvas's never are: they are when the zip was made.",
    ).tag(config=True)


class DueDateError(ValueError):
    """A due date that cannot be read without guessing; the message says what to write instead."""


@dataclass(frozen=True)
class DueDate:
    """A deadline as the course wrote it (text, and its zone's name) and as nbgrader stores it:
    `utc`, a naive UTC datetime (Assignment.duedate, SubmittedAssignment.timestamp)."""

    utc: datetime
    zone: str

    @property
    def local(self) -> datetime:
        return self.utc.replace(tzinfo=UTC).astimezone(_zone(self.zone))

    def shown(self) -> str:
        """'Thu 10 Dec 2026, 23:59 Europe/Dublin' (and the UTC time where the zone is not UTC)."""
        local = self.local
        text = f"{local:%a %d %b %Y, %H:%M}" if local.second == 0 else f"{local:%a %d %b %Y, %H:%M:%S}"
        if self.zone == "UTC":
            return f"{text} UTC"
        return f"{text} {self.zone} ({self.utc:%Y-%m-%d %H:%M} UTC)"


_DUE_TEXT = re.compile(r"(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(?::\d{2})?)(.*)")
_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")


def _zone(name: str):
    if name in ("UTC", "Z", "GMT"):
        return UTC
    offset = _OFFSET.fullmatch(name)
    if offset:
        sign = -1 if offset[1] == "-" else 1
        return timezone(sign * timedelta(hours=int(offset[2]), minutes=int(offset[3])))
    return ZoneInfo(name)


def parse_due_date(text: str) -> DueDate:
    """'2026-12-10 23:59 Europe/Dublin' (a zone name of the tz database), '2026-12-10 23:59:30 UTC',
    '2026-12-10T23:59+01:00'. A date without a zone is refused rather than read as UTC, and so is a
    local time that a daylight-saving change skips or repeats (say it with an offset)."""
    example = "write it as 2026-12-10 23:59 Europe/Dublin, 2026-12-10 23:59 UTC or 2026-12-10T23:59+01:00"
    match = _DUE_TEXT.fullmatch(str(text).strip())
    if not match:
        raise DueDateError(f"{text!r} is not a date and time: {example}")
    zone = match[3].strip() or None
    if zone is None:
        raise DueDateError(f"{text!r} has no time zone (it would be read as UTC): {example}")
    try:
        tz = _zone(zone)
    except (ZoneInfoNotFoundError, ValueError):  # ValueError: a path-like or malformed key
        raise DueDateError(f"{text!r}: {zone!r} is not a time zone (a tz database name, UTC, or +HH:MM)") from None
    try:
        naive = datetime.fromisoformat(f"{match[1]}T{match[2]}")
    except ValueError as err:
        raise DueDateError(f"{text!r} is not a real date and time ({err})") from None
    local = naive.replace(tzinfo=tz)
    if isinstance(tz, ZoneInfo):  # fold 0 and 1 differ in a skipped hour and in a repeated one
        if local.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:
            raise DueDateError(f"{text!r} does not exist in {zone} (clocks go forward that night): choose another time")
        if local.utcoffset() != naive.replace(tzinfo=tz, fold=1).utcoffset():
            raise DueDateError(
                f"{text!r} happens twice in {zone} (clocks go back that night): say it with an offset, e.g. "
                f"{naive:%Y-%m-%dT%H:%M}{_offset_text(local)}"
            )
    return DueDate(local.astimezone(UTC).replace(tzinfo=None), "UTC" if tz is UTC else zone)


def _offset_text(moment: datetime) -> str:
    minutes = int((moment.utcoffset() or timedelta()).total_seconds() // 60)
    return f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


class Deadlines(Configurable):
    """Due dates (per lab, per student) and the TAs' extensions file: README, "Deadlines and late work".

    They become nbgrader's own: Assignment.duedate and SubmittedAssignment.extension in the gradebook."""

    due = Dict(
        value_trait=Unicode(),
        default_value={},
        help="Each lab's due date, e.g. {'lab1_cross_entropy': '2026-12-10 23:59 Europe/Dublin'} (a zone is required). "
        "A lab not named here keeps the due date its gradebook has (nbgrader db assignment add --duedate), or none.",
    ).tag(config=True)
    student_due = Dict(
        value_trait=Dict(value_trait=Unicode()),
        default_value={},
        help="Per-student due dates, e.g. {'lab1_cross_entropy': {'alice': '2026-12-12 23:59 Europe/Dublin'}}: "
        "nbgrader's extension, at or after the lab's due date.",
    ).tag(config=True)
    extensions_file = Unicode(
        "extensions.csv",
        help="The extensions TAs edit, relative to the course folder: a CSV with the header "
        "student,lab,due,reason (one row per extension; the reason is kept for the staff, never shown to students).",
    ).tag(config=True)

    def lab_due(self, lab: str) -> DueDate | None:
        """The lab's due date in the course's configuration (DueDateError names the setting)."""
        if lab not in self.due:
            return None
        try:
            return parse_due_date(self.due[lab])
        except DueDateError as err:
            raise DueDateError(f"c.Deadlines.due[{lab!r}]: {err}") from None


#: Our configurable classes, in the order `autograder config` lists them.
OUR_SETTINGS = (Grading, Collect, Deadlines, LatePolicy)


@dataclass(frozen=True)
class Setting:
    """One configurable trait: `c.<section>.<name>`, its default, and the course's value."""

    section: str
    name: str
    kind: str  # the trait's type: Int, Float, Bool, Unicode, Enum [a, b], List ...
    default: Any
    value: Any  # what the course's configuration gives (the default when it sets none)
    help: str

    @property
    def changed(self) -> bool:
        return self.value != self.default


def settings_of(cls: type[Configurable], config: Config) -> list[Setting]:
    """Every configurable trait of `cls` in the order the classes define them, with its default
    and the value `config` sets (the default where it sets none)."""
    traits = cls.class_traits(config=True)
    names = dict.fromkeys(n for klass in reversed(cls.__mro__) for n in vars(klass) if n in traits)
    configured = cls(config=config)
    sections = [klass.__name__ for klass in cls.__mro__ if klass.__name__ in config]
    rows = []
    for name in names:
        trait = traits[name]
        kind = type(trait).__name__
        if isinstance(trait, Enum):
            kind += " of " + ", ".join(map(repr, trait.values or ()))
        is_set = any(name in config[section] for section in sections)
        default = trait.default()
        help_text = " ".join((trait.help or "").split())
        rows.append(
            Setting(cls.__name__, name, kind, default, getattr(configured, name) if is_set else default, help_text)
        )
    return rows

"""Settings: every default is written once (autograder/settings.py), and `autograder config` lists them."""

from __future__ import annotations

import dataclasses
import os

import pytest
from traitlets import Int
from typer.testing import CliRunner

from autograder.cli import app
from autograder.course import Course
from autograder.executors import Limits
from autograder.grading.kernel_policy import cpu_jobs, limits_from
from autograder.settings import Collect, Grading, settings_of
from conftest import REPO, new_course


def config_output(course: Course, *options: str) -> str:
    done = CliRunner().invoke(app, ["config", "--course", str(course.root), *options])
    assert done.exit_code == 0, done.output
    return done.output


def configured(course: Course, *lines: str) -> Course:
    path = course.root / "nbgrader_config.py"
    path.write_text(path.read_text() + "\n" + "\n".join(lines) + "\n")
    return Course.load(course.root)


def test_config_lists_every_setting_with_its_default_and_help(tmp_path):
    output = config_output(new_course(tmp_path / "course"))
    lines = output.splitlines()
    for cls in (Grading, Collect):
        traits = cls.class_traits(config=True)
        assert traits
        for name, trait in traits.items():
            line = f"c.{cls.__name__}.{name} = {trait.default()!r}"
            assert line in lines, line  # the default, and no '# this course': this course keeps it
            help_line = lines[lines.index(line) + 1]
            assert help_line.startswith("    ") and " ".join(trait.help.split())[:40] in " ".join(
                output[output.index(line) :].split()
            ), name
    assert "# this course" not in output.split("\n", 1)[1]


def test_config_shows_a_course_override_beside_the_default(tmp_path):
    course = configured(
        new_course(tmp_path / "course"),
        'c.Grading.gpus = "none"',
        "c.Grading.cell_timeout = 60",
        'c.Collect.layout = "canvas"',
    )
    lines = config_output(course).splitlines()
    assert "c.Grading.gpus = 'none'    # this course (default: 'auto')" in lines
    assert "c.Grading.cell_timeout = 60    # this course (default: 300)" in lines
    assert "c.Collect.layout = 'canvas'    # this course (default: 'plain')" in lines
    assert "c.Grading.notebook_timeout = 1200" in lines
    everything = config_output(course, "--all").splitlines()
    assert "c.OverwriteCells.add_missing_cells = True    # this course (default: False)" in everything
    assert (
        "c.Autograde.exporter_class = 'autograder.grading.nbgrader_guard.RefuseAutograde'    "
        "# this course (default: 'nbconvert.exporters.notebook.NotebookExporter')"
    ) in everything
    assert "c.Grading.gpus = 'none'    # this course (default: 'auto')" in everything


def test_the_course_config_restates_no_default():
    """nbgrader_config.py sets only what this course changes: a default changed in code reaches it."""
    course = Course.load(REPO)
    for cls in (Grading, Collect):
        for row in settings_of(cls, course.config):
            if row.name in course.config[cls.__name__]:
                assert row.changed, f"nbgrader_config.py restates the default c.{cls.__name__}.{row.name}"


def test_a_default_changed_in_code_reaches_a_course_without_an_override(tmp_path):
    plain = Course.load(REPO)
    overriding = configured(new_course(tmp_path / "course"), "c.Grading.cell_timeout = 42")

    class Changed(Grading):  # the same section (c.Grading), another default in code
        cell_timeout = Int(301).tag(config=True)

    assert Changed(config=plain.config).cell_timeout == 301
    assert Changed(config=overriding.config).cell_timeout == 42
    assert limits_from(Changed(config=plain.config)).cell_timeout == 301
    assert Grading(config=plain.config).cell_timeout == Grading.class_traits()["cell_timeout"].default() == 300
    assert limits_from(plain.grading) == limits_from(Grading())


def test_every_limit_comes_from_a_setting():
    settings = Grading(
        cell_timeout=7,
        notebook_timeout=11,
        cpu_seconds=13,
        memory_gib=0.5,
        file_size_mib=3,
        tmpfs_mib=5,
        max_processes=17,
        max_output_mib=2,
        job_folder_mib=9,
        job_folder_inodes=19,
    )
    expected = dict(
        cell_timeout=7,
        notebook_timeout=11,
        cpu_seconds=13,
        memory_bytes=2**29,
        file_size_bytes=3 * 2**20,
        tmpfs_bytes=5 * 2**20,
        max_processes=17,
        max_output_bytes=2 * 2**20,
        job_folder_bytes=9 * 2**20,
        job_folder_inodes=19,
    )
    assert {f.name for f in dataclasses.fields(Limits)} == set(expected)  # a new limit needs its setting here
    assert dataclasses.asdict(limits_from(settings)) == expected
    assert limits_from(Grading(memory_gib=0)).memory_bytes is None


@pytest.mark.parametrize(
    "threads, workers, configured_workers, expected",
    [
        (1, None, 0, os.cpu_count() or 1),
        (2, None, 0, max(1, (os.cpu_count() or 1) // 2)),
        (1, None, 3, 3),
        (1, 5, 3, 5),
        (10_000, None, 0, 1),
    ],
)
def test_cpu_slots_are_counted_in_one_place(threads, workers, configured_workers, expected):
    assert cpu_jobs(Grading(threads_per_job=threads, workers=configured_workers), workers) == expected

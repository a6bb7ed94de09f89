"""The `autograder` command line (typer): build, grade, feedback, export, collect, config, mutate, demo, data,
validate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from .authoring.source_rules import SourceError
from .course import Course, CourseError
from .student.cli import validate

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Build the course's labs, grade submissions in a sandbox, write feedback.",
)
console = Console()

CourseOption = Annotated[Path, typer.Option("--course", help="The course folder (holds nbgrader_config.py).")]


def _load(course: Path) -> Course:
    try:
        return Course.load(course)
    except CourseError as err:
        _fail(str(err))


def _fail(message: str) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def build(
    labs: Annotated[list[str] | None, typer.Argument(help="Labs to build (default: all).")] = None,
    course: CourseOption = Path("."),
):
    """Build labs: release notebooks, public references, solutions, private references."""
    from .authoring.pipeline import build_lab

    c = _load(course)
    try:
        for lab in labs or c.labs():
            with console.status(f"building {lab} (running the solution)..."):
                report = build_lab(c, lab)
            console.print(f"[green]built[/] {report.summary()}")
            console.print(f"  release/{lab}/  solutions/{lab}/  private/{lab}/references.json")
    except (SourceError, CourseError) as err:
        _fail(str(err))


@app.command()
def kit(
    labs: Annotated[list[str] | None, typer.Argument(help="Labs in the kit (default: all).")] = None,
    output: Annotated[Path, typer.Option("--output", help="The kit's folder.")] = Path("kit"),
    force: Annotated[bool, typer.Option(help="Replace a non-empty --output that is not a previous kit.")] = False,
    course: CourseOption = Path("."),
):
    """Write the student kit: release notebooks, the public data they read, the student wheel, a README."""
    from .kit import make_kit

    c = _load(course)
    try:
        with console.status("making the student kit (building the autograder-student wheel)..."):
            report = make_kit(c, labs, output, force=force)
    except CourseError as err:  # KitError too
        _fail(str(err))
    console.print(f"[green]kit[/] {report.output}", highlight=False)
    for line in report.summary():
        console.print(f"  {line}", highlight=False, soft_wrap=True)


@app.command()
def grade(
    lab: str,
    student: Annotated[list[str] | None, typer.Option(help="Only these students.")] = None,
    force: Annotated[bool, typer.Option(help="Regrade submissions already graded.")] = False,
    workers: Annotated[int, typer.Option(help="Submissions at once (0: from config).")] = 0,
    executor: Annotated[
        str | None,
        typer.Option(help="Where kernels run: local (this machine's slots) or ray (default: c.Grading.executor)."),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster address for --executor ray ('auto': a running cluster; default: a local Ray)."),
    ] = None,
    gpus: Annotated[
        str | None,
        typer.Option(help="GPUs to grade on: auto, none, or minor numbers like 0,2 (default: c.Grading.gpus)."),
    ] = None,
    course: CourseOption = Path("."),
):
    """Grade every submission in submitted/<student>/LAB/ (resumes where a batch stopped)."""
    from .executors import probe
    from .grading.batch import grade_lab, submitted_students
    from .grading.deadlines import lateness_of_lab
    from .grading.exports.scores import read_lab_scores
    from .grading.review import points_to_grade
    from .grading.table import results_table

    c = _load(course)
    if executor not in (None, "local", "ray"):
        _fail(f"--executor {executor}: expected local or ray")
    for name, value in (("executor", executor), ("ray_address", address), ("gpus", gpus)):
        if value is not None:
            setattr(c.config.Grading, name, value)
    try:
        c.check_lab(lab)
    except CourseError as err:
        _fail(str(err))
    status = probe()
    if not status.available:
        console.print(
            f"[bold red]WARNING: no sandbox:[/] {status.reason}. Student code will run UNSANDBOXED "
            "and results are marked so.",
            highlight=False,
        )
    students = student or submitted_students(c, lab)
    if not students:
        _fail(f"no submissions for {lab} in {c.submitted}")
    counts: dict[str, int] = {}
    columns = (
        TextColumn("grading {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[counts]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(lab, total=len(students), counts="")

        def on_result(result, reused):
            key = "reused" if reused else result.status
            counts[key] = counts.get(key, 0) + 1
            progress.update(task, advance=1, counts="  ".join(f"{k}: {v}" for k, v in sorted(counts.items())))

        try:
            results = grade_lab(c, lab, students, force=force, workers=workers or None, on_result=on_result)
        except (CourseError, RuntimeError) as err:  # RuntimeError: the ray extra is missing
            _fail(str(err))
    console.print(
        results_table(
            results, lateness_of_lab(c, lab), to_grade=points_to_grade(c, lab), recorded=read_lab_scores(c, lab)
        )
    )


@app.command()
def feedback(
    lab: str,
    student: Annotated[list[str] | None, typer.Option(help="Only these students.")] = None,
    course: CourseOption = Path("."),
):
    """Write feedback/<student>/LAB/<notebook>.html for graded students."""
    from .grading.batch import submitted_students
    from .grading.feedback import write_feedback

    c = _load(course)
    problems: list[tuple[str, str]] = []
    written = write_feedback(
        c, lab, student or submitted_students(c, lab), on_problem=lambda who, what: problems.append((who, what))
    )
    for who, what in problems:  # one line each; every other student's page is written
        console.print(f"[yellow]{who}:[/] {what}", highlight=False, soft_wrap=True)
    console.print(
        f"wrote {len(written)} feedback file(s) under {c.feedback}"
        + (f"; {len(problems)} problem(s) above" if problems else "")
    )


@app.command()
def export(
    fmt: Annotated[str, typer.Option("--format", help="csv (ours), canvas, moodle or gradescope.")] = "csv",
    output: Annotated[
        Path | None,
        typer.Option(
            help="File to write (gradescope: a folder); default grades.csv, grades-canvas.csv, grades-moodle.csv, "
            "gradescope/."
        ),
    ] = None,
    lab: Annotated[list[str] | None, typer.Option(help="Only these labs.")] = None,
    per_cell: Annotated[bool, typer.Option(help="canvas, moodle: a column per test cell too.")] = False,
    moodle_id: Annotated[
        str, typer.Option(help="moodle: the column Moodle maps users by: email, username (our id), idnumber.")
    ] = "email",
    hidden_visibility: Annotated[
        str, typer.Option(help="gradescope: hidden checks' tests are after_published or hidden.")
    ] = "after_published",
    course: CourseOption = Path("."),
):
    """Write grades for an LMS: scores from the gradebook (a TA's score stands, after any late penalty).

    A failed run or a missing submission is an empty grade, never a 0, with its reason where the format
    has a column for it (csv: status; moodle: feedback; gradescope: index.csv, and no results.json)."""
    from rich.text import Text

    from .grading.exports import export_grades

    c = _load(course)
    try:
        report = export_grades(
            c, fmt, output, lab, per_cell=per_cell, moodle_id=moodle_id, hidden_visibility=hidden_visibility
        )
    except CourseError as err:
        _fail(str(err))
    what = "results.json file(s) and index.csv under" if fmt == "gradescope" else "row(s) to"
    console.print(f"wrote {report.rows} {what} {report.output}", highlight=False)
    if report.not_scored:  # ids and reasons come from students' folders: plain text, never markup
        console.print(f"{len(report.not_scored)} grade(s) left empty (not a 0):", highlight=False)
        for student, lab_name, status in report.not_scored[:20]:
            console.print(Text(f"  {student} / {lab_name}: {status}"), soft_wrap=True)
        if len(report.not_scored) > 20:
            console.print(f"  ... and {len(report.not_scored) - 20} more", highlight=False)


roster_app = typer.Typer(no_args_is_help=True, help="The class list in nbgrader's gradebook: names, emails, LMS ids.")
app.add_typer(roster_app, name="roster")


@roster_app.command("import")
def roster_import(
    file: Annotated[Path, typer.Argument(help="CSV: id (required), first_name, last_name, email, lms_user_id.")],
    course: CourseOption = Path("."),
):
    """Add or update students from a CSV (nbgrader's `db student import` columns); a bad file writes nothing."""
    from .grading.roster import import_roster

    c = _load(course)
    try:
        report = import_roster(c, file)
    except CourseError as err:
        _fail(str(err))
    console.print(f"roster: {len(report.added)} added, {len(report.updated)} updated in {c.db_url}", highlight=False)


@app.command()
def collect(
    lab: str,
    archive_dir: Annotated[
        Path, typer.Argument(help="Folder of LMS downloads: the LMS's zip file(s), students' zips, notebooks.")
    ],
    layout: Annotated[
        str | None, typer.Option(help="The LMS's file naming: canvas, moodle or plain (default: c.Collect.layout).")
    ] = None,
    course: CourseOption = Path("."),
):
    """Collect LMS downloads into submitted/<student>/LAB/; a file that breaks a rule is skipped, with the rule."""
    from rich.text import Text

    from .grading.collect import LAYOUTS, collect_lab

    c = _load(course)
    if layout is not None and layout not in LAYOUTS:
        _fail(f"--layout {layout}: expected one of {', '.join(LAYOUTS)}")
    try:
        with console.status(f"collecting {lab} from {archive_dir}..."):
            report = collect_lab(c, lab, archive_dir, layout=layout)
    except CourseError as err:
        _fail(str(err))
    if report.collected:  # names come from students: shown as plain text, never as markup
        table = Table(title=f"Collected ({report.layout} naming)")
        for column in ("student", "notebook", "submitted (UTC)", "from", "note"):
            table.add_column(column)
        for row in report.collected:
            when = f"{row.timestamp:%Y-%m-%d %H:%M:%S}" if row.timestamp else "-"
            table.add_row(*(Text(v) for v in (row.student, row.notebook, when, row.source, row.note)))
        console.print(table)
    if report.skipped:
        table = Table(title="Skipped")
        for column in ("file", "student", "reason"):
            table.add_column(column, style="yellow" if column == "reason" else None)
        for skipped in report.skipped:
            table.add_row(Text(skipped.source), Text(skipped.student or "-"), Text(skipped.reason))
        console.print(table)
    if not report.collected:
        _fail(f"nothing collected from {archive_dir}: every file was skipped (reasons above)")
    console.print(
        f"collected {len(report.students)} submission(s) into {c.submitted}"
        + (f"; {len(report.skipped)} file(s) skipped (above)" if report.skipped else ""),
        highlight=False,
    )


@app.command()
def config(
    all_classes: Annotated[
        bool,
        typer.Option("--all", help="Also nbgrader's classes that nbgrader_config.py configures, every trait of each."),
    ] = False,
    course: CourseOption = Path("."),
):
    """Every setting (c.Grading.*, c.Collect.*): its default, this course's value where it differs, its help.

    nbgrader_config.py sets only what the course changes; a default lives in autograder/settings.py.
    """
    import textwrap

    from .settings import OUR_SETTINGS, settings_of

    c = _load(course)
    classes = list(OUR_SETTINGS)
    unknown = []
    if all_classes:
        import nbgrader.converters
        import nbgrader.coursedir
        import nbgrader.preprocessors

        modules = (nbgrader.coursedir, nbgrader.converters, nbgrader.preprocessors)
        for section in sorted(set(c.config) - {cls.__name__ for cls in classes}):
            found = next((getattr(m, section) for m in modules if isinstance(getattr(m, section, None), type)), None)
            if found is None:
                unknown.append(section)
            else:
                classes.append(found)
    where = (course / "nbgrader_config.py").resolve()
    lines = [f"# Every setting with its default; '# this course' marks what {where} changes."]
    for cls in classes:
        summary = " ".join((cls.__doc__ or "").split("\n\n")[0].split())
        lines += ["", f"# c.{cls.__name__}: {summary}" if summary else f"# c.{cls.__name__}"]
        for row in settings_of(cls, c.config):
            head = f"c.{row.section}.{row.name} = {_python_text(row.value)}"
            lines.append(f"{head}    # this course (default: {_python_text(row.default)})" if row.changed else head)
            lines += textwrap.wrap(
                f"{row.kind}. {row.help}".rstrip(". ") + ".", width=100, initial_indent="    ", subsequent_indent="    "
            )
    for section in unknown:
        lines += ["", f"# c.{section}: not a class autograder or nbgrader's converters know; set here:"]
        lines += [f"c.{section}.{name} = {_python_text(value)}" for name, value in sorted(c.config[section].items())]
    typer.echo("\n".join(lines))


def _python_text(value) -> str:
    """A setting's value as nbgrader_config.py would write it (a class by its dotted name)."""
    return repr(f"{value.__module__}.{value.__qualname__}") if isinstance(value, type) else repr(value)


@app.command()
def mutate(
    labs: Annotated[list[str] | None, typer.Argument(help="Labs to measure (default: all).")] = None,
    limit: Annotated[
        int, typer.Option(help="At most this many mutants per lab, spread over its cells (0: every one).")
    ] = 0,
    cell: Annotated[
        list[str] | None,
        typer.Option(
            help="Only the mutants of the solution cells with this grade_id (a glob pattern; repeat it for more)."
        ),
    ] = None,
    min_kill_rate: Annotated[float, typer.Option(help="Exit 1 when a lab's kill rate (0-1) is below this.")] = 0.0,
    strict: Annotated[
        bool, typer.Option(help="Exit 1 on any survivor or declaration not applied (declare equivalents instead).")
    ] = False,
    workers: Annotated[int, typer.Option(help="Mutants graded at once (0: from config).")] = 0,
    executor: Annotated[str | None, typer.Option(help="local or ray (default: c.Grading.executor).")] = None,
    course: CourseOption = Path("."),
):
    """Grade realistic bugs of each lab's solution as hidden students: which do the hidden tests catch?

    Prints killed / survived / equivalent per mutant, the kill rate and how many kills name their
    cause; survivors as "no check distinguishes X from the solution in cell Y". The report is kept
    in private/<lab>/mutation.json. Declare mutants and equivalents in a solution cell's metadata
    (README, "Measuring a lab's tests")."""
    from .mutation.campaign import mutate_lab
    from .mutation.report import outcome_table, save_report, summary_line, survivor_lines

    c = _load(course)
    if executor not in (None, "local", "ray"):
        _fail(f"--executor {executor}: expected local or ray")
    failing = []
    for lab in labs or c.labs():
        with Progress(
            TextColumn("grading the mutants of {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task(lab, total=None)

            def on_result(result, reused, progress=progress, task=task):
                progress.update(task, advance=1)

            try:
                report = mutate_lab(
                    c,
                    lab,
                    limit=limit or None,
                    cells=cell or (),
                    workers=workers or None,
                    executor=executor,
                    on_result=on_result,
                )
            except (CourseError, RuntimeError) as err:
                _fail(str(err))
        console.print(outcome_table(report))
        for line in report.problems:
            console.print(f"[yellow]declaration not applied:[/] {line}", highlight=False)
        for line in survivor_lines(report):
            console.print(f"[bold red]{line}[/]", highlight=False, soft_wrap=True)
        console.print(summary_line(report), highlight=False)
        saved = save_report(report, c.private / lab / "mutation.json")
        console.print(f"  report: {saved}", highlight=False)
        if report.kill_rate < min_kill_rate:
            failing.append(f"{lab}: kill rate {report.kill_rate:.3f} < {min_kill_rate:g}")
        if strict and (report.count("survived") or report.problems):
            failing.append(
                f"{lab}: {report.count('survived')} survivors, {len(report.problems)} declarations not applied"
            )
    if failing:
        _fail("; ".join(failing))


@app.command("import-otter")
def import_otter(
    master: Annotated[Path, typer.Argument(help="An otter assign master notebook (otter's v1 format).")],
    lab: Annotated[
        str | None, typer.Option(help="The lab's name (default: the master's `name:` setting, else its file name).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace source/<lab>/<lab>.ipynb when it exists.")] = False,
    course: CourseOption = Path("."),
):
    """Turn an otter-grader assignment into source/<lab>/<lab>.ipynb (the otter extra: pip install '.[otter]').

    Solutions, public and hidden tests and points are carried over; every otter feature that is not
    is printed. Then run `autograder build LAB`."""
    from rich.text import Text

    from .authoring.otter_import import OtterImportError
    from .authoring.otter_import import import_otter as run_import

    c = _load(course)
    try:
        imported = run_import(master, c.root, lab, force=force)
    except OtterImportError as err:
        _fail(str(err))
    table = Table(title=f"Imported {master.name} as {imported.lab}")
    for column in ("question", "points", "public tests", "hidden tests"):
        table.add_column(column)
    for question in imported.questions:
        table.add_row(
            Text(question.name), f"{question.points:g}", str(question.public_tests), str(question.hidden_tests)
        )
    console.print(table)
    if imported.not_carried:  # texts quote the master (question names, test code): plain text, never markup
        console.print("[yellow]not carried over:[/]")
        for line in imported.not_carried:
            console.print(Text(f"  - {line}"), soft_wrap=True)
    console.print(Text(f"wrote {imported.path}; next: autograder build {imported.lab}"), soft_wrap=True)


@app.command()
def demo(
    course: CourseOption = Path("."),
    lab: Annotated[str, typer.Option(help="The lab the demo class submits.")] = "lab1_cross_entropy",
):
    """Build the course, grade a demo class (honest, buggy and malicious students), write feedback."""
    from .demo import run_demo

    c = _load(course)
    try:
        run_demo(c, lab, console)
    except (SourceError, CourseError) as err:
        _fail(str(err))


@app.command()
def data(
    mnist_from: Annotated[
        Path | None,
        typer.Option(
            "--mnist-from",
            help="A folder with MNIST's four original IDX files (.gz or not), for machines without a network.",
        ),
    ] = None,
    download: Annotated[bool, typer.Option(help="Let torchvision try the network for MNIST.")] = True,
    course: CourseOption = Path("."),
):
    """Stage the data sets into data/, with a sha256 manifest (a second run verifies them).

    Fashion-MNIST from Debian's dataset-fashion-mnist (offline); MNIST by torchvision's download or
    --mnist-from DIR. Files missing or changed since the manifest are staged again.
    """
    from .data import MANIFEST, DataError, stage_all

    c = _load(course)
    try:
        available = stage_all(
            c.data, mnist_from, download=download, log=lambda line: console.print(line, highlight=False)
        )
    except DataError as err:
        _fail(str(err))
    console.print(
        f"[green]data sets in {c.data}:[/] {', '.join(available) or 'none'} (hashes in {MANIFEST}; "
        f"held-out labels in {c.data / 'labels'}, never mounted in a sandbox)",
        highlight=False,
    )


def _ask_line(prompt: str) -> str:
    """One line typed at the terminal ('' for a blank); EOFError at the end of input (or Ctrl-C/D)."""
    try:
        return typer.prompt(prompt, default="", show_default=False)
    except typer.Abort:
        raise EOFError from None


@app.command()
def review(
    lab: str,
    question: Annotated[
        str, typer.Option(help="The written question: its grade_id (the build lists them in private/LAB/rubrics.json).")
    ],
    student: Annotated[
        list[str] | None, typer.Option(help="Only these students (revisits answers already scored).")
    ] = None,
    all_answers: Annotated[bool, typer.Option("--all", help="Also the answers a TA has scored already.")] = False,
    course: CourseOption = Path("."),
):
    """Grade one written answer across the class: each student's answer, the rubric, points and a comment.

    Written into nbgrader's gradebook (formgrader shows the same) one student at a time; 'q' stops,
    keeping what was recorded. Answers already scored are skipped unless --all or --student."""
    from .grading.review import ReviewError, review_question

    c = _load(course)
    try:
        c.check_lab(lab)
        report = review_question(
            c,
            lab,
            question,
            console,
            _ask_line,
            students=student,
            include_graded=all_answers,
        )
    except (CourseError, ReviewError) as err:
        _fail(str(err))
    console.print(
        f"scored {report.scored}, skipped {report.skipped}"
        + (" (stopped)" if report.stopped else "")
        + f"; {report.left} answer(s) of {question} still to grade",
        highlight=False,
    )


# The student's own command, the same code the student package ships (autograder/student/cli.py).
app.command("validate")(validate)

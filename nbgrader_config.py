"""Course configuration: nbgrader's own file, read by nbgrader and by `autograder`.

It sets only what this course changes from the defaults. `autograder config` lists every one of
our settings (c.Grading.*: grading and the sandbox; c.Collect.*: `autograder collect`;
c.Deadlines.*, c.LatePolicy.*: due dates and the late policy) with its
default, this course's value and its help; `autograder config --all` adds nbgrader's classes set
here. Defaults live in autograder/settings.py, so a default changed there reaches this course.
"""

c = get_config()  # noqa: F821  (provided by traitlets when this file is loaded)

c.CourseDirectory.course_id = "deep-learning-labs"
# The gradebook: SQLite beside this file by default. For PostgreSQL use an explicit driver,
# e.g. c.CourseDirectory.db_url = "postgresql+psycopg2://user:password@host/dbname".

# What students see where a solution was (pinned: the committed release/ depends on it).
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
# Re-insert graded test cells a student deleted, so that they still count.
c.OverwriteCells.add_missing_cells = True

# nbgrader's own grading engine is off: it runs student code unsandboxed and judges in the student's
# kernel. `nbgrader autograde` / `generate_feedback` and formgrader's buttons refuse before touching
# a file, naming our commands (autograder/grading/nbgrader_guard.py says how and why).
c.Autograde.exporter_class = "autograder.grading.nbgrader_guard.RefuseAutograde"
c.GenerateFeedback.exporter_class = "autograder.grading.nbgrader_guard.RefuseFeedback"

# Our grader (c.Grading.*) and `autograder collect` (c.Collect.*): this course keeps every default.
# For example: c.Grading.gpus = "none"; c.Grading.jobs_per_gpu = 2; c.Collect.layout = "canvas".

# Deadlines (README, "Deadlines and late work"): none set, so the committed release carries no due date.
# c.Deadlines.due = {"lab1_cross_entropy": "2026-12-10 23:59 Europe/Dublin"}  # a zone is required
# c.Deadlines.student_due = {"lab1_cross_entropy": {"alice": "2026-12-12 23:59 Europe/Dublin"}}
# c.Deadlines.extensions_file = "extensions.csv"  # the TAs' file: student,lab,due,reason
# c.LatePolicy.penalty_method = "per_hour"  # none (default), zero, per_hour, per_day
# c.LatePolicy.penalty_percent = 2.5  # of the score per started hour (day)
# c.LatePolicy.floor_percent = 50  # the least share of its score a late notebook keeps
# c.LatePolicy.cutoff_hours = 72  # after this, nothing is kept

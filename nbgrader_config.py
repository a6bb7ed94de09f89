"""Course configuration: nbgrader's own file, read by nbgrader and by `autograder`.

nbgrader's settings configure the build (generate_assignment) and the sanitize step of
grading. Ours live in the `Grading` section (see autograder/settings.py for every option).
"""

c = get_config()  # noqa: F821  (provided by traitlets when this file is loaded)

c.CourseDirectory.course_id = "deep-learning-labs"
# The gradebook: SQLite beside this file by default. For PostgreSQL use an explicit driver,
# e.g. "postgresql+psycopg2://user:password@host/dbname".
# c.CourseDirectory.db_url = "sqlite:///gradebook.db"

# What students see where a solution was.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
# Re-insert graded test cells a student deleted, so that they still count.
c.OverwriteCells.add_missing_cells = True

# nbgrader's own grading engine is off: it runs student code unsandboxed and judges in the student's
# kernel. `nbgrader autograde` / `generate_feedback` and formgrader's Autograde / Generate Feedback
# buttons refuse, before touching any file, naming `autograder grade LAB --student S` and
# `autograder feedback LAB` (autograder/grading/nbgrader_guard.py says how and why).
c.Autograde.exporter_class = "autograder.grading.nbgrader_guard.RefuseAutograde"
c.GenerateFeedback.exporter_class = "autograder.grading.nbgrader_guard.RefuseFeedback"

# Our grader. Timeouts are generous on purpose: honest training cells must not be cut on a
# loaded machine; the sandbox's CPU-time limit and the notebook limit stop runaway code.
c.Grading.cell_timeout = 300          # seconds for one cell (wall clock)
c.Grading.notebook_timeout = 1200     # seconds for the whole notebook (wall clock)
c.Grading.cpu_seconds = 3600          # RLIMIT_CPU of the kernel
c.Grading.memory_gib = 8              # RLIMIT_AS on CPU-only jobs (never on GPU jobs)
c.Grading.max_processes = 256         # cgroup pids.max where cgroups are writable
c.Grading.tmpfs_mib = 1024            # the sandbox's private /tmp
c.Grading.job_folder_mib = 64         # the kernel's job folder on the host (sockets): its own tmpfs
c.Grading.job_folder_inodes = 4096    # ... and the files and folders it may hold
c.Grading.threads_per_job = 1         # OMP/MKL threads in each kernel
c.Grading.require_sandbox = False     # True: refuse to grade where bubblewrap cannot run

# Where kernels run. Locally: one slot per core (threads_per_job each), or jobs_per_gpu slots per
# GPU, each with 1/jobs_per_gpu of its GPU's memory (enforced by an NVML watchdog).
c.Grading.executor = "local"          # or "ray" (pip install -e '.[ray]'), with c.Grading.ray_address
c.Grading.gpus = "auto"               # "auto": every /dev/nvidiaN; "none": CPU only; or "0,2"
c.Grading.jobs_per_gpu = 1
c.Grading.prepared_per_slot = 1       # kernels each slot starts ahead (sandbox, imports, CUDA); 0: none

# `autograder collect LAB DIR`: whose a file is comes from the LMS's own naming only (README,
# "Collecting LMS downloads"): "plain" (<student>_<notebook>.ipynb or <student>/LAB/<notebook>.ipynb),
# "canvas" (id: the Canvas user id) or "moodle" (id: the participant id). Our own extraction, not
# nbgrader's zip_collect (its FileNameCollectorPlugin matched paths inside students' zips).
c.Collect.layout = "plain"
c.Collect.max_file_mib = 64           # one notebook (or one student's zip), declared and as read

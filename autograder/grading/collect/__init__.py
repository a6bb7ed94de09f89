"""`autograder collect LAB DIR`: LMS downloads → submitted/<student>/LAB/, one bad file at a time.

DIR holds what the LMS gave: its bulk zip(s), per-student files or zips, loose notebooks. Who a
file belongs to comes only from the LMS's own naming (`c.Collect.layout`: canvas, moodle, plain),
of a file in DIR or of an entry of a bulk zip, never from a path inside a student's own archive:
everything in alice's archive is alice's, whatever it is called.

Nothing is extracted by zipfile or nbgrader: each entry is checked (no absolute path, drive letter,
backslash, `..`, control character, link, device, encryption; a size cap declared *and* counted
while reading; a cap on entries and on what one student's archive yields) and only notebooks are
written, by us, with O_CREAT|O_EXCL|O_NOFOLLOW, mode 0644 (folders 0755), under names we chose.
A file that breaks a rule is reported with the rule and skipped, and so is the rest of that
student's download (never half a submission); everyone else is collected.

Duplicates (one student, one notebook name, different contents) keep the newest when the LMS
orders them (Canvas: its attachment ids; Moodle, plain: the zip entries' dates, unless
`c.Collect.zip_dates` is off) and skip that student when it cannot.

Each student's `submitted/<student>/LAB/` is built in a temporary folder beside `submitted/` and
swapped in with one rename (renameat2 RENAME_EXCHANGE): a collection killed at any moment leaves
each student's old or new submission, never half of one, and a rerun collects the same.

The modules, one job each: naming.py (the LMS presets and the id and name rules), entries.py
(reading a zip entry safely), folders.py (writing safely: the temporary folder, the capped
copies, the exchange into submitted/), downloads.py (reading the download folder), report.py
(what a run finds and reports), run.py (one collection run and `collect_lab`).
"""

from .folders import TEMP_PREFIX
from .naming import LAYOUTS, Refused, check_student_id
from .report import Collected, CollectReport, Skipped
from .run import collect_lab

__all__ = [
    "LAYOUTS",
    "TEMP_PREFIX",
    "CollectReport",
    "Collected",
    "Refused",
    "Skipped",
    "check_student_id",
    "collect_lab",
]

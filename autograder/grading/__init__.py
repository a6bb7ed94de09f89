"""The coordinator: the trusted side of grading. It never runs student code.

- batch.py           `autograder grade`: every submission through sanitize → executor → verdicts → gradebook
- lab.py             what every submission of a lab is judged against; the course-level checks
- kernel_policy.py   what a grading kernel may see (limits, environment, binds) and which executor runs it
- submission_files.py, sanitize.py   reading a submission safely; nbgrader's restore of locked and hidden cells
- verdicts.py        where a verdict is computed: observations against references and held-out labels
- results.py, gradebook.py           the outcome of each submission, and nbgrader's gradebook (single writer)
- table.py           the grades table of `autograder grade` and `autograder demo`
- feedback.py, markup.py             the student's page; markdown and math that run nothing
- export.py          the CSV (status, failure kind, score), safe to open in a spreadsheet
- collect/           LMS downloads → submitted/<student>/<lab>/
- nbgrader_guard.py  nbgrader's own autograde and feedback turned off
"""

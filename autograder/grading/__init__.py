"""The coordinator: the trusted side of grading. It never runs student code.

- batch.py           `autograder grade`: every submission through sanitize → executor → verdicts → gradebook
- kernel_policy.py   what a grading kernel may see (limits, environment, binds) and which executor runs it
- submission_files.py, sanitize.py   reading a submission safely; nbgrader's restore of locked and hidden cells
- verdicts.py        where a verdict is computed: observations against references and held-out labels
- results.py, gradebook.py           the outcome of each submission, and nbgrader's gradebook (single writer)
- feedback.py, export.py, collect.py the student's page, the CSV, LMS downloads → submitted/
- nbgrader_guard.py  nbgrader's own autograde and feedback turned off
"""

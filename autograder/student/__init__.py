"""What a student installs with the course's notebooks (the `autograder-student` wheel).

`autograder validate NOTEBOOK` (cli.py) runs a notebook the way the grader will and says what
would go wrong before it is submitted (validate.py). This package ships without nbgrader and
the grading side: of `autograder` it imports only `autograder.checks` (pinned by
tests/test_import_rules.py).
"""

# The two commands. Both set up .venv (and missing system packages) first; both are idempotent.
.PHONY: demo test build setup bench kit lab

demo: setup
	.venv/bin/autograder demo

# Lint, format and type errors fail the target before any test runs (configuration: pyproject.toml);
# the 20 slowest tests are printed at the end, so every CI log shows where the suite spends its time.
test:
	scripts/setup.sh --test
	.venv/bin/ruff check autograder tests benchmarks
	.venv/bin/ruff format --check autograder tests benchmarks
	.venv/bin/mypy
	.venv/bin/python -m pytest -n 2 --dist loadfile --durations=20 tests

setup:
	scripts/setup.sh

build: setup
	.venv/bin/autograder data --no-download
	.venv/bin/autograder build

bench: setup
	.venv/bin/python benchmarks/build_time.py
	.venv/bin/python benchmarks/grading_overhead.py
	.venv/bin/python benchmarks/throughput.py

kit:
	.venv/bin/autograder kit --output kit

# An instructor trying the course as a student would; this (instructor) venv has nbgrader's menus in Jupyter, the student one does not.
lab: kit
	.venv/bin/jupyter lab kit/labs

"""Limits for tests: the course's defaults (c.Grading, through kernel_policy.limits_from, the one
place settings become limits) with a test's own overrides, in the executors' units (bytes)."""

from __future__ import annotations

import dataclasses

from autograder.executors import Limits
from autograder.grading.kernel_policy import limits_from
from autograder.settings import Grading


def default_limits(**overrides) -> Limits:
    return dataclasses.replace(limits_from(Grading()), **overrides)

"""The checks API that test cells call (`check.close`, `check.shape`, `check.equal`, `check.grad`...),
and `numeric_gradient`, the centred differences (float64, fixed step) that test cells use as an
independent reference for a hand-written gradient.

This package is also mounted, alone, inside the grading sandbox: it must import nothing
from the rest of `autograder`, and nothing beyond numpy, safetensors and IPython.
"""

from .checker import Checker
from .compare import Outcome, compare
from .gradients import numeric_gradient, relative_error
from .observation import MIME_TYPE, Observation

__all__ = ["Checker", "Outcome", "compare", "MIME_TYPE", "Observation", "numeric_gradient", "relative_error"]

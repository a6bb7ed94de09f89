"""The checks API that test cells call (`check.close`, `check.shape`, `check.equal`).

This package is also mounted, alone, inside the grading sandbox: it must import nothing
from the rest of `autograder`, and nothing beyond numpy, safetensors and IPython.
"""

from .checker import Checker
from .compare import Outcome, compare
from .observation import MIME_TYPE, Observation

__all__ = ["Checker", "Outcome", "compare", "MIME_TYPE", "Observation"]

"""The "by hand" rule: a graded function may not use autograd, decided by reading the notebook.

Under grading the coordinator applies this to the submitted notebook's code cells (AST only,
nothing is executed); in a student's Jupyter the same rule reads the kernel's cell history for
immediate feedback. The rule refuses what it cannot verify; it does not guess:

- Every cell is read as IPython runs it (its input transformations, then `ast.parse`). A cell
  that still does not parse is a violation; so is any magic or shell escape except `%matplotlib`.
- The graded function, every notebook function it reaches (by call or as a value), and every
  notebook function that its test cell calls to make its inputs (`affine_forward` for
  `affine_backward`), must each be a plain top-level `def`, bound once in the whole notebook.
  Inside them every name must resolve statically (a local, an allowed builtin, another such def,
  an import of an allowed module, or module-level data assigned once and never called), every
  call must go to such a name, to an attribute, or to an inline lambda, and nothing may touch
  autograd (`.backward`, `.grad`, `torch.autograd`, `torch.func`, `requires_grad`, hooks, ...).
- Notebook-wide, in every cell the student can edit (all cells but the indices in `trusted`):
  no dynamic code (eval, exec, getattr, globals, get_ipython, ...), no imports outside a short
  allow-list, no private or dunder attributes, no classes, no attribute set to anything but a
  constant, no code loaded from files or pickles, no autograd function kept as a value, and no
  lambda or function passed around as a value that uses autograd (the grader cannot tell where
  such a value ends up).

The rule's modules, one job each: vocabulary.py (what it allows and refuses by name, and the words
of its sentences), parsing.py (a cell as IPython runs it), bindings.py (what a cell binds),
reading.py (one reading of a notebook), reach.py (the graded function and what it reaches),
refusals.py (the notebook-wide refusals), judge.py (`function_violations`, the entry point).
"""

from .judge import function_violations
from .parsing import parse_python, without_magics

__all__ = ["function_violations", "parse_python", "without_magics"]

"""Who may import whom inside `autograder` (issue 14): the package's rooms, pinned by its imports.

Every module's imports are read with `ast` (no module is imported): every Import and
ImportFrom node anywhere in the file, relative ones resolved, `from pkg import name` read as
the submodule `pkg.name` where that module exists. Each import is one of

- module-level: runs when the module is imported (class bodies and module-level try/if count);
- in a function: runs when the function is called (lazy: for cost, such as torch or ray, or
  for an optional extra);
- type-checking: under `if TYPE_CHECKING:`, never runs.

The boundary rules hold for all three (a lazy import of the coordinator is still the
execution side seeing the coordinator). Tests and benchmarks are not checked: they may open
any module to test it.

Rules (each failure names the importing file, its line and the imported module):

1. `autograder.checks` imports nothing else of `autograder`, not even `autograder` itself: it
   is the only package a sandbox sees, mounted alone as /opt/autograder-lib/autograder/checks
   (kernel_policy.CHECKS_PACKAGE), where `autograder` is a namespace package holding nothing else.
2. `autograder.executors.*` imports only `autograder.executors.*` and `autograder.outcomes`. The
   execution side runs untrusted code: it never sees the coordinator (grading), the build
   (authoring), the references, the course or the CLI and demo that drive them, and it gets
   everything it needs (limits, environment, binds) in a JobSpec from the coordinator. So not
   `autograder.settings` either (it does not read settings today; one place, kernel_policy,
   turns settings into a JobSpec) and not `autograder.checks` (it does not today: observations
   are data it carries back undecoded, judged by the coordinator). `autograder.outcomes`
   (FailureKind) is a shared contract that imports nothing: the executors set the failure
   kind where a run fails.
3. Outside `autograder/executors/` the execution side is reached only through
   `autograder.executors` and the public names of its `__init__` (`__all__`), never a
   submodule, so that the executors' files can be split and renamed behind that door. There is
   no exception today (ALLOWED_EXECUTOR_SUBMODULES is empty; RayExecutor is a public name, and
   ray_cluster imports ray only when one is made); the test fails when an exception is no
   longer used.
4. `autograder.authoring` (the build) imports neither `autograder.grading` nor
   `autograder.executors`; grading imports nothing of authoring except ALLOWED_AUTHORING_NAMES
   (sanitize strips `expected=` arguments with the build's own code, so that grading and the
   build agree on what is reference code).
5. The shared contracts (`autograder.cells`, `autograder.references`, `autograder.outcomes`)
   sit above both sides: they import neither side (grading, authoring, executors) nor what
   drives them (course, settings, demo, cli, data).
6. No import cycles: the module-level imports form a graph without cycles (no strongly
   connected component of two or more modules, no module importing itself). A lazy or
   type-checking import is allowed only when it does not close a cycle of module-level
   imports: a lazy import is for cost or an optional extra, never to hide a dependency that
   runs the wrong way (that would be a cycle the day someone moves the import to the top).
7. Every import inside the package names a module that exists (this checker resolves them
   right, and a file split left no stale import behind).
8. `autograder.student` (the student's `autograder validate`) imports only `autograder.checks`
   and itself: it ships in the student wheel (autograder/__init__.py, checks/**, student/**)
   without nbgrader or the grading side, so anything else of the package is not there.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "autograder"

EXECUTORS = f"{PACKAGE}.executors"
CHECKS = f"{PACKAGE}.checks"
GRADING = f"{PACKAGE}.grading"
AUTHORING = f"{PACKAGE}.authoring"
OUTCOMES = f"{PACKAGE}.outcomes"
STUDENT = f"{PACKAGE}.student"
SHARED_CONTRACTS = (f"{PACKAGE}.cells", f"{PACKAGE}.references", OUTCOMES)

# (importer, imported submodule of the executors) -> why it may skip autograder.executors.
ALLOWED_EXECUTOR_SUBMODULES: dict[tuple[str, str], str] = {}  # none today: the door has no side entrance

# (importer, imported module of the build, name) -> why grading may use it.
ALLOWED_AUTHORING_NAMES = {
    (
        f"{GRADING}.sanitize",
        f"{AUTHORING}.reference_code",
        "strip_expected_arguments",
    ): "sanitize strips expected= arguments from restored test cells with the build's own "
    "reading of reference code, so that both sides agree on what is reference code",
}


@dataclass(frozen=True)
class Import:
    """One imported module (one per name for `from X import a, b`)."""

    file: str  # the importing file, relative to the folder above the package
    line: int
    importer: str  # dotted module name of the importing file
    imported: str  # dotted module name (a submodule for `from pkg import submodule`)
    name: str | None  # the name taken from `imported` (None for `import X` and submodules)
    when: str  # "module-level", "in a function" or "type-checking"

    def where(self) -> str:
        taken = f" ({self.name})" if self.name and self.name != "*" else ""
        return f"{self.file}:{self.line} imports {self.imported}{taken} [{self.when}]"


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package whose folder is `root`."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.Module):
    """(node, when) for every Import and ImportFrom node in the tree, in source order."""
    found = []

    def visit(node: ast.AST, when: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, when))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, "in a function" if when == "module-level" else when)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for statement in child.body:
                    visit(ast.Module(body=[statement], type_ignores=[]), "type-checking")
                for statement in child.orelse:
                    visit(ast.Module(body=[statement], type_ignores=[]), when)
            else:
                visit(child, when)

    visit(tree, "module-level")
    return sorted(found, key=lambda pair: (pair[0].lineno, pair[0].col_offset))


def read_imports(root: Path, text_of=None) -> list[Import]:
    """Every import, inside the package whose folder is `root`, of a module of that package.

    text_of: path -> source text (default: the file's text), so that a test can feed the
    checker a module that is not on disk."""
    package = root.name
    modules = module_names(root)
    imports = []
    for importer, path in modules.items():
        text = text_of(path) if text_of else path.read_text()
        shown = path.relative_to(root.parent).as_posix()
        is_package = path.name == "__init__.py"
        for node, when in _import_nodes(ast.parse(text, filename=shown)):
            if isinstance(node, ast.Import):
                targets = [(alias.name, None) for alias in node.names]
            else:
                if node.level:
                    base = importer.split(".") if is_package else importer.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                targets = []
                for alias in node.names:
                    submodule = f"{target}.{alias.name}"
                    targets.append((submodule, None) if submodule in modules else (target, alias.name))
            for imported, name in targets:
                if imported == package or imported.startswith(package + "."):
                    imports.append(Import(shown, node.lineno, importer, imported, name, when))
    return imports


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def public_names(root: Path, package: str) -> set[str]:
    """The names in `__all__` of `package`'s __init__ (read, not imported)."""
    init = module_names(root)[package]
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return set()


# ------------------------------------------------------------------------------------ the rules
# Each rule: (imports, root) -> failure messages, one an offending import.


def checks_stand_alone(imports: list[Import], root: Path) -> list[str]:
    return [
        f"{i.where()}: {CHECKS} is mounted alone in the sandbox and may import only itself"
        for i in imports
        if within(i.importer, CHECKS) and not within(i.imported, CHECKS)
    ]


def executors_see_only_themselves(imports: list[Import], root: Path) -> list[str]:
    return [
        f"{i.where()}: the execution side imports only {EXECUTORS}.* and {OUTCOMES} "
        "(never the coordinator, the build, references, course, settings or checks)"
        for i in imports
        if within(i.importer, EXECUTORS) and not (within(i.imported, EXECUTORS) or within(i.imported, OUTCOMES))
    ]


def executors_through_their_door(imports: list[Import], root: Path) -> list[str]:
    public = public_names(root, EXECUTORS)
    found = []
    for i in imports:
        if within(i.importer, EXECUTORS) or not within(i.imported, EXECUTORS):
            continue
        if i.imported != EXECUTORS and (i.importer, i.imported) not in ALLOWED_EXECUTOR_SUBMODULES:
            found.append(f"{i.where()}: outside the executors, import from {EXECUTORS} itself, not a submodule")
        elif i.imported == EXECUTORS and i.name is not None and i.name not in public:
            found.append(f"{i.where()}: {i.name!r} is not a public name of {EXECUTORS} (its __all__)")
    return found


def build_and_grading_apart(imports: list[Import], root: Path) -> list[str]:
    found = []
    for i in imports:
        if within(i.importer, AUTHORING) and (within(i.imported, GRADING) or within(i.imported, EXECUTORS)):
            found.append(f"{i.where()}: the build imports neither grading nor the executors")
        elif (
            within(i.importer, GRADING)
            and within(i.imported, AUTHORING)
            and (i.importer, i.imported, i.name) not in ALLOWED_AUTHORING_NAMES
        ):
            found.append(
                f"{i.where()}: grading imports nothing of the build (allowed: "
                f"{sorted(name for *_, name in ALLOWED_AUTHORING_NAMES)})"
            )
    return found


def contracts_above_both_sides(imports: list[Import], root: Path) -> list[str]:
    below = (
        GRADING,
        AUTHORING,
        EXECUTORS,
        f"{PACKAGE}.course",
        f"{PACKAGE}.settings",
        f"{PACKAGE}.demo",
        f"{PACKAGE}.cli",
        f"{PACKAGE}.data",
    )
    return [
        f"{i.where()}: a shared contract imports neither side of grading nor what drives them"
        for i in imports
        if any(within(i.importer, c) for c in SHARED_CONTRACTS) and any(within(i.imported, b) for b in below)
    ]


def student_sees_only_the_checks(imports: list[Import], root: Path) -> list[str]:
    return [
        f"{i.where()}: {STUDENT} ships in the student wheel and may import only {CHECKS} (and itself)"
        for i in imports
        if within(i.importer, STUDENT) and not (within(i.imported, CHECKS) or within(i.imported, STUDENT))
    ]


def imports_resolve(imports: list[Import], root: Path) -> list[str]:
    modules = module_names(root)
    return [f"{i.where()}: no such module in the package" for i in imports if i.imported not in modules]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of `graph`, each sorted, in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def _graph(imports: list[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for i in imports:
        if i.when == "module-level":
            graph.setdefault(i.importer, set()).add(i.imported)
            graph.setdefault(i.imported, set())
    return graph


def _path(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """A shortest path start -> ... -> goal in graph (breadth first), or None."""
    previous: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph.get(node, ())):
                if nxt not in previous:
                    previous[nxt] = node
                    following.append(nxt)
        if goal in previous:
            path = [goal]
            while previous[path[-1]] is not None:
                path.append(previous[path[-1]])
            return path[::-1]
        frontier = following
    return None


def no_cycles(imports: list[Import], root: Path) -> list[str]:
    graph = _graph(imports)
    found = []
    for component in strongly_connected(graph):
        members = set(component)
        if len(component) > 1 or component[0] in graph[component[0]]:
            edges = [
                i.where()
                for i in imports
                if i.when == "module-level" and i.importer in members and i.imported in members
            ]
            found.append(f"import cycle among {', '.join(component)}: " + "; ".join(edges))
    return found


def lazy_imports_close_no_cycle(imports: list[Import], root: Path) -> list[str]:
    graph = _graph(imports)
    found = []
    for i in imports:
        if i.when == "module-level":
            continue
        back = [i.importer] if i.imported == i.importer else _path(graph, i.imported, i.importer)
        if back is not None:
            found.append(
                f"{i.where()}: closes the cycle {' -> '.join([i.importer, *back])} "
                "(module-level imports back): the dependency runs the wrong way"
            )
    return found


RULES = [
    checks_stand_alone,
    executors_see_only_themselves,
    executors_through_their_door,
    build_and_grading_apart,
    contracts_above_both_sides,
    student_sees_only_the_checks,
    no_cycles,
    lazy_imports_close_no_cycle,
    imports_resolve,
]

ROOT = REPO / PACKAGE
IMPORTS = read_imports(ROOT)


@pytest.mark.parametrize("rule", RULES, ids=[rule.__name__ for rule in RULES])
def test_the_package_keeps_the_rule(rule):
    found = rule(IMPORTS, ROOT)
    assert not found, "\n".join(found)


def test_every_exception_is_still_needed():
    """An exception no import uses any more is removed, so that it cannot let a new import in."""
    used_submodules = {(i.importer, i.imported) for i in IMPORTS}
    used_names = {(i.importer, i.imported, i.name) for i in IMPORTS}
    stale = [f"ALLOWED_EXECUTOR_SUBMODULES{key}" for key in ALLOWED_EXECUTOR_SUBMODULES if key not in used_submodules]
    stale += [f"ALLOWED_AUTHORING_NAMES{key}" for key in ALLOWED_AUTHORING_NAMES if key not in used_names]
    assert not stale, "no longer imported; remove: " + ", ".join(stale)


def test_the_reader_sees_the_package():
    """The checker reads what is there: every room has modules, every kind of import is met."""
    modules = module_names(ROOT)
    for room in (CHECKS, EXECUTORS, GRADING, AUTHORING, STUDENT, f"{PACKAGE}.data"):
        assert sum(within(m, room) for m in modules) > 1, room
    assert {i.when for i in IMPORTS} == {"module-level", "in a function", "type-checking"}
    # the coordinator takes names from the executors' door (`from ..executors import JobSpec`) ...
    assert any(within(i.importer, GRADING) and i.imported == EXECUTORS and i.name for i in IMPORTS)
    # ... and every module of the package is read: the checks' own imports among them
    assert any(within(i.importer, CHECKS) and within(i.imported, CHECKS) for i in IMPORTS)


# ------------------------------------------------------------------------------ the checker itself

FAKE_PACKAGE = {
    "__init__.py": "",
    "cells.py": "from .grading import batch\n",  # 5: a contract below
    "checks/__init__.py": "from .compare import close\n",
    "checks/compare.py": "import numpy\n\ndef close():\n    from autograder import cells\n",  # 1: lazy, still out
    "executors/__init__.py": "from .local import Local\n__all__ = ['Local']\n",
    "executors/local.py": "from ..outcomes import Kind\nfrom ..settings import Grading\nclass Local:\n    pass\n",  # 2
    "outcomes.py": "Kind = 1\n",
    "settings.py": "Grading = 1\n",
    "authoring/__init__.py": "",
    "authoring/build.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
    "    from ..grading.batch import grade\n",  # 4: type-only, still out
    "authoring/reference_code.py": "def strip_expected_arguments(): pass\ndef other(): pass\n",
    "grading/__init__.py": "",
    "grading/batch.py": "from ..executors.local import Local\n"  # 3: a submodule
    "from ..executors import Local, Hidden\n"  # 3: not public
    "from ..authoring.reference_code import other\n"  # 4: not allowed
    "from . import table\n"
    "def grade():\n    from .feedback import write\n",  # 6: closes a cycle
    "grading/table.py": "from .batch import grade\n",  # 6: a cycle
    "grading/feedback.py": "from .batch import grade\nfrom .gone import x\n",  # 7: no such module
    "grading/sanitize.py": "from ..authoring.reference_code import strip_expected_arguments\n",  # allowed
    "student/__init__.py": "",
    "student/cli.py": "from .validate import run\nfrom ..checks import close\n"  # allowed: itself, the checks
    "def main():\n    from ..settings import Grading\n",  # 8: lazy, still out
    "student/validate.py": "import autograder\ndef run(): pass\n",  # 8: not even the package itself
}


@pytest.fixture
def fake(tmp_path) -> Path:
    root = tmp_path / PACKAGE
    for name, text in FAKE_PACKAGE.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


CAUGHT = [
    (checks_stand_alone, ["autograder/checks/compare.py:4 imports autograder.cells [in a function]"]),
    (executors_see_only_themselves, ["autograder/executors/local.py:2 imports autograder.settings (Grading)"]),
    (
        executors_through_their_door,
        [
            "autograder/grading/batch.py:1 imports autograder.executors.local (Local)",
            "autograder/grading/batch.py:2 imports autograder.executors (Hidden)",
        ],
    ),
    (
        build_and_grading_apart,
        [
            "autograder/authoring/build.py:3 imports autograder.grading.batch (grade) [type-checking]",
            "autograder/grading/batch.py:3 imports autograder.authoring.reference_code (other)",
        ],
    ),
    (contracts_above_both_sides, ["autograder/cells.py:1 imports autograder.grading.batch [module-level]"]),
    (
        student_sees_only_the_checks,
        [
            "autograder/student/cli.py:4 imports autograder.settings (Grading) [in a function]",
            "autograder/student/validate.py:1 imports autograder [module-level]",
        ],
    ),
    (
        no_cycles,
        [
            "import cycle among autograder.grading.batch, autograder.grading.table: "
            "autograder/grading/batch.py:4 imports autograder.grading.table [module-level]; "
            "autograder/grading/table.py:1 imports autograder.grading.batch (grade) [module-level]"
        ],
    ),
    (
        lazy_imports_close_no_cycle,
        [
            "autograder/grading/batch.py:6 imports autograder.grading.feedback (write) "
            "[in a function]: closes the cycle autograder.grading.batch -> "
            "autograder.grading.feedback -> autograder.grading.batch"
        ],
    ),
    (imports_resolve, ["autograder/grading/feedback.py:2 imports autograder.grading.gone (x)"]),
]


@pytest.mark.parametrize(("rule", "expected"), CAUGHT, ids=[rule.__name__ for rule, _ in CAUGHT])
def test_the_checker_catches_each_violation_and_names_file_line_and_module(fake, rule, expected):
    found = rule(read_imports(fake), fake)
    assert len(found) == len(expected), found
    for message, start in zip(found, expected, strict=True):
        assert message.startswith(start), (message, start)


def test_the_checker_passes_a_clean_package(fake):
    """With the violating lines gone, every rule is quiet: the rules see the violations, not the layout."""
    clean = {
        **FAKE_PACKAGE,
        "cells.py": "",
        "checks/compare.py": "import numpy\n",
        "executors/local.py": "from ..outcomes import Kind\nclass Local:\n    pass\n",
        "authoring/build.py": "from ..cells import x\n",
        "grading/batch.py": "from ..executors import Local\nfrom . import table\n"
        "def grade():\n    from .feedback import write\n",
        "grading/table.py": "",
        "grading/feedback.py": "from .table import x\n",
        "student/cli.py": "from .validate import run\nfrom ..checks import close\n",
        "student/validate.py": "from autograder.checks.compare import close\ndef run(): pass\n",
    }
    texts = {fake / name: text for name, text in clean.items()}
    imports = read_imports(fake, text_of=texts.__getitem__)
    assert {rule.__name__: rule(imports, fake) for rule in RULES} == {rule.__name__: [] for rule in RULES}


def test_relative_imports_are_resolved_like_python(fake):
    texts = {path: "" for path in fake.rglob("*.py")}
    texts[fake / "grading" / "__init__.py"] = "from . import batch\nfrom .. import cells\nfrom ..checks import close\n"
    texts[fake / "grading" / "table.py"] = (
        "from . import batch\nfrom .. import cells\nimport autograder.checks.compare\n"
    )
    found = {(i.importer, i.imported, i.name) for i in read_imports(fake, text_of=texts.__getitem__)}
    assert found == {
        ("autograder.grading", "autograder.grading.batch", None),  # a package's `.` is itself
        ("autograder.grading", "autograder.cells", None),
        ("autograder.grading", "autograder.checks", "close"),  # a name, not a module
        ("autograder.grading.table", "autograder.grading.batch", None),  # a module's `.` is its package
        ("autograder.grading.table", "autograder.cells", None),
        ("autograder.grading.table", "autograder.checks.compare", None),
    }


def test_one_forbidden_line_in_the_real_package_fails_its_rules():
    """The real package, with one line added to an executor's text (not on disk): caught, and named."""
    spec = ROOT / "executors" / "spec.py"
    added = spec.read_text() + "\n\ndef grade():\n    from ..grading.batch import grade_lab\n"
    imports = read_imports(ROOT, text_of=lambda path: added if path == spec else path.read_text())
    where = (
        f"autograder/executors/spec.py:{len(added.splitlines())} imports autograder.grading.batch (grade_lab) "
        "[in a function]"
    )
    assert executors_see_only_themselves(imports, ROOT) == [
        f"{where}: the execution side imports only {EXECUTORS}.* and {OUTCOMES} (never the coordinator, the build, "
        "references, course, settings or checks)"
    ]
    # batch imports the executors at module level, so this lazy import closes a cycle as well
    assert lazy_imports_close_no_cycle(imports, ROOT) == [
        f"{where}: closes the cycle autograder.executors.spec -> autograder.grading.batch -> autograder.executors "
        "-> autograder.executors.spec (module-level imports back): the dependency runs the wrong way"
    ]

"""Which project source files a script runs: the static closure of its ``chromapipe`` imports.

Two things must agree on it: DVC's ``deps`` of each stage (a stage whose code changed must rerun —
``tests/test_pipeline_dvc.py`` checks every stage's deps cover the closure of its script) and the
fingerprint that decides whether a training run is resumed or started afresh. Imports are read from the
syntax tree, including those inside functions (the project imports heavy modules lazily), and so are
modules named in strings (``"chromapipe.models.pix2pix:Pix2PixRecipe"`` in the model registry): the
closure is an upper bound of what can run. A script's sibling modules (``pipeline/_stage.py``) count too.

One exception keeps the bound useful: the package's lazy exports (``chromapipe.LAZY_EXPORTS``, e.g.
``from chromapipe import Colorizer``) count for the files that import them by that name, not for every file
that imports the package — otherwise every stage would "run" the Python API's inference code, and a change
there would retrain every model. (An attribute access ``chromapipe.Colorizer`` is not seen; the project's
own code imports the defining module instead.)
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

from chromapipe import LAZY_EXPORTS

PACKAGE = "chromapipe"
PACKAGE_DIR = Path(__file__).resolve().parent
_DOTTED = re.compile(r"^chromapipe(\.\w+)+(:\w+)?$")  # a module named in a string: "pkg.mod" or "pkg.mod:Class"


def _module_file(name: str) -> Path | None:
    """The file of a ``chromapipe`` module or package, or None if ``name`` is not one (e.g. an attribute)."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    base = PACKAGE_DIR.joinpath(*name.split(".")[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    rel = path.resolve().relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_names(path: Path) -> set[str]:
    """Absolute module names imported by ``path`` (``from a import b`` yields both ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_root = path.resolve() == PACKAGE_DIR / "__init__.py"  # its strings are the lazy-export table
    is_package_file = path.resolve().is_relative_to(PACKAGE_DIR)
    here = _module_name(path).split(".") if is_package_file else []
    if is_package_file and path.name != "__init__.py":
        here = here[:-1]  # the package a module lives in
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, str) and _DOTTED.match(node.value) and not is_root
        ):
            names.add(node.value.split(":")[0])
    names.update(module for export, module in LAZY_EXPORTS.items() if f"{PACKAGE}.{export}" in names)
    return names


def import_closure(entry_files: Iterable[Path]) -> set[Path]:
    """The entry files plus every ``chromapipe`` source file they import, transitively, with the
    ``__init__.py`` of every package on the way (Python runs those too)."""
    todo = [Path(p).resolve() for p in entry_files]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_names(path):
            sibling = path.parent / f"{name}.py"
            if "." not in name and not path.is_relative_to(PACKAGE_DIR) and sibling.is_file():
                todo.append(sibling)  # a script's helper module beside it
                continue
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # a.b.c runs a/__init__, a/b/__init__, then a/b/c
                found = _module_file(".".join(parts[:i]))
                if found is not None and found not in seen:
                    todo.append(found)
    return seen

"""Which files decide a stage's output, derived from the code rather than listed by hand.

A stage runs one entry module (``aalp.core.training`` for ``train``, ...). Its output can change when any
module that entry imports changes, directly or transitively, at the top of a file or inside a function, so
the code dependencies of a stage are the closure of its entry over every ``import`` statement inside the
package, read from the source with :mod:`ast` (nothing is imported or executed). The package ``__init__``
files along each module's path are part of it, as Python runs them on import.

Files other than Python that a module reads (the parameter schema, the paper's tables, page templates)
are declared next to the code that reads them, as a module-level ``RESOURCES`` list of repository-relative
paths or globs; a stage depends on the ``RESOURCES`` of every module in its closure. A report item also
depends on its notebook and on the package modules the notebook imports.

The same closure gives ``code_hash``: one digest of the files a stage's output depends on, which run
records and the publisher compare.
"""
from __future__ import annotations

import ast
import hashlib
import json
from functools import lru_cache
from pathlib import Path

PACKAGE = "aalp"
PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parents[1]


def module_file(name: str) -> Path | None:
    """The source file of module `name` ('aalp.core.training'), its package's __init__.py for a package, or
    None when `name` is not a module of this package."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def module_name(path: Path) -> str:
    """'aalp.core.training' for src/aalp/core/training.py ('aalp.core' for its __init__.py)."""
    rel = Path(path).resolve().relative_to(PACKAGE_DIR).with_suffix("")
    parts = [PACKAGE, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _resolve(tree: ast.AST, current: str, is_package: bool) -> set[str]:
    """Every package module named by an import statement anywhere in `tree` (functions included)."""
    found: set[str] = set()
    pkg = current if is_package else current.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = pkg.split(".")
                base_parts = base_parts[:len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}") is not None)
    return {m for m in found if module_file(m) is not None}


@lru_cache(maxsize=None)
def _direct(path: Path) -> frozenset[str]:
    name = module_name(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    return frozenset(_resolve(tree, name, path.name == "__init__.py"))


def direct_imports(name: str) -> set[str]:
    """The package modules that module `name` imports itself (parent packages excluded)."""
    f = module_file(name)
    if f is None:
        raise ValueError(f"{name} is not a module of the {PACKAGE} package")
    return set(_direct(f))


def closure(entries: list[str]) -> list[str]:
    """`entries` and every package module they import, transitively, with the parent packages of each
    (their __init__ runs on import); sorted."""
    todo, seen = list(entries), set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        if module_file(m) is None:
            raise ValueError(f"{m} is not a module of the {PACKAGE} package")
        seen.add(m)
        todo += [p for p in _parents(m) if p not in seen]
        todo += [d for d in direct_imports(m) if d not in seen]
    return sorted(seen)


def notebook_imports(notebook: Path) -> set[str]:
    """The package modules a notebook's code cells import (IPython magics and shell lines skipped); none for
    a notebook that does not exist (it is still a dependency, which the engines then report missing)."""
    if not Path(notebook).is_file():
        return set()
    nb = json.loads(Path(notebook).read_text())
    found: set[str] = set()
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        code = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!")))
        found |= _resolve(ast.parse(code), "__notebook__", False)
    return found


def resources(module: str) -> list[str]:
    """The repository-relative paths or globs in module `module`'s top-level RESOURCES list."""
    return list(_resources(module_file(module)))


@lru_cache(maxsize=None)
def _resources(f: Path) -> tuple[str, ...]:
    tree = ast.parse(f.read_text())
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "RESOURCES" for t in targets) and node.value is not None:
            value = ast.literal_eval(node.value)
            if not (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
                raise ValueError(f"{f}: RESOURCES must be a literal list of repository-relative paths")
            return tuple(value)
    return ()


def _expand(pattern: str) -> list[Path]:
    if any(c in pattern for c in "*?["):
        return sorted(p for p in REPO_ROOT.glob(pattern) if p.is_file())
    return [REPO_ROOT / pattern]


def files(entries: list[str], notebook: Path | None = None) -> list[Path]:
    """Every file the output of a stage running `entries` (and rendering `notebook`) depends on, as
    absolute paths: the modules of the closure, the RESOURCES they declare, and the notebook."""
    modules = set(entries)
    if notebook is not None:
        modules |= notebook_imports(notebook)
    mods = closure(sorted(modules))
    out = [module_file(m) for m in mods]
    out += [p for m in mods for pat in resources(m) for p in _expand(pat)]
    if notebook is not None:
        out.append(Path(notebook).resolve())
    return sorted(dict.fromkeys(p.resolve() for p in out))


def code_hash(paths: list[Path]) -> str:
    """sha256 over the repository-relative names and contents of `paths` (first 16 hex digits)."""
    h = hashlib.sha256()
    for p in sorted(Path(p).resolve() for p in paths):
        h.update(p.relative_to(REPO_ROOT).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]

"""The source files a step runs: the modules of `jobs.<step>` and, transitively, every `jobs.*`
module they import (at the top or inside a function), with the data files (templates, tables)
beside them. A step's cache key hashes exactly these, so editing code a step imports invalidates
its cache and editing code it never imports does not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import jobs

ROOT = Path(jobs.__file__).parent
DATA_SUFFIXES = (".json", ".jinja", ".html")


def _module_file(name: str) -> Path | None:
    """The file of a `jobs.*` module or package, None for anything else."""
    parts = name.split(".")
    if parts[0] != "jobs":
        return None
    base = ROOT.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_of(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts if path.name == "__init__.py" else parts[:-1])


def _imports(path: Path) -> set[str]:
    """Module names `path` imports; `from a import b` yields a and a.b (b may be a module)."""
    names: set[str] = set()
    package = _package_of(path)
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def closure(step: str) -> list[Path]:
    """The files `python -m jobs.<step>` may run or read, sorted."""
    todo = [p for p in (ROOT / step).rglob("*.py") if "__pycache__" not in p.parts]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            for module in (*_parents(name), name):
                found = _module_file(module)
                if found is not None and found not in seen:
                    todo.append(found)
    data = {p for folder in {p.parent for p in seen} for p in folder.iterdir() if p.suffix in DATA_SUFFIXES}
    return sorted(seen | data)

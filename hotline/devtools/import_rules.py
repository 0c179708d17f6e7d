"""The import rules that keep the layout as it is (run by ``./run.sh lint`` and the tests).

- ``hotline.core`` imports nothing of ours, and no I/O library;
- ``ivr``, ``cti_bridge``, ``crm_sync`` import only ``hotline.core`` and themselves;
- ``hotline.web`` never imports ``cti_bridge`` (nor the dev tools);
- only the CLI, the composition root and the dev tools import ``hotline.devtools``;
- no package imports another in a cycle.

Imports are read from the source with :mod:`ast` (inside functions too), so a
lazy import does not slip through.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: Our packages as the rules see them (the longest prefix wins).
PACKAGES = (
    "hotline.core", "hotline.web", "hotline.devtools", "hotline",
    "ivr", "cti_bridge", "crm_sync", "agi_scripts",
)
#: What each package may import of ours, besides itself.
ALLOWED: dict[str, frozenset[str]] = {
    "hotline.core": frozenset(),
    "ivr": frozenset({"hotline.core"}),
    "cti_bridge": frozenset({"hotline.core"}),
    "crm_sync": frozenset({"hotline.core"}),
    "agi_scripts": frozenset(),  # runs inside Asterisk's tree, with pyst2 only
    "hotline.web": frozenset({"hotline.core", "crm_sync"}),
    "hotline.devtools": frozenset(
        {"hotline.core", "hotline", "ivr", "cti_bridge", "crm_sync"}
    ),
    # settings, cli and the composition root
    "hotline": frozenset(
        {"hotline.core", "hotline.web", "hotline.devtools", "ivr", "cti_bridge", "crm_sync"}
    ),
}
#: Modules of ``hotline`` (the top) that may import the dev tools.
DEVTOOLS_USERS = frozenset({"hotline.cli", "hotline.app"})
#: Libraries that do I/O: the core must not import them.
IO_LIBRARIES = frozenset({
    "asyncpg", "redis", "aiohttp", "socket", "subprocess", "sqlite3", "urllib.request",
    "http", "requests", "panoramisk", "asterisk", "shutil", "tempfile",
})


def package_of(module: str) -> str | None:
    for package in PACKAGES:
        if module == package or module.startswith(package + "."):
            return package
    return None


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in ``source``, relative ones resolved."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # ``from hotline import devtools``
                yield node.lineno, f"{target}.{alias.name}"


def source_files(root: Path) -> Iterator[Path]:
    for top in ("hotline", "ivr", "cti_bridge", "crm_sync", "agi_scripts"):
        yield from sorted((root / top).rglob("*.py"))


def check(root: Path = PROJECT_ROOT, files: Iterable[Path] | None = None) -> list[str]:
    """Every violation, one line each (``path:line: rule``); empty when all is well."""
    problems: list[str] = []
    graph: dict[str, set[str]] = {}
    for path in files if files is not None else source_files(root):
        module = module_name(root, path)
        own = package_of(module)
        if own is None:
            continue
        rel = path.relative_to(root)
        for line, target in imports_of(path.read_text("utf-8"), module, path.stem == "__init__"):
            if own == "hotline.core" and any(
                target == lib or target.startswith(lib + ".") for lib in IO_LIBRARIES
            ):
                problems.append(f"{rel}:{line}: hotline.core must not do I/O (imports {target})")
            theirs = package_of(target)
            if theirs is None or theirs == own:
                continue
            if theirs == "hotline" and target == "hotline":
                continue  # ``from hotline import x`` is judged by the x it names
            graph.setdefault(own, set()).add(theirs)
            if theirs not in ALLOWED[own]:
                problems.append(f"{rel}:{line}: {own} must not import {theirs} ({target})")
            elif theirs == "hotline.devtools" and own == "hotline" and module not in DEVTOOLS_USERS:
                problems.append(f"{rel}:{line}: only the CLI and the composition root "
                                f"import the dev tools ({module} imports {target})")
    problems.extend(f"import cycle: {' -> '.join(cycle)}" for cycle in _cycles(graph))
    return problems


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Package-level cycles (the dev tools, the CLI and the root are the top: they may
    import anything and nothing imports them back, which the rules above ensure)."""
    found: list[list[str]] = []
    top = {"hotline", "hotline.devtools"}

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in top:
                continue
            if nxt in path:
                cycle = [*path[path.index(nxt):], nxt]
                if sorted(cycle[:-1]) not in [sorted(c[:-1]) for c in found]:
                    found.append(cycle)
            else:
                visit(nxt, [*path, nxt])

    for start in sorted(graph):
        if start not in top:
            visit(start, [start])
    return found


def main() -> int:
    problems = check()
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"import rules: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Fail when a function or method is longer than the project's limit (default 60 lines).

ruff's rules count statements and branches (C901, PLR0912, PLR0915), not lines,
so a long function of simple statements (a query builder, a printer) would pass
them. This counts each function's lines from its ``def`` (decorators excluded)
to its last line, docstring included, nested functions as part of their parent.

    uv run python scripts/check_function_length.py [--max 60] [paths ...]

Paths default to the Python library and the other code CI lints (src, flows,
bench, scripts). Exit status 1 lists every function over the limit, longest first.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

DEFAULT_PATHS = ("src", "flows", "bench", "scripts")
DEFAULT_MAX_LINES = 60


def function_lengths(path: Path) -> Iterator[tuple[str, int, int]]:
    """(qualified name, first line, length) of every function defined in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, int, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                end = child.end_lineno or child.lineno
                yield name, child.lineno, end - child.lineno + 1
                yield from visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}{child.name}.")

    yield from visit(tree, "")


def python_files(paths: list[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_file() and path.suffix == ".py":
            yield path
        elif path.is_dir():
            yield from sorted(p for p in path.rglob("*.py") if ".venv" not in p.parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=list(DEFAULT_PATHS))
    parser.add_argument("--max", type=int, default=DEFAULT_MAX_LINES, dest="max_lines")
    args = parser.parse_args(argv)
    too_long = [
        (length, f"{path}:{line}", name)
        for path in python_files(args.paths)
        for name, line, length in function_lengths(path)
        if length > args.max_lines
    ]
    for length, where, name in sorted(too_long, reverse=True):
        print(f"{where}: {name} is {length} lines (limit {args.max_lines})")
    return 1 if too_long else 0


if __name__ == "__main__":
    sys.exit(main())

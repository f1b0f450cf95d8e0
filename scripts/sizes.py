"""House-style sizes across remotetune/: the longest module, class and function.

Usage: python scripts/sizes.py [--max-class 400 --max-function 60 --max-module 500]
Exits 1 when a limit is passed (a declarative table such as a schema migration is allowed
past the function limit when named in ALLOWED_LONG).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ALLOWED_LONG = {"remotetune/store/_schema.py:_m001_initial"}  # a declarative schema table
LIMITS = {"module": 500, "class": 400, "function": 60}


def sizes(root: Path) -> dict[str, list[tuple[int, str]]]:
    out: dict[str, list[tuple[int, str]]] = {"module": [], "class": [], "function": []}
    for path in sorted(root.rglob("*.py")):
        rel = path.as_posix()
        text = path.read_text()
        out["module"].append((len(text.splitlines()), rel))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                kind = "class"
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                kind = "function"
            else:
                continue
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            out[kind].append((length, f"{rel}:{node.name}"))
    return out


def main() -> int:
    found = sizes(Path("remotetune"))
    bad = 0
    for kind, rows in found.items():
        rows.sort(reverse=True)
        print(f"longest {kind}: {rows[0][1]} ({rows[0][0]} lines)")
        for length, name in rows:
            if length > LIMITS[kind] and name not in ALLOWED_LONG:
                print(f"  over {LIMITS[kind]}: {name} ({length})")
                bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""Print the package-level import graph of the platform as a Mermaid diagram (docs/architecture.md shows it).

    .venv/bin/python scripts/import_graph.py

An arrow A --> B means some module of package A imports package B (at any depth, including imports inside
functions). The floors read top to bottom: app, the stages, the core. `lint-imports` is the check; this is the
picture.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOORS = [["app"], ["collectors", "ingest", "billing", "dashboards", "simulators", "fleet"], ["amr"]]
PACKAGES = [p for floor in FLOORS for p in floor]


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found.update(name.split(".")[0] for name in names)
    return found & set(PACKAGES)


def edges() -> set[tuple[str, str]]:
    out = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            out.update((package, target) for target in imported_packages(path) if target != package)
    return out


def floor_of(package: str) -> int:
    return next(i for i, floor in enumerate(FLOORS) if package in floor)


def main() -> int:
    graph = sorted(edges())
    lines = ["```mermaid", "flowchart TD"]
    names = {0: "top", 1: "stages", 2: "core"}
    for i, floor in enumerate(FLOORS):
        lines.append(f"  subgraph {names[i]}")
        lines += [f"    {p}" for p in floor]
        lines.append("  end")
    lines += [f"  {a} --> {b}" for a, b in graph]
    lines.append("```")
    print("\n".join(lines))
    upward = [(a, b) for a, b in graph if floor_of(b) < floor_of(a)]
    sideways = [(a, b) for a, b in graph if floor_of(b) == floor_of(a)]
    print(
        f"\n{len(graph)} arrows; {len(upward)} run back up; {len(sideways)} between packages of one floor",
        file=sys.stderr,
    )
    return 1 if upward or sideways else 0


if __name__ == "__main__":
    raise SystemExit(main())

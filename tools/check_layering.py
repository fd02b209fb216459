"""Fails when a package imports an infinitic package it does not declare, breaks the layering
of ARCHITECTURE.md, imports another package's private (``_``) module, or when declared version
ranges of infinitic packages disagree with their versions.

    python tools/check_layering.py
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent

# distribution -> the infinitic distributions it may import (the layering of ARCHITECTURE.md)
BASE = {"infinitic-common"}
ENGINE = BASE | {"infinitic-transport", "infinitic-storage", "infinitic-cache"}
ALLOWED: dict[str, set[str]] = {
    "infinitic-common": set(),
    "infinitic-transport": BASE,
    "infinitic-storage": BASE,
    "infinitic-cache": BASE | {"infinitic-storage"},
    "infinitic-transport-pulsar": BASE | {"infinitic-transport"},
    "infinitic-task-executor": ENGINE,
    "infinitic-task-tag": ENGINE,
    "infinitic-workflow-engine": ENGINE,
    "infinitic-workflow-tag": ENGINE,
    "infinitic-client": BASE | {"infinitic-transport", "infinitic-storage"},
    "infinitic-worker": ENGINE
    | {
        "infinitic-task-executor",
        "infinitic-task-tag",
        "infinitic-workflow-engine",
        "infinitic-workflow-tag",
        "infinitic-client",
        "infinitic-transport-pulsar",
    },
    # its command reads a workers' configuration (infinitic.worker's public API); its pages
    # and timeline use only the client, the storage and common
    "infinitic-dashboard": BASE
    | {"infinitic-transport", "infinitic-storage", "infinitic-client", "infinitic-worker"},
}
# top-level modules owned by infinitic-common besides infinitic.common
COMMON_MODULES = {"workflows", "services", "exceptions"}
HEAVY = {"pulsar", "redis", "asyncpg", "aiomysql", "pulsar_lite", "zstandard"}


def owner(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "infinitic" or len(parts) < 2:
        return None
    sub = parts[1]
    if sub in COMMON_MODULES:
        return "infinitic-common"
    return "infinitic-" + sub.replace("_", "-")


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(module, line, at module top level) for each import of a file."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, node.lineno, id(node) in top))
    return out


def main() -> int:
    errors: list[str] = []
    versions: dict[str, Version] = {}
    declared: dict[str, dict[str, Requirement]] = {}
    for pyproject in sorted(ROOT.glob("packages/*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        name = project["name"]
        versions[name] = Version(project["version"])
        requirements = [Requirement(r) for r in project.get("dependencies", [])]
        for extra in project.get("optional-dependencies", {}).values():
            requirements += [Requirement(r) for r in extra]
        declared[name] = {r.name: r for r in requirements}
        if name not in ALLOWED:
            errors.append(f"{pyproject}: {name} is not in the layering table of this script")
    for name, reqs in declared.items():
        for dep, req in reqs.items():
            if dep in versions and not req.specifier.contains(versions[dep]):
                errors.append(f"{name} requires {req} but {dep} is {versions[dep]}")
        package_dir = ROOT / "packages" / name
        if (package_dir / "src" / "infinitic" / "__init__.py").exists():
            errors.append(f"{name}: src/infinitic/__init__.py must not exist (namespace package)")
        for path in sorted((package_dir / "src").rglob("*.py")):
            rel = path.relative_to(ROOT)
            for module, line, at_top in imports(path):
                target = owner(module)
                if target is not None and target != name:
                    if target not in ALLOWED.get(name, set()):
                        errors.append(
                            f"{rel}:{line}: {name} may not import {module} "
                            f"(layering: {target} is not below {name})"
                        )
                    elif target not in reqs:
                        errors.append(
                            f"{rel}:{line}: {name} imports {module} but does not declare {target}"
                        )
                    if any(part.startswith("_") for part in module.split(".")[2:]):
                        errors.append(
                            f"{rel}:{line}: {name} imports {module}, a private module of "
                            f"{target}: use a public name it exports"
                        )
                root = module.split(".")[0]
                if root in HEAVY and at_top and path.name == "__init__.py":
                    errors.append(
                        f"{rel}:{line}: heavy driver {root} imported by a package "
                        "__init__; import it in a leaf module behind an extra"
                    )
    # Tests and tools use public names too: a package's tests may reach its own private modules.
    checked: list[tuple[Path, str | None]] = [
        (p, owner_dir.name)
        for owner_dir in sorted(ROOT.glob("packages/*"))
        for p in sorted((owner_dir / "tests").rglob("*.py"))
    ]
    checked += [(p, None) for d in ("tests", "tools") for p in sorted((ROOT / d).rglob("*.py"))]
    for path, own in checked:
        for module, line, _ in imports(path):
            target = owner(module)
            private = any(part.startswith("_") for part in module.split(".")[2:])
            if target is not None and private and target != own:
                errors.append(
                    f"{path.relative_to(ROOT)}:{line}: imports {module}, a private module of "
                    f"{target}: use a public name it exports"
                )
    for error in errors:
        print(error, file=sys.stderr)
    print(f"layering: {len(declared)} packages checked, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

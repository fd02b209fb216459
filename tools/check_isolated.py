"""Checks that each package imports with only its own dependencies.

For each distribution under packages/, a fresh virtual environment gets that distribution and
the infinitic distributions it declares (transitively, from their local folders) and nothing
else; then every public module of the package is imported.

    uv run python tools/check_isolated.py [distribution ...]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
UV = shutil.which("uv") or "uv"


def projects() -> dict[str, tuple[Path, dict[str, object]]]:
    out = {}
    for pyproject in sorted(ROOT.glob("packages/*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        out[project["name"]] = (pyproject.parent, project)
    return out


def closure(name: str, all_projects: dict[str, tuple[Path, dict[str, object]]]) -> list[str]:
    seen: list[str] = []
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.append(current)
        deps = all_projects[current][1].get("dependencies", [])
        assert isinstance(deps, list)
        todo += [r.name for r in map(Requirement, deps) if r.name in all_projects]
    return seen


def modules(package_dir: Path) -> list[str]:
    src = package_dir / "src"
    out = []
    for init in sorted(src.rglob("__init__.py")):
        out.append(".".join(init.parent.relative_to(src).parts))
    for module in sorted(src.rglob("*.py")):
        if module.name != "__init__.py" and not module.name.startswith("_"):
            out.append(".".join(module.with_suffix("").relative_to(src).parts))
    return out


def check(name: str, all_projects: dict[str, tuple[Path, dict[str, object]]]) -> bool:
    package_dir = all_projects[name][0]
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([UV, "venv", "-q", "-p", sys.executable, str(venv)], check=True)
        paths = [str(all_projects[n][0]) for n in closure(name, all_projects)]
        subprocess.run(
            [UV, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *paths],
            check=True,
        )
        code = "import importlib\n" + "".join(
            f"importlib.import_module({m!r})\n" for m in modules(package_dir)
        )
        done = subprocess.run(
            [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=False
        )
    ok = done.returncode == 0
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f"\n{done.stderr[-2000:]}"))
    return ok


def main() -> int:
    all_projects = projects()
    names = sys.argv[1:] or list(all_projects)
    failures = [n for n in names if not check(n, all_projects)]
    print(f"isolated imports: {len(names) - len(failures)}/{len(names)} packages ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

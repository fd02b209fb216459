"""Every package's README links back to the main README and holds a short example that runs."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
READMES = sorted(ROOT.glob("packages/*/README.md"))
NEEDS = {"infinitic-transport-pulsar": "pulsar_lite"}  # its example starts an embedded broker


def test_every_package_has_a_readme() -> None:
    assert len(READMES) == len(list(ROOT.glob("packages/*/pyproject.toml")))


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.parent.name)
def test_a_link_back_to_the_main_readme(readme: Path) -> None:
    assert "(../../README.md)" in readme.read_text()
    assert (readme.parent / "../../README.md").resolve() == ROOT / "README.md"


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.parent.name)
def test_a_runnable_example(readme: Path, tmp_path: Path) -> None:
    needed = NEEDS.get(readme.parent.name)
    if needed is not None and importlib.util.find_spec(needed) is None:
        pytest.skip(f"{needed} is not installed")
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.DOTALL)
    runnable = [b for b in blocks if "asyncio.run(main())" in b]
    assert runnable, f"{readme}: no complete example (ending with asyncio.run(main()))"
    script = tmp_path / "example.py"
    script.write_text(runnable[0])
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]

"""The README examples of tags, delegated tasks and batched tasks run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
SECTIONS = {
    "### Tags, custom ids and ids by tag": "order-7 paid 30 / order-7 paid 30",
    "### Delegated tasks": "receipt-1",
    "### Batched tasks": "one call for 50 emails\n250",
}


@pytest.mark.parametrize("heading", list(SECTIONS))
def test_readme_example_runs(heading: str, tmp_path: Path) -> None:
    text = README.read_text()
    found = re.search(r"```python\n(.*?)```", text[text.index(heading) :], re.S)
    assert found is not None
    script = tmp_path / "example.py"
    script.write_text(found.group(1))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert SECTIONS[heading] in done.stdout

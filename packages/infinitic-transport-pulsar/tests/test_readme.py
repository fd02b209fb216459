"""The README's quick start runs as written (in a subprocess, on its own embedded broker)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).parents[1] / "README.md"


@pytest.mark.pulsar
def test_quick_start_runs(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("pulsar_lite")
    text = README.read_text()
    start = text.index("```python\nimport asyncio") + len("```python\n")
    script = tmp_path / "quick_start.py"
    script.write_text(text[start : text.index("```", start)])
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "wf-1 b'hello'" in done.stdout

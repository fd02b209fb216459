"""The demo's progress bar is drawn only on a terminal: into a log or a pipe it writes a plain
line now and then, never carriage-return frames."""

from __future__ import annotations

import io
import sys

import pytest

from infinitic_examples.bank_wire.__main__ import _progress, main


async def test_no_frames_when_stdout_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    await main(20, 5)
    out = capsys.readouterr().out
    assert "\r" not in out
    assert "20/20 wires" in out
    assert out.count(" wires (") == 10  # every tenth of the wires


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    for done in range(1, 5):
        _progress(done, 4, 0.0)
    text = terminal.getvalue()
    assert text.count("\r[") == 4
    assert "4/4" in text
    assert text.endswith("\n")

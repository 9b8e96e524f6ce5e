"""`edgehive up`'s status table: redrawn in place on a real terminal, plain lines elsewhere."""

from __future__ import annotations

import os
import pty
from pathlib import Path

import pytest

from edgehive.livetable import LiveTable


def _drain(master: int) -> bytes:
    data = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the terminal's other end is closed and everything was read
            return data
        if not chunk:
            return data
        data += chunk


def test_on_a_terminal_each_copy_replaces_the_last(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as terminal:
        table = LiveTable(terminal)
        table.show("NODE  STATE\npi-1  online")
        table.show("NODE  STATE\npi-1  offline")
    shown = _drain(master).decode().replace("\r\n", "\n")
    os.close(master)
    # A blank line, the first copy, then: two rows up, erase below, the second copy.
    assert shown == "\nNODE  STATE\npi-1  online\n\x1b[2F\x1b[JNODE  STATE\npi-1  offline\n"


def test_a_line_wider_than_the_terminal_counts_as_the_rows_it_wraps_onto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "10")
    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as terminal:
        table = LiveTable(terminal)
        table.show("x" * 25)  # three rows of a 10-column terminal
        table.show("y")
    shown = _drain(master).decode()
    os.close(master)
    assert "\x1b[3F\x1b[J" in shown


def test_into_a_file_each_copy_is_plain_lines(tmp_path: Path) -> None:
    log = tmp_path / "up.log"
    with log.open("w") as out:
        table = LiveTable(out)
        table.show("NODE  STATE\npi-1  online")
        table.show("NODE  STATE\npi-1  offline")
    assert log.read_text() == "\nNODE  STATE\npi-1  online\n\nNODE  STATE\npi-1  offline\n"

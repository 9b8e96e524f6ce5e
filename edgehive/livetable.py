"""A status table that is redrawn in place on a terminal, and printed whole elsewhere.

`edgehive up` shows the fleet every few seconds. On a terminal a new copy each time scrolls the
banner (the lines saying how to watch the system) away within a minute, so the table moves the
cursor back over its previous copy and clears from there (ANSI: cursor up, erase below), as
`docker compose up` and `htop` do. Into a file or a pipe (a log, CI) each copy is printed as
plain lines after a blank one, with no escape codes to garble the log.
"""

from __future__ import annotations

import os
import shutil
from typing import TextIO

CURSOR_UP = "\x1b[{n}F"  # to the start of the line n lines up
ERASE_BELOW = "\x1b[J"


class LiveTable:
    """Shows successive versions of one table on `out`."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        try:
            self.in_place = out.isatty() and os.environ.get("TERM", "") != "dumb"
        except (AttributeError, ValueError):  # a closed or file-less stream
            self.in_place = False
        self._rows = 0  # terminal rows the last copy took

    def _rows_of(self, text: str) -> int:
        """Terminal rows `text` takes: a line wider than the terminal wraps onto more."""
        width = max(1, shutil.get_terminal_size((80, 24)).columns)
        return sum(max(1, -(-len(line) // width)) for line in text.split("\n"))

    def show(self, text: str) -> None:
        if not self.in_place:
            self.out.write("\n" + text + "\n")
            self.out.flush()
            return
        back = CURSOR_UP.format(n=self._rows) + ERASE_BELOW if self._rows else "\n"  # a blank line above the first copy
        self.out.write(back + text + "\n")
        self.out.flush()
        self._rows = self._rows_of(text)

    def forget(self) -> None:
        """Something else was printed below the table: the next copy starts afresh under it."""
        self._rows = 0

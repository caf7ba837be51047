"""Progress reporting for bulk sends: a callable, tqdm when installed, or a plain counter.

The plain counter rewrites one line (``\\r``) only on a terminal. Anywhere else (a notebook, a
log file, CI) every update is a new line, so it writes few: one per 10 % at most every 2 s, and
the last one.
"""

from __future__ import annotations

import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TextIO, TypeAlias

    ProgressArg: TypeAlias = Callable[[int, int], object] | bool | None

# Without a terminal: a line when another tenth is done, but not more often than this.
LINE_INTERVAL = 2.0
# On a terminal: redraw at most this often.
REDRAW_INTERVAL = 0.1


class _Counter:
    """A counter on stderr, for when tqdm is not installed."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = sys.stderr if stream is None else stream
        try:
            self.tty = self.stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self.step = max(1, total // 10)
        self.next_line = self.step  # lines at 10 % steps when not on a terminal
        self.last_write = time.monotonic()
        self.last_note = 0.0
        self.done = 0
        self.suffix = ""

    def __call__(self, done: int, total: int) -> None:
        self.done = done
        now = time.monotonic()
        if done != total:
            if self.tty:
                if now - self.last_write < REDRAW_INTERVAL:
                    return
            elif done < self.next_line or now - self.last_write < LINE_INTERVAL:
                return
            self.next_line = (done // self.step + 1) * self.step
        self.last_write = now
        text = f"graphsend: sent {done}/{total}"
        if done != total and self.suffix:
            text += f" ({self.suffix})"
        if self.tty:
            end = "\n" if done == total else ""
            print(f"\r{text}\x1b[K", end=end, file=self.stream, flush=True)
        else:
            print(text, file=self.stream, flush=True)

    def note(self, text: str) -> None:
        """A long pause began (a throttled mailbox): say so, also without logging set up."""
        self.suffix = text
        if self.tty:
            if self.done != self.total:
                self.last_write = 0.0  # redraw now
                self(self.done, self.total)
            return
        now = time.monotonic()
        if now - self.last_note >= LINE_INTERVAL:  # a burst of 429s is one line, not hundreds
            self.last_note = now
            print(f"graphsend: {text}", file=self.stream, flush=True)


class _Tqdm:
    def __init__(self, total: int) -> None:
        from tqdm.auto import tqdm  # a widget in notebooks, a bar on terminals

        self.bar = tqdm(total=total, unit="msg", desc="graphsend")
        self.last = 0

    def __call__(self, done: int, total: int) -> None:
        self.bar.update(done - self.last)
        self.last = done
        if done == total:
            self.bar.close()

    def note(self, text: str) -> None:
        self.bar.set_postfix_str(text)


def reporter(progress: ProgressArg, total: int) -> Callable[[int, int], object] | None:
    if progress is None or progress is False:
        return None
    if progress is True:
        try:
            return _Tqdm(total)
        except ImportError:
            return _Counter(total)
    if callable(progress):
        return progress
    raise TypeError("progress must be a callable (done, total), True, or None")

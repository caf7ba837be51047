"""Progress reporting for bulk sends: a callable, tqdm when installed, or a one-line counter."""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeAlias

    ProgressArg: TypeAlias = Callable[[int, int], object] | bool | None


class _Counter:
    """A plain one-line counter on stderr, for when tqdm is not installed."""

    def __init__(self, total: int) -> None:
        self.total = total

    def __call__(self, done: int, total: int) -> None:
        end = "\n" if done == total else ""
        print(f"\rgraphsend: sent {done}/{total}", end=end, file=sys.stderr, flush=True)


class _Tqdm:
    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="msg", desc="graphsend")
        self.last = 0

    def __call__(self, done: int, total: int) -> None:
        self.bar.update(done - self.last)
        self.last = done
        if done == total:
            self.bar.close()


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

"""Fork detection: a counter bumped in the child, so clients rebuild their native handles.

A child must never reuse (or even close) the parent's connections: both processes would share
one socket and one TLS stream.
"""

from __future__ import annotations

import os

generation = 0


def _after_fork_in_child() -> None:
    global generation
    generation += 1


os.register_at_fork(after_in_child=_after_fork_in_child)

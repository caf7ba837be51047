"""Retry-After values: integer or fractional seconds, or an HTTP-date.

A module of its own, without imports from the package: ``_errors`` (which reads the header into
``GraphError.retry_after``) and ``_retry`` (which waits it) both use it, and neither imports the
other for it.
"""

from __future__ import annotations

import math
import time


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """Seconds from a Retry-After value: integer, fractional ("0.249") or an HTTP-date.

    Returns None when the value is unreadable (never raises); never a negative number.
    """
    try:
        return _parse_retry_after(value, now)
    except Exception:  # a hostile date (a huge zone field: OverflowError), odd types, ...
        return None


def _parse_retry_after(value: str, now: float | None) -> float | None:
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    from email.utils import parsedate_to_datetime

    when = parsedate_to_datetime(value)
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))

"""The ``graphsend`` logger, without importing logging on the send path.

If the application never imported :mod:`logging`, nobody can have configured a handler, so there
is nothing to log to; checking ``sys.modules`` keeps ``import graphsend`` fast. The token and the
Authorization header are never passed to any record.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from logging import Logger

DEBUG = 10
_logger: Logger | None = None


def get(create: bool = False) -> Logger | None:
    """The graphsend logger, or None while logging is not in use (unless ``create``)."""
    global _logger
    if _logger is None:
        if "logging" not in sys.modules and not create:
            return None
        import logging

        _logger = logging.getLogger("graphsend")
        _logger.addHandler(logging.NullHandler())
    return _logger


def debug_enabled() -> Logger | None:
    """The logger when DEBUG records would go somewhere, else None (cheap on the hot path)."""
    log = _logger if _logger is not None else get()
    return log if log is not None and log.isEnabledFor(DEBUG) else None

"""graphsend: send Microsoft Graph draft messages over a libcurl C core.

>>> import graphsend
>>> graphsend.send_message(draft_id, token=token)        # doctest: +SKIP
Receipt(status=202, ...)
"""

from graphsend._drivers.client import Client, interrupted_results
from graphsend._drivers.limiter import LocalLimiter
from graphsend._drivers.send import send_message
from graphsend._operations.message import Attachment, Message
from graphsend._rules.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    GraphError,
    LimiterError,
    NotFoundError,
    PermissionDeniedError,
    SendError,
    ServerError,
    ServiceUnavailableError,
    ThrottledError,
    TransportError,
)
from graphsend._rules.errors import (
    TimeoutError as TimeoutError,  # public, not in __all__ (see below)
)
from graphsend._rules.receipt import Receipt
from graphsend._rules.retry import Retry
from graphsend._version import __version__

# Exceptions and Receipts travel (pickle, Celery's result backend): name them by their public,
# importable module rather than the private one they are defined in.
for _public in (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    GraphError,
    LimiterError,
    NotFoundError,
    PermissionDeniedError,
    SendError,
    ServerError,
    ServiceUnavailableError,
    ThrottledError,
    TimeoutError,
    TransportError,
    Receipt,
):
    _public.__module__ = "graphsend"
del _public

# graphsend.TimeoutError is public but left out of __all__: `from graphsend import *` must not
# shadow the builtin (it subclasses the builtin, so `except TimeoutError` catches it anyway).
__all__ = [
    "AsyncClient",
    "Attachment",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "GraphError",
    "LimiterError",
    "LocalLimiter",
    "Message",
    "NotFoundError",
    "PermissionDeniedError",
    "Receipt",
    "RedisLimiter",
    "Retry",
    "SendError",
    "ServerError",
    "ServiceUnavailableError",
    "ThrottledError",
    "TransportError",
    "__version__",
    "interrupted_results",
    "send_message",
]

TYPE_CHECKING = False  # typing itself costs milliseconds to import
if TYPE_CHECKING:
    from graphsend._drivers.async_client import AsyncClient
    from graphsend.integrations.redis_limiter import RedisLimiter


def __getattr__(name: str) -> object:
    # asyncio costs more to import than the rest of graphsend: load it on first use only.
    if name == "AsyncClient":
        from graphsend._drivers.async_client import AsyncClient

        return AsyncClient
    if name == "RedisLimiter":
        from graphsend.integrations.redis_limiter import RedisLimiter

        return RedisLimiter
    raise AttributeError(f"module 'graphsend' has no attribute {name!r}")

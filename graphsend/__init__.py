"""graphsend: send Microsoft Graph draft messages over a libcurl C core.

>>> import graphsend
>>> graphsend.send_message(draft_id, token=token)        # doctest: +SKIP
Receipt(status=202, ...)
"""

from graphsend._drivers.client import Client, interrupted_results
from graphsend._drivers.send import send_message
from graphsend._operations.message import Attachment, Message
from graphsend._rules.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    GraphError,
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
    "Message",
    "NotFoundError",
    "PermissionDeniedError",
    "Receipt",
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


def __getattr__(name: str) -> object:
    # asyncio costs more to import than the rest of graphsend: load it on first use only.
    if name == "AsyncClient":
        from graphsend._drivers.async_client import AsyncClient

        return AsyncClient
    raise AttributeError(f"module 'graphsend' has no attribute {name!r}")

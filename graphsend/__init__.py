"""graphsend: send Microsoft Graph draft messages over a libcurl C core.

>>> import graphsend
>>> graphsend.send_message(draft_id, token=token)        # doctest: +SKIP
Receipt(status=202, ...)
"""

from ._client import Client
from ._errors import (
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
    TimeoutError,
    TransportError,
)
from ._receipt import Receipt
from ._retry import Retry
from ._send import send_message
from ._version import __version__

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "GraphError",
    "NotFoundError",
    "PermissionDeniedError",
    "Receipt",
    "Retry",
    "SendError",
    "ServerError",
    "ServiceUnavailableError",
    "ThrottledError",
    "TimeoutError",
    "TransportError",
    "__version__",
    "send_message",
]

"""send_message(): a thin wrapper over one cached Client per configuration."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from graphsend._drivers.client import Client
from graphsend._rules.receipt import Receipt
from graphsend._rules.retry import Retry
from graphsend._rules.tokens import StaticToken, TokenSource

_Key = tuple[str, str, float, float, "str | None"]
# A small LRU: each Client keeps a Share, and per thread a handle with its connections. An
# evicted Client is dropped, not closed (another thread may be about to send with it): its
# handles and sockets go when the last send using it returns.
_CLIENTS_KEPT = 8
_clients: OrderedDict[_Key, Client] = OrderedDict()
_clients_lock = threading.Lock()
_STATIC_TOKENS_KEPT = 8
_static_tokens: dict[str, StaticToken] = {}


class _CallerToken(TokenSource):
    """Placeholder for cached clients: send_message passes its token with every call."""

    refreshable = False

    def header(self) -> str:
        raise AssertionError("send_message always passes its own token")


def send_message(
    message_id: str,
    *,
    token: str,
    user: str | None = None,
    base_url: str = "https://graph.microsoft.com",
    api_version: str = "v1.0",
    timeout: float = 100.0,
    connect_timeout: float = 30.0,
    client_request_id: str | None = None,
    ca_bundle: str | os.PathLike[str] | None = None,
    retry: Retry | None = None,
) -> Receipt:
    """Send the draft ``message_id`` (from ``user``'s mailbox, ``/me`` when None).

    Calls with the same base_url, api_version, timeouts and ca_bundle share a Client, so a
    thread's sends reuse one connection and follow the default Retry policy; the 8
    configurations used last are kept (older ones are dropped with their connections). For
    token providers, proxies or other clouds, use :class:`Client`.

    Args:
        message_id: The draft's id.
        token: A Graph access token (a str).
        user: The mailbox (userPrincipalName or id); ``None`` sends from ``/me``.
        base_url: The Graph host; plain ``http://`` only for loopback hosts.
        api_version: ``"v1.0"`` or ``"beta"``.
        timeout: Seconds the request may take in all.
        connect_timeout: Seconds to connect, TLS included.
        client_request_id: The ``client-request-id`` to send (default: a new UUID).
        ca_bundle: A PEM file of CAs to trust instead of the system's.
        retry: A :class:`Retry` policy for this call instead of the default one
            (``Retry(reconcile_ambiguous=True)`` settles an ambiguous send by reading the
            mailbox).

    Returns:
        The Receipt of Graph's ``202 Accepted``.

    Raises:
        GraphError: Graph answered with another status (a subclass names it).
        TransportError: No answer (DNS, connect, TLS, reset, timeout).
        TypeError: ``token`` is not a str, or another argument of the wrong type.
        ValueError: A malformed id, user, base_url or timeout (before anything is sent).
        FileNotFoundError: ``ca_bundle`` does not exist.
    """
    if not isinstance(token, str):
        raise TypeError("token must be a str; use graphsend.Client for token providers")
    tokens = _static_tokens.get(token)
    if tokens is None:
        tokens = _static_token(token)
    if ca_bundle is not None:
        ca_bundle = os.fspath(ca_bundle)
    key = (base_url, api_version, timeout, connect_timeout, ca_bundle)
    client = _clients.get(key)
    if client is None:
        client = _cached_client(key)  # type: ignore[arg-type]
    if retry is not None and not isinstance(retry, Retry):
        raise TypeError("retry must be a graphsend.Retry")
    return client._send(message_id, user, client_request_id, tokens, retry)


def _static_token(token: str) -> StaticToken:
    """Validate a token once, not on every send: a Graph token is over a kilobyte of text."""
    tokens = StaticToken(token)
    if len(_static_tokens) >= _STATIC_TOKENS_KEPT:
        _static_tokens.clear()  # tokens rotate hourly: old ones are not worth evicting with care
    _static_tokens[token] = tokens
    return tokens


def _cached_client(key: _Key) -> Client:
    base_url, api_version, timeout, connect_timeout, ca_bundle = key
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = Client(
                _CallerToken(),
                base_url=base_url,
                api_version=api_version,
                timeout=timeout,
                connect_timeout=connect_timeout,
                ca_bundle=ca_bundle,
            )
            _clients[key] = client
            while len(_clients) > _CLIENTS_KEPT:
                _clients.popitem(last=False)
        else:
            _clients.move_to_end(key)
        return client

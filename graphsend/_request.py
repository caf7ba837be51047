"""Input validation, URL building and request headers: everything checked before the wire."""

from __future__ import annotations

import sys

from . import _native
from ._version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeAlias

    # A send_many item: a message id (sent from /me) or a (user, message_id) pair.
    Item: TypeAlias = str | tuple[str | None, str]

CLOUDS = {
    "global": "https://graph.microsoft.com",
    "usgov": "https://graph.microsoft.us",
    "dod": "https://dod-graph.microsoft.us",
    "china": "https://microsoftgraph.chinacloudapi.cn",
}

_LOOPBACK_HOSTS = frozenset({"localhost", "::1"})
# RFC 3986 unreserved characters: never percent-encoded.
_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"

USER_AGENT = (
    f"graphsend/{__version__} libcurl/{_native.libcurl_version} "
    f"Python/{sys.version_info[0]}.{sys.version_info[1]}.{sys.version_info[2]}"
)


def check_text(value: object, what: str) -> str:
    """A non-empty str without control characters (CR, LF, NUL, ...)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    if not value.isprintable():  # CR, LF, NUL, TAB, DEL and other non-printing characters
        raise ValueError(f"{what} must not contain control characters")
    return value


def path_segment(value: object, what: str, safe: str = "") -> str:
    """Percent-encode ``value`` as exactly one path segment (``/ ? # % + =``, spaces, non-ASCII)."""
    data = check_text(value, what).encode()
    keep = _UNRESERVED + safe.encode()
    if not data.translate(None, keep + b"=/+"):
        # The common case, Graph ids: base64 or base64url with "=" padding. C-speed replaces.
        if not value.strip("."):
            # "." and ".." would be dot segments that URL normalisation removes.
            return value.replace(".", "%2E")
        if "=" in value:
            value = value.replace("=", "%3D")
        if "/" in value:
            value = value.replace("/", "%2F")
        if "+" in value:
            value = value.replace("+", "%2B")
        return value
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in data)


def mailbox_path(user: str | None) -> str:
    # "@" is legal in a path segment and keeps userPrincipalNames readable in logs.
    return "me" if user is None else "users/" + path_segment(user, "user", safe="@")


def send_path(user: str | None, message_id: str) -> str:
    """``/me/messages/{id}/send`` or ``/users/{user}/messages/{id}/send``, each part encoded."""
    return f"/{mailbox_path(user)}/messages/{path_segment(message_id, 'message_id')}/send"


def check_token(token: object) -> str:
    token = check_text(token, "token")
    if token != token.strip() or " " in token:
        raise ValueError("token must not contain spaces")
    return token


def check_api_version(api_version: object) -> str:
    if not isinstance(api_version, str):
        raise TypeError(f"api_version must be a str, not {type(api_version).__name__}")
    major, dot, minor = api_version[1:].partition(".")
    numbered = api_version[:1] == "v" and dot and major.isdigit() and minor.isdigit()
    if api_version != "beta" and not (numbered and major.isascii() and minor.isascii()):
        raise ValueError("api_version must be 'v1.0', 'beta' or of the form 'vN.N'")
    return api_version


def check_base_url(base_url: object) -> tuple[str, bool]:
    """Return (normalised base URL, whether plain http is allowed).

    https anywhere; http only to loopback, where nothing leaves the machine.
    """
    from urllib.parse import urlsplit  # only when a client is made, not on import

    base_url = check_text(base_url, "base_url").rstrip("/")
    parts = urlsplit(base_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("base_url must be an https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("base_url must not carry credentials")
    if parts.query or parts.fragment:
        raise ValueError("base_url must not have a query or fragment")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError("plain http:// is only allowed for loopback hosts; use https://")
    return base_url, parts.scheme == "http"


def is_loopback(host: str) -> bool:
    host = host.lower()
    if host in _LOOPBACK_HOSTS:
        return True
    octets = host.split(".")
    return (
        len(octets) == 4
        and octets[0] == "127"
        and all(o.isdigit() and int(o) < 256 for o in octets)
    )


def check_timeout(value: object, what: str) -> int:
    """Seconds (int or float, > 0) to whole milliseconds for libcurl."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{what} must be a positive, finite number of seconds")
    return max(1, round(value * 1000))


# A fresh version 4 UUID per request, made in C: Python's own ways cost a microsecond.
new_client_request_id = _native.new_client_request_id


def client_request_id_or_new(value: str | None) -> str:
    return new_client_request_id() if value is None else check_text(value, "client_request_id")

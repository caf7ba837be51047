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

USER_AGENT = (
    f"graphsend/{__version__} libcurl/{_native.libcurl_version} "
    f"Python/{sys.version_info[0]}.{sys.version_info[1]}.{sys.version_info[2]}"
)


# Both in C (csrc/draft.c), which Handle.send_draft() uses too: one implementation of the rules.
#   check_text(value, what): value when it is a non-empty str without control characters (CR,
#     LF, NUL, TAB, DEL, ...), else TypeError or ValueError.
#   send_path(user, message_id): "/me/messages/{id}/send" or "/users/{user}/messages/{id}/send",
#     each part one percent-encoded path segment ("/ ? # % + =", spaces, non-ASCII and "." or
#     ".." dot segments encoded; "@" kept in user for readable logs).
check_text = _native.check_text
send_path = _native.send_path


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

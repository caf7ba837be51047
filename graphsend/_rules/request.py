"""Input validation, URL building and request headers: everything checked before the wire."""

from __future__ import annotations

import sys

from graphsend import _native
from graphsend._version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeAlias

    from graphsend._operations.message import Message

    # A send_many item: a message id (sent from /me) or a (user, message_id) pair, or a
    # Message (sent from /me) or a (user, Message) pair.
    Item: TypeAlias = str | tuple[str | None, str] | Message | tuple[str | None, Message]

CLOUDS = {
    "global": "https://graph.microsoft.com",
    "usgov": "https://graph.microsoft.us",
    "dod": "https://dod-graph.microsoft.us",
    "china": "https://microsoftgraph.chinacloudapi.cn",
}


def check_flag(value: object, what: str) -> bool:
    """A bool argument, checked: a truthy string or number is a mistake, not a yes."""
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be a bool")
    return value


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
    if "@" in parts.netloc:
        raise ValueError("base_url must not carry credentials")
    # urlsplit drops an empty "?" or "#": look at the raw text.
    if "?" in base_url or "#" in base_url:
        raise ValueError("base_url must not have a query or fragment")
    if " " in base_url or not base_url.isascii():
        raise ValueError("base_url must be ASCII without spaces (percent-encode its path)")
    _check_host_port(parts.netloc, "base_url")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError("plain http:// is only allowed for loopback hosts; use https://")
    return base_url, parts.scheme == "http"


# A DNS name or an IPv4 address; IPv6 goes in brackets. Non-ASCII names must be given in their
# ASCII (punycode) form, as libcurl sends them.
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")


def _check_host_port(netloc: str, what: str) -> None:
    """The host[:port] part (after any userinfo): a valid host, a port in 1..65535."""
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        host, bracket, rest = hostport[1:].partition("]")
        if not bracket or not host or not set(host) <= _IPV6_CHARS or ":" not in host:
            raise ValueError(f"{what} has an invalid IPv6 host")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{what} has an invalid host")
        port = rest[1:] if rest else None
    else:
        host, colon, port_text = hostport.partition(":")
        port = port_text if colon else None
        if not host or not set(host) <= _HOST_CHARS or ".." in host:
            raise ValueError(
                f"{what} has an invalid host name (letters, digits, '.', '-' only; "
                "write international names in punycode)"
            )
    if port is not None and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"{what} must have a port from 1 to 65535")


#: Proxy schemes libcurl understands.
PROXY_SCHEMES = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")


def check_proxy(proxy: object) -> str:
    """An explicit proxy URL, checked before libcurl sees it. Errors never quote the URL: it
    may carry a password."""
    proxy = check_text(proxy, "proxy")
    scheme, sep, rest = proxy.partition("://")
    if not sep or scheme.lower() not in PROXY_SCHEMES:
        raise ValueError(
            "proxy must be a URL of the form scheme://[user:password@]host[:port] with scheme "
            + ", ".join(PROXY_SCHEMES)
        )
    netloc = rest.split("/", 1)[0]
    if "?" in netloc or "#" in netloc or " " in rest:
        raise ValueError("proxy URL is malformed")
    userinfo, at, _ = netloc.rpartition("@")
    if at and "@" in userinfo:
        raise ValueError("proxy URL is malformed: percent-encode '@' in its user or password (%40)")
    _check_host_port(netloc, "proxy URL")
    return proxy


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


#: The longest timeout: libcurl takes milliseconds in a C long, 32 bits on some platforms.
MAX_TIMEOUT = (2**31 - 1) / 1000  # about 24.8 days


def check_timeout(value: object, what: str) -> int:
    """Seconds (int or float, > 0, at most MAX_TIMEOUT) to whole milliseconds for libcurl."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds")
    if not 0 < value <= MAX_TIMEOUT:
        raise ValueError(
            f"{what} must be a positive number of seconds, at most {MAX_TIMEOUT:.0f} (24.8 days)"
        )
    return max(1, round(value * 1000))


# A fresh version 4 UUID per request, made in C: Python's own ways cost a microsecond.
new_client_request_id = _native.new_client_request_id


def client_request_id_or_new(value: str | None) -> str:
    return new_client_request_id() if value is None else check_text(value, "client_request_id")

"""FakeGraph: a real loopback HTTP/1.1 server that behaves like Microsoft Graph's send endpoint.

It is meant for graphsend's own tests and benchmarks and for the test suites of programs that use
graphsend. Nothing is mocked: clients talk to a real socket, so connection reuse, resets, stalls,
TLS verification and timeouts all behave as they would against Graph.

    from graphsend.testing import FakeGraph

    with FakeGraph(latency=0.05, mailbox_concurrency_limit=4) as graph:
        draft = graph.create_draft(subject="Quarterly report")
        graph.fail_next(503, retry_after=2)          # the first send gets a 503
        ...  # point the client at graph.base_url with token graph.token
        assert [m.id for m in graph.sent_items()] == [draft]

What it serves (``{v}`` is ``v1.0`` or ``beta``, ``{user}`` a UPN or id, percent-decoded once):

* ``POST /{v}/me/messages/{id}/send`` and ``POST /{v}/users/{user}/messages/{id}/send``: moves the
  draft to Sent Items and answers ``202 Accepted`` with an empty body, like Graph.
* ``POST /{v}/me/messages`` (and ``/users/{user}/messages``): creates a draft from an optional JSON
  body (``subject``), answers ``201`` with the message as JSON. This lets a client in another
  process (a benchmark, the demo) make drafts.
* ``GET /{v}/me/mailFolders/{drafts|sentitems}/messages``: lists a folder as ``{"value": [...]}``.

Errors use Graph's body shape and headers. See :class:`FakeGraph` for the rules and the fault
injection API, and run ``python -m graphsend.testing --help`` to serve from the command line.

Only the standard library is needed, except for HTTPS mode, which makes a certificate with the
``cryptography`` package (``pip install 'graphsend[testing]'``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import email.utils
import http
import importlib.util
import json
import random
import shutil
import signal
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Final, Literal
from urllib.parse import unquote

__all__ = ["DraftKind", "FakeGraph", "IdStyle", "Message", "RecordedRequest", "main"]

DraftKind = Literal["new", "reply", "replyAll", "forward"]
IdStyle = Literal["rest", "ews"]
Outcome = Literal["pending", "answered", "reset", "stalled", "disconnected"]

_KINDS: Final = frozenset({"new", "reply", "replyAll", "forward"})
_VERSIONS: Final = frozenset({"v1.0", "beta"})
# Characters that may appear in a decoded message id: base64 and base64url alphabets plus padding.
_ID_ALPHABET: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_="
)
_NEEDS_CRYPTOGRAPHY: Final = (
    "FakeGraph(https=True) needs the 'cryptography' package; "
    "install it with: pip install 'graphsend[testing]'"
)
_MAX_HEAD: Final = 64 * 1024
_MAX_BODY: Final = 4 * 1024 * 1024
_WRITE_CHUNK: Final = 256 * 1024
_DIAGNOSTIC: Final = json.dumps(
    {
        "ServerInfo": {
            "DataCenter": "Loopback",
            "Slice": "E",
            "Ring": "5",
            "ScaleUnit": "000",
            "RoleInstance": "FAKEGRAPH01",
        }
    },
    separators=(",", ":"),
)
# Default code and message for fail_next(status) when none is given.
_DEFAULT_ERRORS: Final[dict[int, tuple[str, str]]] = {
    400: ("BadRequest", "The request is invalid."),
    401: ("InvalidAuthenticationToken", "Access token validation failure."),
    403: ("ErrorAccessDenied", "Access is denied. Check credentials and try again."),
    404: ("ErrorItemNotFound", "The specified object was not found in the store."),
    409: ("ErrorIrresolvableConflict", "The send or update operation could not be performed."),
    411: ("LengthRequired", "The request must be chunked or have a content length."),
    413: ("ErrorQuotaExceeded", "The mailbox quota has been exceeded."),
    429: ("ApplicationThrottled", "Application is over its MailboxConcurrency limit."),
    500: ("InternalServerError", "An internal server error occurred."),
    502: ("BadGateway", "The gateway received an invalid response."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable."),
    504: ("GatewayTimeout", "The gateway timed out waiting for the backend."),
}


@dataclass(frozen=True)
class Message:
    """A draft or a sent message in a FakeGraph mailbox.

    ``id`` is the draft id the message was created with (Graph gives sent items a new id; keeping
    the draft id makes tests simpler). ``user`` is the mailbox, lower-cased. ``sent_at`` is the
    moment the send was accepted (UTC), or None for a draft.
    """

    id: str
    subject: str
    kind: DraftKind
    user: str
    sent_at: datetime | None = None


@dataclass(eq=False)
class RecordedRequest:
    """One HTTP request as FakeGraph received it, including those that failed.

    ``path`` is the request target exactly as it appeared on the request line (with any query
    string and percent-encoding untouched). ``headers`` has lower-case names; repeated headers
    are joined with ``", "``. ``user`` is the mailbox the path resolved to (lower-cased, ``me``
    replaced by the default user) and ``message_id`` the percent-decoded id, when the path had
    them. ``received_at`` and ``answered_at`` are ``time.monotonic()`` values. ``connection``
    numbers the TCP connection (1 for the first one accepted), so keep-alive reuse is visible.

    ``status`` and ``outcome`` are filled in by the server thread once the request is dealt with:
    ``outcome`` is ``"pending"`` until then, ``"answered"`` when a response was written,
    ``"reset"`` for an injected reset, ``"stalled"`` while an injected stall holds the request,
    and ``"disconnected"`` when the client went away first: it closed the connection before the
    answer was ready (the answer is still written, to no one, and ``status`` says what it was),
    or gave up on a stalled request. ``status`` is None when nothing was answered.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    user: str | None
    message_id: str | None
    received_at: float
    connection: int
    http_version: str
    status: int | None = None
    outcome: Outcome = "pending"
    answered_at: float | None = None

    @property
    def client_request_id(self) -> str | None:
        """The ``client-request-id`` header the client sent, if any."""
        return self.headers.get("client-request-id")

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header the client sent, if any."""
        return self.headers.get("authorization")


# --------------------------------------------------------------------------------------------
# Internal records


@dataclass
class _Mailbox:
    user: str
    drafts: dict[str, Message] = field(default_factory=dict)
    sent: list[Message] = field(default_factory=list)


@dataclass
class _Fault:
    kind: Literal["status", "reset", "stall"]
    remaining: int
    user: str | None
    status: int = 0
    code: str | None = None
    message: str | None = None
    retry_after: str | None = None
    body: bytes | None = None
    headers: tuple[tuple[str, str | None], ...] = ()


@dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes
    content_length: int | None
    keep_alive: bool
    received_at: float


@dataclass(frozen=True)
class _Route:
    kind: Literal["send", "create", "folder", "unknown"]
    user: str | None = None
    message_id: str | None = None
    id_malformed: bool = False
    folder: str | None = None
    segment: str = ""


@dataclass
class _Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    # The caller supplied its own framing headers: send them as they are and close afterwards.
    raw_framing: bool = False


class _Flight:
    """One request's place in the in-flight counts, released once when its answer is ready."""

    __slots__ = ("_admitted", "_graph", "_released", "_user")

    def __init__(self, graph: FakeGraph, user: str | None) -> None:
        self._graph, self._user = graph, user
        self._admitted = self._released = False
        graph._enter(user)

    def admit(self) -> None:
        """Take one of the mailbox's concurrency slots (server thread only, so no lock)."""
        assert self._user is not None
        admitted = self._graph._admitted
        admitted[self._user] = admitted.get(self._user, 0) + 1
        self._admitted = True

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._admitted:
            assert self._user is not None
            self._graph._admitted[self._user] -= 1
        self._graph._leave(self._user)


class _BadHTTP(Exception):
    """The request could not be parsed: answer with this status and close the connection."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# --------------------------------------------------------------------------------------------
# Helpers


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _retry_after_text(value: float | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise TypeError("retry_after must be a number of seconds or a string")
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _guess_content_type(body: bytes) -> str | None:
    start = body.lstrip()[:1]
    if not start:
        return None
    if start == b"<":
        return "text/html; charset=utf-8"
    if start in (b"{", b"["):
        return "application/json"
    return "text/plain; charset=utf-8"


def _parse_route(target: str, default_user: str) -> _Route:
    """Map a request target to what it names. Each path segment is percent-decoded once."""
    path = target
    if not path.startswith("/") and "://" in path:  # absolute-form: scheme://authority/path
        after_scheme = path.split("://", 1)[1]
        slash = after_scheme.find("/")
        path = after_scheme[slash:] if slash >= 0 else "/"
    path = path.split("?", 1)[0].split("#", 1)[0]
    segments = path.split("/")
    if len(segments) < 3 or segments[0] != "" or segments[1] not in _VERSIONS:
        bad = segments[1] if len(segments) > 1 else path
        return _Route("unknown", segment=unquote(bad))
    rest = segments[2:]
    head = rest[0].lower()
    if head == "me":
        user, tail = default_user, rest[1:]
    elif head == "users" and len(rest) >= 2 and rest[1]:
        user, tail = unquote(rest[1]).casefold(), rest[2:]
    else:
        return _Route("unknown", segment=unquote(rest[0]))
    if not tail:
        return _Route("unknown", user=user, segment=unquote(rest[-1]))
    first = tail[0].lower()
    if first == "messages":
        if len(tail) == 1:
            return _Route("create", user=user)
        if len(tail) >= 3 and tail[-1].lower() == "send":
            id_segments = tail[1:-1]
            if len(id_segments) != 1:
                # An unencoded "/" split the id: Graph answers 400 ErrorInvalidIdMalformed.
                return _Route("send", user=user, id_malformed=True)
            message_id = unquote(id_segments[0])
            malformed = not message_id or any(c not in _ID_ALPHABET for c in message_id)
            return _Route("send", user=user, message_id=message_id, id_malformed=malformed)
        return _Route("unknown", user=user, segment=unquote(tail[-1]))
    if first == "mailfolders" and len(tail) == 3 and tail[2].lower() == "messages":
        folder = unquote(tail[1]).lower()
        if folder in ("drafts", "sentitems"):
            return _Route("folder", user=user, folder=folder)
        return _Route("unknown", user=user, segment=unquote(tail[1]))
    return _Route("unknown", user=user, segment=unquote(tail[0]))


def _make_tls_files(directory: str, host: str) -> tuple[str, str, str]:
    """Write a throwaway CA and a server certificate signed by it; return (ca, cert, key) paths.

    The server certificate names localhost, 127.0.0.1 and ::1 (and ``host``) in its
    SubjectAltName. A separate CA (rather than one self-signed leaf) keeps strict verifiers, such
    as OpenSSL with X509_STRICT, happy.
    """
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as exc:
        raise ImportError(_NEEDS_CRYPTOGRAPHY) from exc
    import ipaddress

    now = datetime.now(timezone.utc)
    not_before, not_after = now - timedelta(days=1), now + timedelta(days=30)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "graphsend FakeGraph test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    addresses = {"127.0.0.1", "::1"}
    try:
        addresses.add(str(ipaddress.ip_address(host)))
    except ValueError:
        if host != "localhost":
            names.append(x509.DNSName(host))
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in sorted(addresses)]

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_path = f"{directory}/ca.pem"
    cert_path = f"{directory}/server.pem"
    key_path = f"{directory}/server.key"
    with open(ca_path, "wb") as f:
        f.write(ca_cert.public_bytes(serialization.Encoding.PEM))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return ca_path, cert_path, key_path


# --------------------------------------------------------------------------------------------
# The server


class FakeGraph:
    """A loopback HTTP/1.1 server that behaves like Graph's ``POST .../messages/{id}/send``.

    The server runs an asyncio event loop in one background thread, so hundreds of concurrent
    keep-alive connections and per-request latency cost no thread each. Every public method is
    thread-safe and may be called while the server runs.

    Arguments (all keyword-only):

    * ``https``: serve TLS with a certificate made at start (needs ``cryptography``); the CA's
      PEM is at :attr:`ca_bundle`.
    * ``token``: the bearer token requests must carry (settable later as ``graph.token``).
    * ``default_user``: the mailbox ``me`` stands for.
    * ``latency``: seconds to wait before answering each send request (settable; see also
      :meth:`set_latency`).
    * ``mailbox_concurrency_limit``: when set, a send arriving while that many sends for the same
      mailbox are in flight gets 429 ``ApplicationThrottled`` with ``Retry-After:
      throttle_retry_after`` (Outlook allows 4). Settable at run time; None switches it off.
    * ``host`` / ``port``: where to listen (port 0 picks a free one; a restarted server keeps
      its port).
    * ``seed``: seeds the id generator, for reproducible ids.

    Rules for send requests, in the order they are applied:

    1. no ``Content-Length`` → 411 ``LengthRequired``;
    2. an injected fault (:meth:`fail_next`, :meth:`reset_next`, :meth:`stall_next`) applies;
    3. missing or wrong ``Authorization: Bearer <token>`` → 401 ``InvalidAuthenticationToken``;
    4. an id split by an unencoded ``/``, or with characters outside base64/base64url after one
       percent-decoding → 400 ``ErrorInvalidIdMalformed``;
    5. over the mailbox concurrency limit → 429 ``ApplicationThrottled`` (answered at once);
    6. unknown mailbox → 404 ``ErrorInvalidUser``; unknown or already sent id → 404
       ``ErrorItemNotFound`` (but see :attr:`resend_window`);
    7. otherwise the draft moves to Sent Items and the answer is ``202 Accepted``.

    Latency applies to every answer of a send request except 411 and throttling 429s.
    Other paths get 404 and other methods on a send path 405, in Graph's error shape.
    """

    #: Seconds to wait before answering each send request (applies from the next request on).
    latency: float
    #: Concurrent sends allowed per mailbox before 429 ApplicationThrottled (None: no limit).
    mailbox_concurrency_limit: int | None
    #: Value of the Retry-After header on throttling 429s (seconds, or any string).
    throttle_retry_after: float | str
    #: For this many seconds after a send, the same id still sends again (a duplicate in Sent
    #: Items), like Graph's lag in invalidating ids. 0 (the default) means 404 at once.
    resend_window: float
    #: Close idle keep-alive connections after this many seconds (None: never).
    idle_timeout: float | None
    #: Answer with ``Connection: close`` on the Nth request of a connection (None: never).
    max_requests_per_connection: int | None
    #: Record requests in :attr:`requests` (switch off for long benchmarks).
    record_requests: bool

    def __init__(
        self,
        *,
        https: bool = False,
        token: str = "fake-token",
        default_user: str = "adele@contoso.com",
        latency: float = 0.0,
        mailbox_concurrency_limit: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        throttle_retry_after: float | str = 1,
        seed: int | None = None,
    ) -> None:
        if https and importlib.util.find_spec("cryptography") is None:
            raise ImportError(_NEEDS_CRYPTOGRAPHY)
        self._https = https
        self._token = token
        self._default_user = default_user.casefold()
        self._host = host
        self._port = port
        self.latency = latency
        self.mailbox_concurrency_limit = mailbox_concurrency_limit
        self.throttle_retry_after = throttle_retry_after
        self.resend_window = 0.0
        self.idle_timeout = None
        self.max_requests_per_connection = None
        self.record_requests = True

        # Everything below is shared between the caller's threads and the server thread.
        self._lock = threading.Lock()
        self._request_arrived = threading.Condition(self._lock)
        self._rng = random.Random(seed)
        self._mailboxes: dict[str, _Mailbox] = {}
        self._ids: set[str] = set()
        self._drafts_made = 0
        self._sent_log: list[Message] = []
        self._recently_sent: dict[str, tuple[float, Message]] = {}
        self._faults: list[_Fault] = []
        self._requests: list[RecordedRequest] = []
        self._latency_by_user: dict[str, float] = {}
        self._connections = 0
        self._connection_serial = 0
        self._open_connections = 0
        self._in_flight: dict[str | None, int] = {}
        self._in_flight_total = 0
        self._peak: dict[str | None, int] = {}
        self._peak_total = 0
        self._admitted: dict[str, int] = {}
        self.add_mailbox(default_user)

        # Server thread state.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._started_once = False
        self._tls_dir: str | None = None
        self._ca_bundle: str | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> FakeGraph:
        """Start serving in a background thread; returns self. A stopped server may restart."""
        if self._thread is not None:
            raise RuntimeError("FakeGraph is already running")
        ssl_context = self._make_ssl_context() if self._https else None
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []
        thread = threading.Thread(
            target=self._run,
            args=(loop, ssl_context, ready, failure),
            name="FakeGraph",
            daemon=True,
        )
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            self._remove_tls_files()
            raise failure[0]
        self._loop, self._thread = loop, thread
        self._started_once = True
        return self

    def stop(self) -> None:
        """Stop serving: close every connection (stalled ones too) and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = None
        self._remove_tls_files()

    def __enter__(self) -> FakeGraph:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"serving {self.base_url}" if self.running else "stopped"
        return f"<FakeGraph {state}>"

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._thread is not None

    # ---------------------------------------------------------------- addresses

    @property
    def port(self) -> int:
        """The TCP port (known once started; kept after stop)."""
        self._require_started()
        return self._port

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return self._host

    @property
    def scheme(self) -> str:
        """``"https"`` or ``"http"``."""
        return "https" if self._https else "http"

    @property
    def base_url(self) -> str:
        """``scheme://host:port`` with no trailing slash and no version; append ``/v1.0/...``."""
        self._require_started()
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{self.scheme}://{host}:{self._port}"

    def send_url(self, message_id: str, user: str | None = None, *, version: str = "v1.0") -> str:
        """The full send URL for a draft, each segment percent-encoded once (a convenience for
        tests; graphsend builds its own URLs)."""
        from urllib.parse import quote

        who = "me" if user is None else f"users/{quote(user, safe='@')}"
        return f"{self.base_url}/{version}/{who}/messages/{quote(message_id, safe='')}/send"

    @property
    def token(self) -> str:
        """The bearer token that requests must carry. Assign to rotate it while running."""
        return self._token

    @token.setter
    def token(self, value: str) -> None:
        self._token = value

    @property
    def default_user(self) -> str:
        """The mailbox that ``me`` stands for (lower-cased)."""
        return self._default_user

    @property
    def ca_bundle(self) -> str | None:
        """Path of the CA certificate (PEM) in HTTPS mode, for libcurl's CAINFO; else None.

        The file exists from start() until stop()."""
        return self._ca_bundle

    def client_ssl_context(self) -> ssl.SSLContext:
        """An ``ssl.SSLContext`` for clients that trusts this server's CA (HTTPS mode only)."""
        if self._ca_bundle is None:
            raise RuntimeError("client_ssl_context() needs a running FakeGraph(https=True)")
        return ssl.create_default_context(cafile=self._ca_bundle)

    # ---------------------------------------------------------------- mailboxes

    def add_mailbox(self, user: str) -> None:
        """Make an empty mailbox (sends to a mailbox that does not exist get 404
        ``ErrorInvalidUser``; create_draft makes mailboxes as needed)."""
        key = self._key(user)
        with self._lock:
            self._mailboxes.setdefault(key, _Mailbox(key))

    def create_draft(
        self,
        user: str | None = None,
        subject: str = "FakeGraph test message",
        kind: DraftKind = "new",
        *,
        id_style: IdStyle | None = None,
    ) -> str:
        """Create a draft in ``user``'s mailbox (default: :attr:`default_user`) and return its id.

        Ids look like Graph's: 152 base64 characters starting with ``AAMkA`` and ending with
        ``=``. REST-style ids contain both ``-`` and ``_``; EWS-style ids (from older Exchange
        APIs) contain both ``/`` and ``+``, which must be percent-encoded in a URL. With
        ``id_style=None`` every third draft made by this server is EWS-style; pass
        ``id_style="rest"`` or ``"ews"`` to choose.
        """
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {sorted(_KINDS)}, not {kind!r}")
        if id_style not in (None, "rest", "ews"):
            raise ValueError(f"id_style must be 'rest', 'ews' or None, not {id_style!r}")
        return self._new_draft(self._key(user), subject, kind, id_style).id

    def create_drafts(
        self,
        count: int,
        user: str | None = None,
        subject: str = "FakeGraph test message",
        kind: DraftKind = "new",
        *,
        id_style: IdStyle | None = None,
    ) -> list[str]:
        """Create ``count`` drafts (see :meth:`create_draft`) and return their ids in order."""
        return [self.create_draft(user, subject, kind, id_style=id_style) for _ in range(count)]

    def drafts(self, user: str | None = None) -> list[Message]:
        """Drafts not sent yet, oldest first: of ``user`` (``"me"`` = default user), or of every
        mailbox when ``user`` is None."""
        with self._lock:
            if user is None:
                return [m for box in self._mailboxes.values() for m in box.drafts.values()]
            box = self._mailboxes.get(self._key(user))
            return list(box.drafts.values()) if box else []

    def sent_items(self, user: str | None = None) -> list[Message]:
        """Messages sent, in the order the sends were accepted: of ``user`` (``"me"`` = default
        user), or of every mailbox when ``user`` is None."""
        with self._lock:
            if user is None:
                return list(self._sent_log)
            box = self._mailboxes.get(self._key(user))
            return list(box.sent) if box else []

    # ---------------------------------------------------------------- fault injection

    def fail_next(
        self,
        status: int,
        code: str | None = None,
        message: str | None = None,
        *,
        retry_after: float | str | None = None,
        body: str | bytes | None = None,
        headers: Mapping[str, str | None] | None = None,
        count: int = 1,
        user: str | None = None,
    ) -> None:
        """Answer the next ``count`` send requests (only ``user``'s, if given) with ``status``.

        The body is Graph's error JSON with ``code`` and ``message`` (defaults depend on the
        status), unless ``body`` is given: it then replaces the body entirely (``""`` for an
        empty body, HTML for a gateway page, megabytes for a huge one) and Content-Type is
        guessed from it. ``retry_after`` (seconds as int/float, or any string such as an
        HTTP-date) becomes a Retry-After header. ``headers`` adds or overrides response headers;
        a None value removes one (``{"request-id": None}``). Setting Content-Length or
        Transfer-Encoding yourself sends your framing as is and closes the connection after the
        body (to test truncated bodies).

        A 2xx status does not fail: the request is processed as usual (the draft is sent) and,
        if it succeeds, answered with this status, Retry-After and headers, with an empty body
        unless ``code``, ``message`` or ``body`` is given. ``fail_next(202, retry_after=5)`` is
        the 202-with-Retry-After that must not be retried; ``fail_next(200, "Odd")`` sends the
        draft and answers an unexpected 200 carrying an error body.

        Faults queue in the order they were added, shared with reset_next and stall_next.
        """
        if not 200 <= status <= 599:
            raise ValueError("status must be an HTTP status from 200 to 599")
        raw = body.encode("utf-8") if isinstance(body, str) else body
        self._add_fault(
            _Fault(
                "status",
                count,
                self._key(user) if user is not None else None,
                status=status,
                code=code,
                message=message,
                retry_after=_retry_after_text(retry_after),
                body=raw,
                headers=tuple((headers or {}).items()),
            )
        )

    def reset_next(self, count: int = 1, *, user: str | None = None) -> None:
        """Read the next ``count`` send requests, then reset the connection without answering
        (SO_LINGER 0: the client sees ECONNRESET, not a clean close). The draft is not sent."""
        self._add_fault(_Fault("reset", count, self._key(user) if user is not None else None))

    def stall_next(self, count: int = 1, *, user: str | None = None) -> None:
        """Read the next ``count`` send requests and never answer them (until the client
        disconnects or the server stops): for client timeouts. The draft is not sent."""
        self._add_fault(_Fault("stall", count, self._key(user) if user is not None else None))

    def clear_faults(self) -> None:
        """Drop every fault not yet used."""
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        """How many injected faults (counting each ``count``) are still waiting."""
        with self._lock:
            return sum(f.remaining for f in self._faults)

    def set_latency(self, user: str, seconds: float | None) -> None:
        """Wait ``seconds`` before answering sends for ``user``'s mailbox (overrides
        :attr:`latency`); None goes back to the global latency."""
        key = self._key(user)
        with self._lock:
            if seconds is None:
                self._latency_by_user.pop(key, None)
            else:
                self._latency_by_user[key] = float(seconds)

    # ---------------------------------------------------------------- observation

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (a snapshot list), failed ones included."""
        with self._lock:
            return list(self._requests)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests have been recorded; return them.

        Raises TimeoutError after ``timeout`` seconds. Handy to know that a stalled or slow
        request has reached the server."""
        deadline = time.monotonic() + timeout
        with self._request_arrived:
            while len(self._requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"FakeGraph received {len(self._requests)} requests, not {count}, "
                        f"within {timeout} s"
                    )
                self._request_arrived.wait(left)
            return list(self._requests)

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (since start or reset_stats)."""
        with self._lock:
            return self._connections

    @property
    def open_connections(self) -> int:
        """TCP connections open right now."""
        with self._lock:
            return self._open_connections

    def in_flight(self, user: str | None = None) -> int:
        """Requests being handled right now, for ``user``'s mailbox or for the whole server."""
        with self._lock:
            if user is None:
                return self._in_flight_total
            return self._in_flight.get(self._key(user), 0)

    def peak_in_flight(self, user: str | None = None) -> int:
        """The most requests seen in flight at once (from fully read to answered), for ``user``'s
        mailbox or, with None, across the whole server. Requests answered 429 by the
        concurrency limit count too, so this shows what the client attempted."""
        with self._lock:
            if user is None:
                return self._peak_total
            return self._peak.get(self._key(user), 0)

    def reset_stats(self) -> None:
        """Zero :attr:`connections` and the in-flight peaks (peaks restart from what is in flight
        now). Recorded requests are kept: see clear_requests()."""
        with self._lock:
            self._connections = 0
            self._peak_total = self._in_flight_total
            self._peak = {k: v for k, v in self._in_flight.items() if v}

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._requests.clear()

    # ---------------------------------------------------------------- internals: state

    def _key(self, user: str | None) -> str:
        if user is None or user.casefold() == "me":
            return self._default_user
        return user.casefold()

    def _require_started(self) -> None:
        if not self._started_once:
            raise RuntimeError("FakeGraph is not started: call start() or use `with FakeGraph()`")

    def _new_draft(
        self, key: str, subject: str, kind: DraftKind, id_style: IdStyle | None
    ) -> Message:
        with self._lock:
            self._drafts_made += 1
            style: IdStyle = id_style or ("ews" if self._drafts_made % 3 == 0 else "rest")
            message_id = self._new_id(style)
            mailbox = self._mailboxes.setdefault(key, _Mailbox(key))
            draft = mailbox.drafts[message_id] = Message(message_id, subject, kind, key)
        return draft

    def _new_id(self, style: IdStyle) -> str:
        # 113 bytes encode to 152 characters with one "=" of padding, like real ids. The first
        # bytes make the text start with "AAMkA".
        needed = "-_" if style == "rest" else "+/"
        while True:
            raw = b"\x00\x03\x24" + bytes([self._rng.randrange(4)]) + self._rng.randbytes(109)
            text = base64.b64encode(raw).decode("ascii")
            if style == "rest":
                text = text.replace("+", "-").replace("/", "_")
            if all(c in text for c in needed) and text not in self._ids:
                self._ids.add(text)
                return text

    def _add_fault(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, user: str | None) -> _Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.user is None or fault.user == user:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        del self._faults[i]
                    return fault
        return None

    def _record(self, record: RecordedRequest) -> None:
        with self._request_arrived:
            if self.record_requests:
                self._requests.append(record)
                self._request_arrived.notify_all()

    def _enter(self, user: str | None) -> None:
        with self._lock:
            self._in_flight_total += 1
            self._peak_total = max(self._peak_total, self._in_flight_total)
            if user is not None:
                n = self._in_flight.get(user, 0) + 1
                self._in_flight[user] = n
                self._peak[user] = max(self._peak.get(user, 0), n)

    def _leave(self, user: str | None) -> None:
        with self._lock:
            self._in_flight_total -= 1
            if user is not None:
                self._in_flight[user] -= 1

    def _latency_for(self, user: str | None) -> float:
        with self._lock:
            if user is not None and user in self._latency_by_user:
                return self._latency_by_user[user]
        return float(self.latency)

    # ---------------------------------------------------------------- internals: TLS

    def _make_ssl_context(self) -> ssl.SSLContext:
        if self._tls_dir is None:
            self._tls_dir = tempfile.mkdtemp(prefix="fakegraph-tls-")
        try:
            ca_path, cert_path, key_path = _make_tls_files(self._tls_dir, self._host)
        except BaseException:
            self._remove_tls_files()
            raise
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        context.set_alpn_protocols(["http/1.1"])
        self._ca_bundle = ca_path
        return context

    def _remove_tls_files(self) -> None:
        if self._tls_dir is not None:
            shutil.rmtree(self._tls_dir, ignore_errors=True)
        self._tls_dir = self._ca_bundle = None

    # ---------------------------------------------------------------- internals: server thread

    def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        ssl_context: ssl.SSLContext | None,
        ready: threading.Event,
        failure: list[BaseException],
    ) -> None:
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(_quiet_exception_handler)
        try:
            server = loop.run_until_complete(
                asyncio.start_server(
                    self._connection,
                    self._host,
                    self._port,
                    ssl=ssl_context,
                    backlog=1024,
                    limit=_MAX_HEAD,
                )
            )
        except BaseException as exc:
            failure.append(exc)
            loop.close()
            ready.set()
            return
        self._server = server
        self._port = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        with self._lock:
            self._connections += 1
            self._open_connections += 1
            self._connection_serial += 1
            number = self._connection_serial
        served = 0
        try:
            while True:
                try:
                    request = await self._read_request(reader, writer)
                except _BadHTTP as bad:
                    reply = self._error_reply(bad.status, bad.code, bad.message, None)
                    await self._write(writer, reply, close=True, head_only=False)
                    break
                if request is None:
                    break
                served += 1
                if not await self._handle(request, number, served, reader, writer):
                    break
        except (ConnectionError, OSError):
            pass  # the client went away
        except asyncio.CancelledError:
            # stop() cancels connections. End quietly: the stream callback of some Python
            # versions reports a cancelled connection task as an unhandled error.
            pass
        finally:
            with self._lock:
                self._open_connections -= 1
            if task is not None:
                self._tasks.discard(task)
            writer.close()  # flushes what is buffered, then FIN (a reset has already aborted)

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> _Request | None:
        """Read one request; None when the client closed the connection or stayed idle too long."""
        head = b""
        while not head:
            try:
                read = reader.readuntil(b"\r\n\r\n")
                idle = self.idle_timeout
                raw = await (asyncio.wait_for(read, idle) if idle is not None else read)
            except (asyncio.IncompleteReadError, asyncio.TimeoutError):
                return None
            except asyncio.LimitOverrunError as exc:
                raise _BadHTTP(
                    431, "RequestHeaderFieldsTooLarge", "The request header is too large."
                ) from exc
            head = raw.lstrip(b"\r\n")  # tolerate stray CRLFs between requests (RFC 9112 2.2)
        received_at = time.monotonic()

        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[0].isalpha() or not parts[1]:
            raise _BadHTTP(400, "BadRequest", "Malformed request line.")
        method, target, version = parts
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            raise _BadHTTP(505, "BadRequest", f"HTTP version {version!r} is not supported.")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip() or " " in name:
                raise _BadHTTP(400, "BadRequest", "Malformed header line.")
            name = name.lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value

        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        if version == "HTTP/1.1":
            keep_alive = "close" not in tokens
        else:
            keep_alive = "keep-alive" in tokens

        content_length: int | None = None
        if "transfer-encoding" in headers:
            codings = [c.strip().lower() for c in headers["transfer-encoding"].split(",")]
            if codings[-1] != "chunked":
                raise _BadHTTP(501, "NotImplemented", "Only chunked transfer coding is supported.")
            body = await self._read_chunked(reader)
        elif "content-length" in headers:
            values = {v.strip() for v in headers["content-length"].split(",")}
            if len(values) != 1 or not next(iter(values)).isdigit():
                raise _BadHTTP(400, "BadRequest", "Invalid Content-Length.")
            content_length = int(values.pop())
            if content_length > _MAX_BODY:
                raise _BadHTTP(413, "RequestEntityTooLarge", "The request body is too large.")
            if content_length and headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            try:
                body = await reader.readexactly(content_length)
            except asyncio.IncompleteReadError:
                return None
        else:
            body = b""
        if body is None:
            return None
        return _Request(
            method, target, version, headers, body, content_length, keep_alive, received_at
        )

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        try:
            while True:
                size_line = await reader.readuntil(b"\r\n")
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError as exc:
                    raise _BadHTTP(400, "BadRequest", "Malformed chunk size.") from exc
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > _MAX_BODY:
                    raise _BadHTTP(413, "RequestEntityTooLarge", "The request body is too large.")
                chunks.append((await reader.readexactly(size + 2))[:-2])
        except asyncio.IncompleteReadError:
            return None

    async def _handle(
        self,
        request: _Request,
        number: int,
        served: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Serve one request; return whether the connection stays open."""
        route = _parse_route(request.target, self._default_user)
        record = RecordedRequest(
            method=request.method,
            path=request.target,
            headers=request.headers,
            body=request.body,
            user=route.user,
            message_id=route.message_id,
            received_at=request.received_at,
            connection=number,
            http_version=request.version,
        )
        self._record(record)
        request_id = str(uuid.uuid4())
        client_request_id = request.headers.get("client-request-id") or request_id
        ids = (request_id, client_request_id)
        keep = request.keep_alive
        limit = self.max_requests_per_connection
        if limit is not None and served >= limit:
            keep = False

        flight = _Flight(self, route.user)
        try:
            if route.kind == "send" and request.method == "POST":
                return await self._send(request, route, record, ids, flight, reader, writer, keep)
            reply = self._other(request, route, ids)
            head_only = request.method == "HEAD"
            return await self._answer(reader, writer, record, reply, flight, keep, head_only)
        finally:
            flight.release()

    async def _send(
        self,
        request: _Request,
        route: _Route,
        record: RecordedRequest,
        ids: tuple[str, str],
        flight: _Flight,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        keep: bool,
    ) -> bool:
        user = route.user
        assert user is not None
        if request.content_length is None:
            reply = self._error_reply(411, *_DEFAULT_ERRORS[411], ids)
            return await self._answer(reader, writer, record, reply, flight, keep)

        fault = self._take_fault(user)
        if fault is not None and fault.kind == "stall":
            record.outcome = "stalled"
            with contextlib.suppress(ConnectionError, OSError):
                while await reader.read(65536):
                    pass  # wait for the client to give up; stop() cancels this
            record.outcome = "disconnected"
            return False
        latency = self._latency_for(user)
        if fault is not None and fault.kind == "reset":
            await _sleep(latency)
            record.outcome = "reset"
            flight.release()
            _abort(writer)
            return False
        if fault is not None and not 200 <= fault.status < 300:
            await _sleep(latency)
            reply = self._fault_reply(fault, ids, None)
            return await self._answer(reader, writer, record, reply, flight, keep)

        error = self._auth_error(request, ids)
        if error is None and route.id_malformed:
            error = self._error_reply(400, "ErrorInvalidIdMalformed", "Id is malformed.", ids)
        if error is not None:
            await _sleep(latency)
            return await self._answer(reader, writer, record, error, flight, keep)

        cap = self.mailbox_concurrency_limit
        if cap is not None and self._admitted.get(user, 0) >= cap:
            reply = self._error_reply(
                429,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
                ids,
            )
            retry_after = _retry_after_text(self.throttle_retry_after)
            if retry_after is not None:
                reply.headers.append(("Retry-After", retry_after))
            return await self._answer(reader, writer, record, reply, flight, keep)

        flight.admit()
        await _sleep(latency)
        reply = self._move_to_sent(user, route.message_id or "", ids)
        if fault is not None and 200 <= reply.status < 300:
            reply = self._fault_reply(fault, ids, reply)
        return await self._answer(reader, writer, record, reply, flight, keep)

    def _move_to_sent(self, user: str, message_id: str, ids: tuple[str, str]) -> _Reply:
        now = datetime.now(timezone.utc)
        with self._lock:
            box = self._mailboxes.get(user)
            if box is None:
                return self._error_reply(
                    404, "ErrorInvalidUser", f"The requested user '{user}' is invalid.", ids
                )
            draft = box.drafts.pop(message_id, None)
            if draft is None:
                recent = self._recently_sent.get(message_id)
                window = self.resend_window
                if recent and recent[1].user == user and time.monotonic() - recent[0] < window:
                    draft = recent[1]
            if draft is None:
                return self._error_reply(404, *_DEFAULT_ERRORS[404], ids)
            sent = dataclasses.replace(draft, sent_at=now)
            box.sent.append(sent)
            self._sent_log.append(sent)
            if self.resend_window > 0:
                self._recently_sent[message_id] = (time.monotonic(), draft)
        return _Reply(202, self._common_headers(ids))

    def _other(self, request: _Request, route: _Route, ids: tuple[str, str]) -> _Reply:
        """Everything that is not a POST to a send path."""
        if route.kind == "send":
            return self._method_not_allowed(request.method, "POST", ids)
        if route.kind == "unknown":
            return self._error_reply(
                404,
                "ResourceNotFound",
                f"Resource not found for the segment '{route.segment}'.",
                ids,
            )
        error = self._auth_error(request, ids)
        if error is not None:
            return error
        user = route.user
        assert user is not None
        if route.kind == "create":
            if request.method != "POST":
                return self._method_not_allowed(request.method, "POST", ids)
            return self._create_from_request(request, user, ids)
        if request.method not in ("GET", "HEAD"):
            return self._method_not_allowed(request.method, "GET", ids)
        with self._lock:
            box = self._mailboxes.get(user)
            if box is None:
                return self._error_reply(
                    404, "ErrorInvalidUser", f"The requested user '{user}' is invalid.", ids
                )
            items = list(box.drafts.values()) if route.folder == "drafts" else list(box.sent)
        value = [_message_json(m) for m in items]
        return self._json_reply(200, {"value": value}, ids)

    def _create_from_request(self, request: _Request, user: str, ids: tuple[str, str]) -> _Reply:
        subject = "FakeGraph test message"
        if request.body.strip():
            try:
                data = json.loads(request.body)
            except ValueError:
                data = None
            if not isinstance(data, dict):
                return self._error_reply(400, "RequestBodyRead", "Invalid JSON body.", ids)
            subject = str(data.get("subject", subject))
        # The draft goes where create_draft(user) puts it: "users/me" means the default user.
        draft = self._new_draft(self._key(user), subject, "new", None)
        return self._json_reply(201, _message_json(draft), ids)

    # ---------------------------------------------------------------- internals: replies

    def _common_headers(self, ids: tuple[str, str] | None) -> list[tuple[str, str]]:
        request_id, client_request_id = ids or (str(uuid.uuid4()),) * 2
        headers = [
            ("request-id", request_id),
            ("client-request-id", client_request_id),
            ("Date", email.utils.formatdate(usegmt=True)),
            ("x-ms-ags-diagnostic", _DIAGNOSTIC),
            ("Cache-Control", "no-cache"),
        ]
        if self._https:
            headers.append(("Strict-Transport-Security", "max-age=31536000"))
        return headers

    def _error_reply(
        self, status: int, code: str, message: str, ids: tuple[str, str] | None
    ) -> _Reply:
        headers = self._common_headers(ids)
        inner = {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": headers[0][1],
            "client-request-id": headers[1][1],
        }
        body = {"error": {"code": code, "message": message, "innerError": inner}}
        headers.append(("Content-Type", "application/json"))
        return _Reply(status, headers, json.dumps(body).encode("utf-8"))

    def _json_reply(self, status: int, payload: object, ids: tuple[str, str]) -> _Reply:
        headers = self._common_headers(ids)
        headers.append(("Content-Type", "application/json; odata.metadata=minimal"))
        return _Reply(status, headers, json.dumps(payload).encode("utf-8"))

    def _method_not_allowed(self, method: str, allow: str, ids: tuple[str, str]) -> _Reply:
        reply = self._error_reply(
            405,
            "MethodNotAllowed",
            f"The HTTP method '{method}' is not allowed for this resource.",
            ids,
        )
        reply.headers.append(("Allow", allow))
        return reply

    def _auth_error(self, request: _Request, ids: tuple[str, str]) -> _Reply | None:
        value = request.headers.get("authorization", "")
        scheme, _, credential = value.strip().partition(" ")
        if not value.strip():
            message = "Access token is empty."
        elif scheme.lower() != "bearer" or credential.strip() != self._token:
            message = "Access token validation failure. Invalid audience."
        else:
            return None
        reply = self._error_reply(401, "InvalidAuthenticationToken", message, ids)
        reply.headers.append(
            (
                "WWW-Authenticate",
                'Bearer realm="", authorization_uri="https://login.microsoftonline.com/'
                'common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"',
            )
        )
        return reply

    def _fault_reply(self, fault: _Fault, ids: tuple[str, str], success: _Reply | None) -> _Reply:
        """The answer for a ``fail_next`` fault. ``success`` is the normal 2xx answer when the
        fault has a 2xx status and the send went through: its empty body is kept unless the
        fault names a code, a message or a body."""
        if success is not None and fault.code is None and fault.message is None:
            return self._apply_fault(success, fault)
        default_code, default_message = _DEFAULT_ERRORS.get(
            fault.status, ("UnknownError", "An error occurred.")
        )
        reply = self._error_reply(
            fault.status, fault.code or default_code, fault.message or default_message, ids
        )
        return self._apply_fault(reply, fault)

    def _apply_fault(self, reply: _Reply, fault: _Fault) -> _Reply:
        """Give ``reply`` the fault's status, Retry-After, body and headers."""
        headers = list(reply.headers)
        body = reply.body
        if fault.body is not None:
            body = fault.body
            headers = [(n, v) for n, v in headers if n.lower() != "content-type"]
            content_type = _guess_content_type(body)
            if content_type is not None:
                headers.append(("Content-Type", content_type))
        if fault.retry_after is not None:
            headers.append(("Retry-After", fault.retry_after))
        raw_framing = False
        for name, value in fault.headers:
            headers = [(n, v) for n, v in headers if n.lower() != name.lower()]
            if value is not None:
                headers.append((name, value))
                raw_framing |= name.lower() in ("content-length", "transfer-encoding")
        return _Reply(fault.status, headers, body, raw_framing)

    async def _answer(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        record: RecordedRequest,
        reply: _Reply,
        flight: _Flight,
        keep: bool,
        head_only: bool = False,
    ) -> bool:
        """Write ``reply``, update ``record``; return whether the connection stays open."""
        close = not keep or reply.raw_framing
        for name, value in reply.headers:
            if name.lower() == "connection" and "close" in value.lower():
                close = True
        # Settle the record and the counts before the client can see the answer, so that a test
        # reading them right after its response never finds them a step behind.
        record.status = reply.status
        # A client that closed its side before the answer has given up (curl never half-closes);
        # the answer is still written, as Graph would.
        record.outcome = "disconnected" if reader.at_eof() else "answered"
        record.answered_at = time.monotonic()
        flight.release()
        try:
            await self._write(writer, reply, close=close, head_only=head_only)
        except (ConnectionError, OSError):
            record.outcome = "disconnected"
            return False
        return not close

    async def _write(
        self, writer: asyncio.StreamWriter, reply: _Reply, *, close: bool, head_only: bool
    ) -> None:
        if writer.is_closing():
            raise ConnectionResetError("the client closed the connection")
        lines = [f"HTTP/1.1 {reply.status} {_reason(reply.status)}"]
        lines += [f"{name}: {value}" for name, value in reply.headers]
        if not reply.raw_framing:
            lines.append(f"Content-Length: {len(reply.body)}")
        if close and not any(n.lower() == "connection" for n, _ in reply.headers):
            lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head_only:
            view = memoryview(reply.body)
            for start in range(0, len(view), _WRITE_CHUNK):
                writer.write(view[start : start + _WRITE_CHUNK])
                await writer.drain()
        await writer.drain()


def _message_json(message: Message) -> dict[str, object]:
    return {
        "id": message.id,
        "subject": message.subject,
        "isDraft": message.sent_at is None,
        "sentDateTime": message.sent_at.strftime("%Y-%m-%dT%H:%M:%SZ") if message.sent_at else None,
    }


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close abortively: SO_LINGER 0 makes the kernel send RST instead of FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _quiet_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """Clients that vanish mid-handshake or mid-write are normal here; report anything else."""
    exc = context.get("exception")
    if isinstance(exc, (ConnectionError, ssl.SSLError, OSError)):
        return
    loop.default_exception_handler(context)


# --------------------------------------------------------------------------------------------
# Command line


def main(argv: Iterable[str] | None = None) -> int:
    """Serve a FakeGraph until interrupted. Prints the base URL as the first line of stdout."""
    parser = argparse.ArgumentParser(
        prog="python -m graphsend.testing",
        description="Serve a fake Microsoft Graph send endpoint on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--https", action="store_true", help="serve TLS (needs cryptography)")
    parser.add_argument("--token", default="fake-token")
    parser.add_argument("--user", default="adele@contoso.com", help="the mailbox 'me' names")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument(
        "--concurrency-limit", type=int, default=None, help="429 beyond N sends per mailbox"
    )
    parser.add_argument("--drafts", type=int, default=0, help="create N drafts for --user")
    parser.add_argument("--drafts-file", help="write the draft ids there, one per line")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(None if argv is None else list(argv))

    graph = FakeGraph(
        https=args.https,
        token=args.token,
        default_user=args.user,
        latency=args.latency,
        mailbox_concurrency_limit=args.concurrency_limit,
        host=args.host,
        port=args.port,
        seed=args.seed,
    )
    # SIGTERM should clean up like Ctrl-C does (the HTTPS mode's temporary files).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with graph:
        ids = graph.create_drafts(args.drafts)
        if args.drafts_file:
            with open(args.drafts_file, "w") as f:
                f.writelines(f"{i}\n" for i in ids)
        print(graph.base_url, flush=True)
        print(f"token: {graph.token}", file=sys.stderr)
        if graph.ca_bundle:
            print(f"ca_bundle: {graph.ca_bundle}", file=sys.stderr)
        print(f"drafts: {len(ids)} for {graph.default_user}", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())

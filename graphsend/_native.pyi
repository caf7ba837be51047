"""libcurl transport for graphsend (C extension, csrc/). See ARCHITECTURE.md."""

from typing import Final, Literal, TypeAlias, final

from graphsend._rules.receipt import Receipt

#: (status, headers, body, elapsed, curl_code, error, request_sent)
#:   status        HTTP status of the final response; 0 when none arrived (a status with a
#:                 non-zero curl_code means the body was cut short after the response began)
#:   headers       lower-case names; only request-id, client-request-id, date, retry-after,
#:                 content-type, x-ms-ags-diagnostic, location, when present (first wins)
#:   body          at most body_limit bytes (Handle.request(): body_limit_ok for a 2xx answer);
#:                 the rest was read and discarded
#:   elapsed       seconds, from the start of the send to its end
#:   curl_code     CURLcode, 0 when the transfer completed; 42 for a cancelled/aborted one
#:   error         libcurl's error text, "" when curl_code is 0; starts with "HTTPS proxy: "
#:                 when the proxy's certificate was not trusted (curl_code 60)
#:   request_sent  request bytes had been written to the connection (a partial write counts,
#:                 so False proves the server never saw the request)
Result: TypeAlias = tuple[int, dict[str, str], bytes, float, int, str, bool]

libcurl_version: Final[str]  # the libcurl loaded at run time
libcurl_build_version: Final[str]  # the libcurl headers compiled against (never newer)
ssl_version: Final[str]
event_backend: Final[str]  # how send_many waits: "epoll" (Linux) or "curl_multi_poll" (portable)
http2_supported: Final[bool]
body_limit: Final[int]  # 65536
body_limit_ok: Final[int]  # 8 MiB: Handle.request() keeps a 2xx body up to this
id_limit: Final[int]  # 2048: the longest user and message_id, in characters
async_dns: Final[bool]  # libcurl resolves asynchronously (timeouts and Ctrl-C can end a lookup)
limited_api: Final[bool]  # built as abi3 (GRAPHSEND_ABI3=1): no per-interpreter GIL support

def new_client_request_id() -> str:
    """A fresh random (version 4) UUID string, for the client-request-id header."""

def check_text(value: object, what: str, /) -> str:
    """value, if it is a non-empty str without control characters; else TypeError/ValueError."""

def send_path(user: str | None, message_id: str, /) -> str:
    """/me|users/{user}/messages/{id}/send, each part checked and one percent-encoded segment."""

def set_receipt_type(cls: type[tuple[object, ...]], /) -> None:
    """The tuple subclass (graphsend.Receipt) that Handle.send_draft() returns on 202: built
    from (status, request_id, client_request_id, date, elapsed, message_id, user, False)."""

@final
class Share:
    """DNS cache and TLS sessions shared between Handles and Engines (never connections)."""

    def __new__(cls) -> Share: ...

@final
class Handle:
    """One easy handle with its own connection; one thread at a time (else RuntimeError)."""

    def __new__(
        cls,
        *,
        check_signals: bool = False,
        connect_timeout_ms: int = 10000,  # 0: libcurl's built-in 300 s
        timeout_ms: int = 60000,  # 0: no limit
        allow_http: bool = False,
        ca_bundle: str | None = None,
        proxy: str | None = None,  # None: the environment's; "": none
        # An https:// proxy's CAs (CURLOPT_PROXY_CAINFO); None: libcurl's default
        proxy_ca_bundle: str | None = None,
        user_agent: str = "graphsend",  # "": no User-Agent header; CR/LF/NUL: ValueError
        http2: bool = False,
        share: Share | None = None,
    ) -> Handle: ...
    @property
    def closed(self) -> bool: ...
    def send(self, url: str, headers: tuple[str, ...]) -> Result:
        """POST url (empty body) with these header lines; the GIL is released meanwhile."""
    def send_draft(
        self,
        prefix: str,
        user: str | None,
        message_id: str,
        auth: str,
        client_request_id: str | None,
    ) -> Receipt | tuple[str, str, Result]:
        """Send prefix + send_path(user, message_id) with the Authorization line ``auth``,
        ``client_request_id`` (None: a new one). A
        Receipt on 202, else (path, client_request_id, Result)."""
    def request(
        self,
        method: Literal["GET", "POST", "PUT", "DELETE"],
        url: str,
        headers: tuple[str, ...],
        body: bytes | None = None,
        file: tuple[int, int, int] | None = None,
    ) -> Result:
        """Any request, the GIL released meanwhile. ``body``: bytes sent as is; ``file``:
        (fd, offset, length), that byte range of an open file read with pread() in C. Either
        goes out with its Content-Length (a POST without a body: ``Content-Length: 0``). A 2xx
        body comes back whole up to body_limit_ok. libcurl's silent resend of a request on a
        dead reused connection is refused for POST (it may send mail) and allowed for PUT, GET
        and DELETE (a file body is then read again from its offset)."""
    def close(self) -> None:
        """Free the easy handle and its connection. Never fails: during a send in another
        thread (or from a signal handler) the handle is marked closed at once and freed when
        that send returns; in a forked child it is only dropped."""

@final
class Engine:
    """A multi handle for many concurrent sends; one thread drives perform()."""

    def __new__(
        cls,
        *,
        connect_timeout_ms: int = 10000,
        timeout_ms: int = 60000,
        allow_http: bool = False,
        ca_bundle: str | None = None,
        proxy: str | None = None,
        proxy_ca_bundle: str | None = None,
        user_agent: str = "graphsend",
        http2: bool = False,
        share: Share | None = None,
    ) -> Engine: ...
    @property
    def closed(self) -> bool: ...
    def submit(
        self,
        tag: int,
        url: str,
        headers: tuple[str, ...],
        client_request_id: str | None = None,
        method: Literal["GET", "POST", "PUT", "DELETE"] | None = None,
        body: bytes | None = None,
        file: tuple[int, int, int] | None = None,
    ) -> None:
        """Queue a send; any thread. With client_request_id, the id goes out as its own header
        line and perform() returns a 202 as a Receipt carrying it (no Result to convert;
        its message_id and user are None: the Scheduler knows the item). With method, body
        (bytes, copied) or file ((fd, offset, length), open until the result is back): any
        request, as Handle.request makes it (whole 2xx body back)."""
    def cancel(self, tag: int) -> None:
        """Abort the sends with this tag (curl_code 42); any thread; unknown tags are ignored."""
    def wakeup(self) -> None:
        """Make the running perform() return, or the next one if none runs; any thread."""
    def perform(
        self, timeout: float, check_signals: bool = False
    ) -> list[tuple[int, Receipt | Result]]:
        """Run sends until one finishes, timeout passes or another thread hands over work.

        On an exception from a signal handler every queued and running send is aborted and
        its Result (curl_code 42) is returned by the next perform() call.
        """
    def close(self) -> None:
        """Abort everything and free libcurl's handles; unreturned results are dropped."""

SocketChange: TypeAlias = tuple[int, int]
"""(fd, what): what libcurl wants watched on fd; 1 readable, 2 writable, 3 both, 4 nothing."""

class LoopEngine:
    """A multi handle an event loop drives (AsyncClient): submit, then drive() when a socket
    is ready or the timer is due. One thread; drive() never waits."""

    def __new__(
        cls,
        *,
        connect_timeout_ms: int = 10000,
        timeout_ms: int = 60000,
        allow_http: bool = False,
        ca_bundle: str | None = None,
        proxy: str | None = None,
        proxy_ca_bundle: str | None = None,
        user_agent: str = "graphsend",
        http2: bool = False,
        share: Share | None = None,
    ) -> LoopEngine: ...
    @property
    def closed(self) -> bool: ...
    def submit(
        self,
        tag: int,
        url: str,
        headers: tuple[str, ...],
        client_request_id: str | None = None,
        method: Literal["GET", "POST", "PUT", "DELETE"] | None = None,
        body: bytes | None = None,
        file: tuple[int, int, int] | None = None,
    ) -> None:
        """Queue a send, or any request as Engine.submit; the next drive() starts it."""
    def cancel(self, tag: int) -> None:
        """Abort the sends with this tag (curl_code 42) at the next drive()."""
    def drive(
        self, fd: int, flags: int = 0
    ) -> tuple[list[tuple[int, Receipt | Result]], list[SocketChange] | None, float | None]:
        """Start what was submitted, apply cancels, then let libcurl run socket fd (flags:
        1 readable, 2 writable, 4 error) or, with fd < 0, its timer; never waits.

        Returns (finished, the socket changes libcurl asked for since the last call or None,
        the timer in seconds (-1.0: none) or None when unchanged).
        """
    def close(self) -> None:
        """Abort everything and free libcurl's handles; unreturned results are dropped.
        Every socket reported is closed: unregister them all from the loop."""

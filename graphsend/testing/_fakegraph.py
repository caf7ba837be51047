"""FakeGraph: the public face. It holds the settings and the shared state, and delegates the
serving to the other modules of this package."""

from __future__ import annotations

import email.utils
import functools
import ssl
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Final, Literal, get_args
from urllib.parse import quote

from ._connection import serve_connection
from ._faults import RANDOM_FAULT_KINDS, Fault, FaultQueue
from ._ids import attachment_id
from ._mailboxes import Mailboxes
from ._records import Attachment, DraftKind, IdStyle, Message, Recipient, RecordedRequest
from ._replies import retry_after_text
from ._server import ServerThread
from ._tls import TlsFiles, require_cryptography, require_h2
from ._traffic import Traffic
from ._uploads import UploadFault, Uploads

_KINDS: Final = frozenset(get_args(DraftKind))


class FakeGraph:
    """A loopback HTTP/1.1 (and, over TLS, HTTP/2) server that behaves like Graph's
    ``POST .../messages/{id}/send``.

    The server runs an asyncio event loop in one background thread, so hundreds of concurrent
    keep-alive connections and per-request latency cost no thread each. Every public method is
    thread-safe and may be called while the server runs.

    Arguments (all keyword-only):

    * ``https``: serve TLS with a certificate made at start (needs ``cryptography``); the CA's
      PEM is at :attr:`ca_bundle`.
    * ``http2``: with ``https``, offer HTTP/2 by ALPN (``h2``, needs the ``h2`` package), like
      Graph; clients that do not offer ``h2`` get HTTP/1.1. Every rule, fault, latency and
      record below is the same in both protocols; :attr:`RecordedRequest.http_version` says
      which one a request used. Over HTTP/2, concurrent streams of one connection are answered
      concurrently, each after its own latency; "close the connection after this answer" is a
      GOAWAY; :meth:`reset_next` resets the connection as in HTTP/1.1 (or, with
      ``stream_only=True``, only the request's stream).
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

    A ``POST .../sendMail`` is a send too: rules 1 to 5 (faults, latency and the concurrency limit
    included) apply to it as to a draft's send, then sendMail's own checks (below) decide.

    Latency applies to every answer of a send request except 411 and throttling 429s.
    Other paths get 404 and other methods on a send path 405, in Graph's error shape.

    Compose operations (drafts, createReply/createReplyAll/createForward, attachments, upload
    sessions, sendMail in JSON and MIME, GET/PATCH/DELETE of a message; see the package
    docstring) need the token too, and Graph's rules give Graph's errors:

    * a request body over 4 MB (4,194,304 bytes), to any API path → 413
      ``RequestEntityTooLarge`` (bodies are read up to 16 MB, so the client gets the answer);
    * a fileAttachment in JSON over 3 MB of bytes → 413 ``RequestEntityTooLarge``;
    * an unknown message property or action parameter → 400 ``RequestBodyRead`` (action
      parameters match without regard to case, as in Graph); a header name not starting with
      ``x-`` → 400 ``InvalidInternetMessageHeader``;
    * when a message is sent (send or sendMail): an address without ``@`` → 400
      ``ErrorInvalidRecipients``, more than 500 recipients → 400 ``ErrorTooManyRecipients``
      (the draft stays);
    * createUploadSession for more than 150 MB → 400 ``ErrorAttachmentSizeLimitExceeded``;
    * upload URLs: the rules of ``_upload_rules`` (an ``Authorization`` header → 400
      ``InvalidAuthenticationTokenForUpload``, a chunk over 4 MB → 413, a range that is not
      the next expected one → 416 ``InvalidRange`` with ``nextExpectedRanges``, an expired or
      finished session → 404 ``ErrorItemNotFound``). Chunk answers are written as Outlook's
      upload service writes them: ``nextExpectedRanges: ["{start}"]``.

    Ids: a message created by a request carrying ``Prefer: IdType="ImmutableId"`` keeps its
    id in Sent Items; otherwise the sent copy gets a new id (:attr:`Message.sent_id`), as in
    Graph. Upload faults: :meth:`fail_upload_chunk`, :meth:`reset_upload_chunk`,
    :meth:`expire_upload_sessions`, :attr:`upload_session_lifetime`. Originals to reply to:
    :meth:`add_received`.

    After the 202 (for clients that settle ambiguous sends by reading the mailbox):
    :attr:`sent_items_delay` keeps a sent draft in Drafts (``isDraft: true``, and sendable
    again: a duplicate) for that long before it moves to Sent Items; :meth:`send_count` says
    how many times each draft actually went out; Sent Items can be searched with the
    documented ``$filter=singleValueExtendedProperties/Any(ep: ep/id eq '...' and ep/value eq
    '...')`` (any other ``$filter``: 400); :attr:`deny_reads` answers reads with 403
    ``ErrorAccessDenied``; ``fail_next``/``reset_next``/``stall_next(deliver=True)`` send the
    draft and then lose the answer; :meth:`random_faults` draws faults of both kinds. A
    sendMail is alike: its copy reaches Sent Items (and :meth:`delivered`) after
    :attr:`sent_items_delay`, with the message's extended properties, and the faults that
    deliver first send it.
    """

    #: Seconds to wait before answering each send request (applies from the next request on).
    latency: float
    #: Concurrent sends allowed per mailbox before 429 ApplicationThrottled (None for no limit).
    mailbox_concurrency_limit: int | None
    #: Value of the Retry-After header on throttling 429s (seconds, or any string).
    throttle_retry_after: float | str
    #: For this many seconds after a send, the same id still sends again (a duplicate in Sent
    #: Items), like Graph's lag in invalidating ids. 0 (the default) means 404 at once.
    resend_window: float
    #: Close idle keep-alive connections after this many seconds (None for never).
    idle_timeout: float | None
    #: Answer with ``Connection: close`` on the Nth request of a connection (None: never).
    max_requests_per_connection: int | None
    #: Record requests in :attr:`requests` (switch off for long benchmarks).
    record_requests: bool
    #: Seconds between a send's 202 and the move of its draft to Sent Items, as Graph's send
    #: pipeline runs after the answer: meanwhile the draft still reads ``isDraft: true`` in
    #: Drafts (and another send of it goes out again). 0 (the default): at once.
    sent_items_delay: float
    #: Answer every read (GET of a message, a folder, attachments) with 403
    #: ``ErrorAccessDenied``, as for an app without Mail.ReadBasic / Mail.Read.
    deny_reads: bool

    def __init__(
        self,
        *,
        https: bool = False,
        http2: bool = False,
        token: str = "fake-token",
        default_user: str = "adele@contoso.com",
        latency: float = 0.0,
        mailbox_concurrency_limit: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        throttle_retry_after: float | str = 1,
        seed: int | None = None,
    ) -> None:
        """Configure the server; :meth:`start` (or ``with``) makes it listen.

        Args:
            https: Serve TLS with a certificate made at start (needs ``cryptography``); the
                CA's PEM is at :attr:`ca_bundle`.
            http2: With ``https``, offer HTTP/2 by ALPN (needs the ``h2`` package).
            token: The bearer token requests must carry.
            default_user: The mailbox ``me`` stands for.
            latency: Seconds to wait before answering each send request.
            mailbox_concurrency_limit: Sends in flight per mailbox before 429
                ``ApplicationThrottled`` (Outlook allows 4); None: no limit.
            host: The address to listen on.
            port: The port (0 picks a free one; a restarted server keeps its port).
            throttle_retry_after: The Retry-After of throttling 429s (seconds, or any string).
            seed: Seeds the id generator, for reproducible ids.

        Raises:
            ValueError: ``http2=True`` without ``https=True``.
            ImportError: ``https`` without ``cryptography``, or ``http2`` without ``h2``
                (``pip install 'graphsend[testing]'``).
        """
        if https:
            require_cryptography()
        if http2:
            if not https:
                # Clients (libcurl among them) negotiate HTTP/2 with ALPN, which needs TLS.
                raise ValueError("FakeGraph(http2=True) needs https=True")
            require_h2()
        self._https = https
        self._http2 = http2
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
        self.sent_items_delay = 0.0
        self.deny_reads = False

        # Shared with the server thread; each guards itself. The serving modules of this
        # package (_rules, _connection) use them directly.
        self._mailboxes = Mailboxes(seed)
        self._faults = FaultQueue()
        self._uploads = Uploads()
        self._traffic = Traffic()
        self._latency_lock = threading.Lock()
        self._latency_by_user: dict[str, float] = {}
        self.add_mailbox(default_user)

        self._server = ServerThread()
        self._tls = TlsFiles()
        self._started_once = False

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> FakeGraph:
        """Start serving in a background thread; returns self. A stopped server may restart.

        Returns:
            The server itself.

        Raises:
            RuntimeError: It is already running.
            OSError: The address cannot be listened on.
        """
        if self._server.running:
            raise RuntimeError("FakeGraph is already running")
        ssl_context = (
            self._tls.server_context(self._host, http2=self._http2) if self._https else None
        )
        try:
            handler = functools.partial(serve_connection, self)
            self._port = self._server.start(self._host, self._port, ssl_context, handler)
        except BaseException:
            self._tls.remove()
            raise
        self._started_once = True
        return self

    def stop(self) -> None:
        """Stop serving: close every connection (stalled ones too) and join the thread."""
        if not self._server.running:
            return
        self._server.stop()
        self._tls.remove()

    def __enter__(self) -> FakeGraph:
        """Start the server (see :meth:`start`); leaving the ``with`` block stops it."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server (see :meth:`stop`)."""
        self.stop()

    def __repr__(self) -> str:
        state = f"serving {self.base_url}" if self.running else "stopped"
        return f"<FakeGraph {state}>"

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._server.running

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
    def http2(self) -> bool:
        """Whether HTTP/2 is offered (by ALPN, over TLS)."""
        return self._http2

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
        tests; graphsend builds its own URLs).

        Args:
            message_id: The draft's id.
            user: The mailbox; None is ``me``.
            version: ``"v1.0"`` or ``"beta"``.

        Returns:
            The URL.

        Raises:
            RuntimeError: The server was never started.
        """
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
        return self._tls.ca_bundle

    def client_ssl_context(self) -> ssl.SSLContext:
        """An ``ssl.SSLContext`` for clients that trusts this server's CA (HTTPS mode only).

        Returns:
            A context that verifies this server's certificate.

        Raises:
            RuntimeError: Not a running HTTPS server.
        """
        if self.ca_bundle is None:
            raise RuntimeError("client_ssl_context() needs a running FakeGraph(https=True)")
        return ssl.create_default_context(cafile=self.ca_bundle)

    # ---------------------------------------------------------------- mailboxes

    def add_mailbox(self, user: str) -> None:
        """Make an empty mailbox (sends to a mailbox that does not exist get 404
        ``ErrorInvalidUser``; create_draft makes mailboxes as needed).

        Args:
            user: The mailbox (a UPN or id; compared case-insensitively).
        """
        self._mailboxes.add(self._key(user))

    def create_draft(
        self,
        user: str | None = None,
        subject: str = "FakeGraph test message",
        kind: DraftKind = "new",
        *,
        id_style: IdStyle | None = None,
        immutable_id: bool = False,
    ) -> str:
        """Create a draft in ``user``'s mailbox (default: :attr:`default_user`) and return its id.

        ``immutable_id=True`` makes it as a request with ``Prefer: IdType="ImmutableId"`` would:
        it keeps its id in Sent Items (otherwise the sent copy gets a new id, as in Graph).

        Ids look like Graph's: 152 base64 characters starting with ``AAMkA`` and ending with
        ``=``. REST-style ids contain both ``-`` and ``_``; EWS-style ids (from older Exchange
        APIs) contain both ``/`` and ``+``, which must be percent-encoded in a URL. With
        ``id_style=None`` every third draft made by this server is EWS-style; pass
        ``id_style="rest"`` or ``"ews"`` to choose.

        Args:
            user: The mailbox; None is :attr:`default_user`.
            subject: The draft's subject.
            kind: ``"new"``, ``"reply"``, ``"replyAll"`` or ``"forward"`` (a label in records).
            id_style: ``"rest"``, ``"ews"`` or None (see above).
            immutable_id: Keep the id in Sent Items.

        Returns:
            The draft's id.

        Raises:
            ValueError: An unknown ``kind`` or ``id_style``.
        """
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {sorted(_KINDS)}, not {kind!r}")
        if id_style not in (None, "rest", "ews"):
            raise ValueError(f"id_style must be 'rest', 'ews' or None, not {id_style!r}")
        key = self._key(user)
        return self._mailboxes.new_draft(key, subject, kind, id_style, immutable_id=immutable_id).id

    def create_drafts(
        self,
        count: int,
        user: str | None = None,
        subject: str = "FakeGraph test message",
        kind: DraftKind = "new",
        *,
        id_style: IdStyle | None = None,
    ) -> list[str]:
        """Create ``count`` drafts (see :meth:`create_draft`) and return their ids in order.

        Args:
            count: How many.
            user: The mailbox; None is :attr:`default_user`.
            subject: Their subject.
            kind: ``"new"``, ``"reply"``, ``"replyAll"`` or ``"forward"``.
            id_style: ``"rest"``, ``"ews"`` or None.

        Returns:
            The ids, in order.
        """
        return [self.create_draft(user, subject, kind, id_style=id_style) for _ in range(count)]

    def drafts(self, user: str | None = None) -> list[Message]:
        """Drafts not sent yet, oldest first: of ``user`` (``"me"`` = default user), or of every
        mailbox when ``user`` is None.

        Args:
            user: The mailbox, or None for every mailbox.

        Returns:
            The drafts, as :class:`Message` records.
        """
        return self._mailboxes.drafts(self._key_or_all(user))

    def sent_items(self, user: str | None = None) -> list[Message]:
        """Messages sent, in the order the sends were accepted: of ``user`` (``"me"`` = default
        user), or of every mailbox when ``user`` is None.

        Args:
            user: The mailbox, or None for every mailbox.

        Returns:
            The sent messages, as :class:`Message` records (every field, every attachment's
            bytes).
        """
        return self._mailboxes.sent_items(self._key_or_all(user))

    def delivered(self, user: str | None = None) -> list[Message]:
        """Every message that went out, in the order the sends were accepted: sent drafts and
        sendMail (JSON or MIME), including sendMail with ``saveToSentItems: false``, which
        :meth:`sent_items` does not list. Of ``user`` (the sender), or of every mailbox.

        Args:
            user: The sender's mailbox, or None for every mailbox.

        Returns:
            The messages, as :class:`Message` records.
        """
        return self._mailboxes.delivered(self._key_or_all(user))

    def send_count(self, draft_id: str) -> int:
        """How many times the draft ``draft_id`` was actually sent.

        Args:
            draft_id: The id the draft was created with.

        Returns:
            0, 1, or more for duplicates (a resend inside :attr:`sent_items_delay` or
            :attr:`resend_window`).
        """
        return self._mailboxes.send_count(draft_id)

    def send_counts(self) -> dict[str, int]:
        """:meth:`send_count` of every message sent so far (sendMail ones too), by id."""
        return self._mailboxes.send_counts()

    def processing(self, draft_id: str) -> bool:
        """Whether a send of ``draft_id`` was accepted and has not reached Sent Items yet.

        Args:
            draft_id: The id the draft was created with.

        Returns:
            True while the send is in Graph's pipeline (:attr:`sent_items_delay`).
        """
        return self._mailboxes.processing(draft_id)

    def inbox(self, user: str | None = None) -> list[Message]:
        """Messages put in an Inbox by :meth:`add_received`.

        Args:
            user: The mailbox, or None for every mailbox.

        Returns:
            The received messages, as :class:`Message` records.
        """
        return self._mailboxes.inbox(self._key_or_all(user))

    def message(self, message_id: str, user: str | None = None) -> Message:
        """A message by the id a client has for it now: a draft's or an Inbox message's id, or
        a sent message's :attr:`Message.sent_id`. KeyError when there is none.

        Args:
            message_id: The id.
            user: The mailbox; None is :attr:`default_user`.

        Returns:
            The message record.

        Raises:
            KeyError: No message has that id in that mailbox.
        """
        found = self._mailboxes.find(self._key(user), message_id)
        if found is None:
            raise KeyError(message_id)
        return found[1]

    def add_received(
        self,
        user: str | None = None,
        *,
        subject: str = "FakeGraph received message",
        body: str = "",
        body_type: Literal["text", "html"] = "text",
        sender: str = "Megan Bowen <megan@fabrikam.com>",
        to: Sequence[str] = (),
        cc: Sequence[str] = (),
        reply_to: Sequence[str] = (),
        attachments: Sequence[tuple[str, str, bytes]] = (),
    ) -> str:
        """Put a message in ``user``'s Inbox as if ``sender`` had sent it, and return its id:
        the original for createReply, createReplyAll and createForward. Addresses are
        ``"a@b.com"`` or ``"Name <a@b.com>"``; ``to`` defaults to the mailbox itself;
        attachments are ``(name, content_type, bytes)``.

        Args:
            user: The mailbox; None is :attr:`default_user`.
            subject: The subject.
            body: The body.
            body_type: ``"text"`` or ``"html"``.
            sender: Who sent it.
            to: Its recipients (default: the mailbox).
            cc: Its Cc recipients.
            reply_to: Its Reply-To addresses.
            attachments: ``(name, content_type, bytes)`` each.

        Returns:
            The message's id.
        """
        key = self._key(user)
        fields = {
            "subject": subject,
            "body": body,
            "body_type": body_type,
            "sender": _recipient(sender),
            "to": tuple(_recipient(r) for r in to) or (Recipient(key),),
            "cc": tuple(_recipient(r) for r in cc),
            "reply_to": tuple(_recipient(r) for r in reply_to),
            "attachments": tuple(
                Attachment(attachment_id(), name, content_type, data)
                for name, content_type, data in attachments
            ),
        }
        return self._mailboxes.new_received(key, fields).id

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
        deliver: bool = False,
    ) -> None:
        """Answer the next ``count`` send requests (a draft's send or sendMail; only ``user``'s,
        if given) with ``status``.

        ``deliver=True``: the send goes through first (the draft is sent) and only then is the
        answer replaced by this one: a 504 for a mail that did go out.

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

        Args:
            status: An HTTP status from 200 to 599.
            code: Graph's error code in the body (default: the status's usual one).
            message: Graph's error message in the body.
            retry_after: Seconds, or any string, for a Retry-After header.
            body: A body that replaces Graph's error JSON.
            headers: Response headers to add, override, or (None) remove.
            count: How many requests get this answer.
            user: Only requests for this mailbox; None: any.
            deliver: Send the draft first, then answer with this status (the mail is out).

        Raises:
            ValueError: A status outside 200-599.
        """
        if not 200 <= status <= 599:
            raise ValueError("status must be an HTTP status from 200 to 599")
        self._faults.add(
            Fault(
                "status",
                count,
                self._key_or_all(user),
                status=status,
                code=code,
                message=message,
                retry_after=retry_after_text(retry_after),
                body=body.encode("utf-8") if isinstance(body, str) else body,
                headers=tuple((headers or {}).items()),
                deliver=deliver,
            )
        )

    def reset_next(
        self,
        count: int = 1,
        *,
        user: str | None = None,
        stream_only: bool = False,
        deliver: bool = False,
    ) -> None:
        """Read the next ``count`` send requests, then reset the connection without answering
        (SO_LINGER 0: the client sees ECONNRESET, not a clean close). The draft is not sent,
        unless ``deliver=True``: then it is sent and the connection reset instead of the 202.

        Over HTTP/2 this resets the whole connection too, failing every request in flight on
        it. ``stream_only=True`` resets only the request's stream there (RST_STREAM with
        INTERNAL_ERROR), leaving the connection and its other streams alone; over HTTP/1.1 it
        changes nothing.

        Args:
            count: How many requests are reset.
            user: Only requests for this mailbox; None: any.
            stream_only: Over HTTP/2, reset only the request's stream.
            deliver: Send the draft first, then reset (the answer is lost).
        """
        fault = Fault("reset", count, self._key_or_all(user), stream_only=stream_only)
        fault.deliver = deliver
        self._faults.add(fault)

    def stall_next(self, count: int = 1, *, user: str | None = None, deliver: bool = False) -> None:
        """Read the next ``count`` send requests and never answer them (until the client
        disconnects or the server stops): for client timeouts. The draft is not sent, unless
        ``deliver=True``: then it is sent and the 202 never written.

        Args:
            count: How many requests stall.
            user: Only requests for this mailbox; None: any.
            deliver: Send the draft first, then stall (the answer is lost).
        """
        self._faults.add(Fault("stall", count, self._key_or_all(user), deliver=deliver))

    def random_faults(
        self,
        rate: float,
        *,
        kinds: Sequence[str] = RANDOM_FAULT_KINDS,
        seed: int | None = None,
    ) -> None:
        """From now on, each send request that no queued fault applies to hits a fault.

        The kinds ``lost-reset``, ``lost-stall``, ``lost-503``, ``lost-504`` lose the request
        before the send (nothing delivered); ``delivered-reset``, ``delivered-stall``,
        ``delivered-504`` send it and then lose the answer. :meth:`random_faults_applied`
        counts what was drawn.

        Args:
            rate: The probability per send request, from 0 to 1 (0 stops).
            kinds: The kinds drawn from (uniformly).
            seed: A seed for a repeatable draw.

        Raises:
            ValueError: An unknown kind, no kinds, or a rate outside 0..1.
        """
        unknown = [k for k in kinds if k not in RANDOM_FAULT_KINDS]
        if unknown or not kinds:
            raise ValueError(f"kinds must be among {RANDOM_FAULT_KINDS}, got {unknown or kinds}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be from 0 to 1")
        self._faults.set_random(float(rate), tuple(kinds), seed)

    def random_faults_applied(self) -> dict[str, int]:
        """How many random faults of each kind were applied so far.

        Returns:
            A dict from kind to count.
        """
        return dict(self._faults.applied)

    def clear_faults(self) -> None:
        """Drop every fault not yet used (upload faults too)."""
        self._faults.clear()
        self._uploads.clear_faults()

    @property
    def pending_faults(self) -> int:
        """How many injected faults (counting each ``count``) are still waiting; upload faults
        count one each."""
        return self._faults.pending() + self._uploads.pending_faults()

    # ---------------------------------------------------------------- upload faults

    def fail_upload_chunk(
        self,
        n: int = 1,
        status: int = 503,
        code: str | None = None,
        message: str | None = None,
        *,
        retry_after: float | str | None = None,
    ) -> None:
        """Answer the ``n``-th chunk PUT to an upload URL from now (1: the next) with
        ``status`` and Graph's error body; the chunk is not stored, the session stays as it
        was (so the client resends from ``nextExpectedRanges``). Chunks PUT with an
        Authorization header do not count: they are refused before.

        Args:
            n: Which chunk from now (1: the next).
            status: An HTTP error status from 400 to 599.
            code: Graph's error code in the body.
            message: Graph's error message in the body.
            retry_after: Seconds, or any string, for a Retry-After header.

        Raises:
            ValueError: A status outside 400-599.
        """
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status from 400 to 599")
        self._uploads.add_fault(
            n, UploadFault(0, "status", status, code, message, retry_after_text(retry_after))
        )

    def reset_upload_chunk(self, n: int = 1) -> None:
        """Read the ``n``-th chunk PUT to an upload URL from now, then reset the connection
        without an answer; the chunk is not stored.

        Args:
            n: Which chunk from now (1: the next).
        """
        self._uploads.add_fault(n, UploadFault(0, "reset"))

    def expire_upload_sessions(self) -> int:
        """Expire every open upload session now (requests to their URLs get 404
        ``ErrorItemNotFound``; the client must start over); return how many there were.

        Returns:
            The number of sessions expired.
        """
        return self._uploads.expire_all()

    @property
    def upload_session_lifetime(self) -> float:
        """Seconds an upload session made from now on lives (default 900, like Graph's)."""
        return self._uploads.lifetime

    @upload_session_lifetime.setter
    def upload_session_lifetime(self, seconds: float) -> None:
        self._uploads.lifetime = float(seconds)

    @property
    def open_upload_sessions(self) -> int:
        """Upload sessions neither completed, cancelled nor expired."""
        return len(self._uploads.open_sessions())

    @property
    def cancelled_upload_sessions(self) -> int:
        """Upload sessions cancelled by a DELETE on their upload URL (what a client does with
        the session of an upload it gives up on)."""
        return self._uploads.cancelled

    def set_latency(self, user: str, seconds: float | None) -> None:
        """Wait ``seconds`` before answering sends for ``user``'s mailbox (overrides
        :attr:`latency`); None goes back to the global latency.

        Args:
            user: The mailbox.
            seconds: The latency, or None for the global one.
        """
        key = self._key(user)
        with self._latency_lock:
            if seconds is None:
                self._latency_by_user.pop(key, None)
            else:
                self._latency_by_user[key] = float(seconds)

    # ---------------------------------------------------------------- observation

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (a snapshot list), failed ones included."""
        return self._traffic.requests()

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests have been recorded; return them.

        Raises TimeoutError after ``timeout`` seconds. Handy to know that a stalled or slow
        request has reached the server.

        Args:
            count: Requests to wait for.
            timeout: Seconds to wait at most.

        Returns:
            The recorded requests (at least ``count``).

        Raises:
            TimeoutError: Fewer than ``count`` after ``timeout`` seconds.
        """
        return self._traffic.wait_for_requests(count, timeout)

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (since start or reset_stats); over HTTP/2 one
        connection carries many concurrent requests."""
        return self._traffic.connections

    @property
    def open_connections(self) -> int:
        """TCP connections open right now."""
        return self._traffic.open_connections

    def in_flight(self, user: str | None = None) -> int:
        """Requests being handled right now, for ``user``'s mailbox or for the whole server.

        Args:
            user: The mailbox, or None for the whole server.

        Returns:
            The number of requests.
        """
        return self._traffic.in_flight(self._key_or_all(user))

    def peak_in_flight(self, user: str | None = None) -> int:
        """The most requests seen in flight at once (from fully read to answered), for ``user``'s
        mailbox or, with None, across the whole server. Requests answered 429 by the
        concurrency limit count too, so this shows what the client attempted.

        Args:
            user: The mailbox, or None for the whole server.

        Returns:
            The peak.
        """
        return self._traffic.peak_in_flight(self._key_or_all(user))

    def send_times(self, user: str | None = None) -> dict[str, list[float]]:
        """When each accepted send (202) arrived, per mailbox. Kept even when
        ``record_requests`` is off; cleared by :meth:`reset_stats`.

        Args:
            user: The mailbox, or None for every mailbox.

        Returns:
            The arrival times (``time.monotonic()``, sorted) by mailbox.
        """
        return self._traffic.send_times(self._key_or_all(user))

    def max_sends_in_window(self, seconds: float, user: str | None = None) -> int:
        """The most accepted sends of one mailbox that arrived within any ``seconds`` long
        window: Exchange's messages-per-minute check (see :meth:`send_times`).

        Args:
            seconds: The window's length.
            user: The mailbox, or None for the busiest one.

        Returns:
            The largest number of sends found in one window (0 when none was sent).
        """
        most = 0
        for times in self.send_times(user).values():
            start = 0
            for end, at in enumerate(times):
                while at - times[start] >= seconds:
                    start += 1
                most = max(most, end - start + 1)
        return most

    def throttled(self, user: str | None = None) -> int:
        """Sends answered 429 by ``mailbox_concurrency_limit`` ("Application is over its
        MailboxConcurrency limit"); cleared by :meth:`reset_stats`.

        Args:
            user: The mailbox, or None for every mailbox.

        Returns:
            How many sends were so answered.
        """
        return self._traffic.throttle_count(self._key_or_all(user))

    def reset_stats(self) -> None:
        """Zero :attr:`connections`, the in-flight peaks (peaks restart from what is in flight
        now), :meth:`send_times` and :meth:`throttled`. Recorded requests are kept: see
        clear_requests()."""
        self._traffic.reset_stats()

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        self._traffic.clear_requests()

    # ---------------------------------------------------------------- internals

    def _key(self, user: str | None) -> str:
        """The mailbox key ``user`` names: lower-cased; None and ``me`` are the default user."""
        if user is None or user.casefold() == "me":
            return self._default_user
        return user.casefold()

    def _key_or_all(self, user: str | None) -> str | None:
        """Like _key, but None stays None: "every mailbox" (or "any", for a fault)."""
        return None if user is None else self._key(user)

    def _latency_for(self, user: str) -> float:
        with self._latency_lock:
            if user in self._latency_by_user:
                return self._latency_by_user[user]
        return float(self.latency)

    def _require_started(self) -> None:
        if not self._started_once:
            raise RuntimeError("FakeGraph is not started: call start() or use `with FakeGraph()`")


def _recipient(text: str) -> Recipient:
    name, address = email.utils.parseaddr(text)
    return Recipient(address or text, name)

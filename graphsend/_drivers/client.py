"""Client: one configuration, one libcurl easy handle per thread, retries that never double-send."""

from __future__ import annotations

import os
import threading
import time
import weakref

from graphsend import _native
from graphsend._drivers import fork as _fork
from graphsend._rules import ca as _ca
from graphsend._rules import log as _log
from graphsend._rules.errors import SendError, TransportError
from graphsend._rules.outcome import outcome
from graphsend._rules.receipt import Receipt
from graphsend._rules.request import (
    CLOUDS,
    USER_AGENT,
    check_api_version,
    check_base_url,
    check_proxy,
    check_text,
    check_timeout,
    is_loopback,
    send_path,
)
from graphsend._rules.retry import Retry, RetryState
from graphsend._rules.tokens import TokenSource, token_source

TYPE_CHECKING = False  # typing costs milliseconds to import; annotations are strings here
if TYPE_CHECKING:
    import email.message
    from collections.abc import Iterable
    from typing import Any, TypeVar

    from graphsend._drivers.progress import ProgressArg
    from graphsend._native import Result
    from graphsend._operations.message import Attachment, Message
    from graphsend._rules.request import Item
    from graphsend._rules.tokens import TokenArg

    _Native = TypeVar("_Native", "_native.Handle", "_native.Engine")

DEFAULT_RETRY = Retry()


class Client:
    """Sends Graph drafts with one configuration; safe to share between any number of threads.

    ``token`` is a str, a callable returning a token (or an MSAL result dict), or an
    azure-identity style credential (``get_token(scope)``), called with the cloud's
    ``https://<graph host>/.default`` scope and cached until 5 minutes before expiry.
    """

    def __init__(
        self,
        token: TokenArg | TokenSource,
        *,
        cloud: str = "global",
        base_url: str | None = None,
        api_version: str = "v1.0",
        timeout: float = 100.0,
        connect_timeout: float = 30.0,
        retry: Retry = DEFAULT_RETRY,
        proxy: str | bool | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        user_agent: str | None = None,
        http2: bool = True,
        immutable_ids: bool = True,
    ) -> None:
        if cloud not in CLOUDS:
            raise ValueError(f"cloud must be one of {', '.join(CLOUDS)}; got {cloud!r}")
        if not isinstance(retry, Retry):
            raise TypeError("retry must be a graphsend.Retry")
        self.base_url, allow_http = check_base_url(CLOUDS[cloud] if base_url is None else base_url)
        self.api_version = check_api_version(api_version)
        self.cloud = cloud
        self.retry = retry
        # The scope names the cloud's Graph host even when base_url points elsewhere.
        scope = CLOUDS[cloud] + "/.default"
        self._tokens = token if isinstance(token, TokenSource) else token_source(token, scope)
        self._prefix = f"{self.base_url}/{self.api_version}"
        # A loopback base never goes through a proxy: with plain http, the request (the bearer
        # token included) would reach the proxy in clear text, and the proxy could not reach
        # this machine's loopback anyway.
        loopback = is_loopback(_host(self.base_url))
        proxy_option = _proxy(proxy)  # checked even when unused
        # ca_bundle=, else SSL_CERT_FILE/CURL_CA_BUNDLE, else (wheel only) a system bundle.
        ca_path, self._ca_missing = _ca.resolve(ca_bundle, https=not allow_http, check=_ca_bundle)
        self._options: dict[str, Any] = {
            "connect_timeout_ms": check_timeout(connect_timeout, "connect_timeout"),
            "timeout_ms": check_timeout(timeout, "timeout"),
            "allow_http": allow_http,
            "ca_bundle": ca_path,
            "proxy": "" if loopback else proxy_option,
            "user_agent": USER_AGENT
            if user_agent is None
            else check_text(user_agent, "user_agent"),
            "http2": _flag(http2, "http2"),
        }
        # Every request that returns ids asks for immutable ones, so a draft keeps its id in Sent
        # Items. Not the send itself: it returns no id, and the header costs 4 % of its work.
        self.immutable_ids = _flag(immutable_ids, "immutable_ids")
        self._closed = False
        self._lock = threading.Lock()
        self._reset_handles()

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return (
            f"<graphsend.Client base_url={self.base_url!r} api_version={self.api_version!r}{state}>"
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's connections. Sends after close raise ValueError in every thread
        (a send already under way finishes; its retries are not made)."""
        with self._lock:
            self._closed = True
            owned = [obj for objs in self._natives.values() for obj in objs]
            self._natives.clear()
        for obj in owned:
            try:
                obj.close()
            except RuntimeError:
                pass  # mid-send in another thread: it is freed when that thread lets go of it

    def send(
        self, message_id: str, *, user: str | None = None, client_request_id: str | None = None
    ) -> Receipt:
        """Send the draft ``message_id`` from ``user``'s mailbox (``/me`` when None).

        Returns a Receipt on 202; raises a SendError subclass otherwise (see README).
        """
        return self._send(message_id, user, client_request_id, self._tokens)

    def _send(
        self,
        message_id: str,
        user: str | None,
        client_request_id: str | None,
        tokens: TokenSource,
    ) -> Receipt:
        # One native call checks the arguments, builds the request and, on 202, the Receipt:
        # Python work between transfers is what separates this from the C loop (bench/).
        got = self._handle().send_draft(
            self._prefix, user, message_id, tokens.header(), client_request_id
        )
        if got.__class__ is Receipt:  # the hot path: no retry bookkeeping
            if _log.debug_enabled():
                path = send_path(user, message_id)
                self._log_attempt(path, 202, got.request_id, got.client_request_id, got.elapsed, 1)
            return got  # type: ignore[return-value]
        path, crid, result = got  # type: ignore[misc]
        return self._settle(path, crid, result, tokens)

    def _settle(self, path: str, crid: str, result: Result, tokens: TokenSource) -> Receipt:
        """After a first attempt other than 202: retry what the policy allows, raise the rest."""
        url = self._prefix + path
        crid_header = "client-request-id: " + crid
        state = RetryState(self.retry)
        while True:
            status = result[0] or f"curl error {result[4]}"
            self._log_attempt(
                path, status, result[1].get("request-id"), crid, result[3], state.attempt
            )
            got = outcome(result, crid)
            if isinstance(got, Receipt):
                return got
            wait = state.next_wait(got, tokens)
            if wait is None:
                raise got
            self._log_retry(path, got, wait, state.attempt)
            if wait:
                time.sleep(wait)
            if self._closed:
                got.args = (f"{got.args[0]}; not retried: the Client was closed",)
                raise got
            try:
                auth = tokens.header()
            except SendError as exc:
                # The provider failed: the error must still say what earlier attempts may have done.
                exc.may_have_sent = exc.may_have_sent or state.ambiguous
                exc.attempts = state.attempt - 1
                exc.client_request_id = crid
                raise
            headers = (auth, crid_header, f"Retry-Attempt: {state.attempt - 1}")
            result = self._handle().send(url, headers)

    # --- compose: each method declares an Operation (_operations.py); _driver.run executes it.

    def create_draft(self, message: Message, *, user: str | None = None) -> str:
        """Create a draft in ``user``'s Drafts folder and return its id.

        Attachments of any size are added the right way for their size: small ones inside the
        create request (as long as it stays under Graph's 4 MB), the rest one by one, through
        an upload session above 3 MB. Needs Mail.ReadWrite. Errors are SendErrors with
        ``may_have_sent=False`` (a draft is not a send).

        Every attachment file is checked (opened, a regular file, at most 150 MB) before the
        draft is made. If adding an attachment fails once the draft exists, the exception
        (a SendError, or e.g. an OSError for a file that went away meanwhile) carries
        ``exc.draft_id``: the draft is left in Drafts without that attachment and the ones
        after it; delete it or attach them again.
        """
        from graphsend._drivers import sync as _driver
        from graphsend._operations import catalog as _operations
        from graphsend._operations import upload as _upload
        from graphsend._operations.message import REQUEST_MAX, Message

        if not isinstance(message, Message):
            raise TypeError("message must be a graphsend.Message")
        _upload.check_files(message)  # cheap, and no draft is left behind for a missing file
        inline, later = message.split_attachments(REQUEST_MAX)
        draft_id = _driver.run(self, _operations.create_draft(message.json(inline)), user)
        for index, att in enumerate(later):
            try:
                self.attach(draft_id, att, user=user)
            except BaseException as exc:
                _upload.tag_unfinished_draft(exc, draft_id, len(later) - index - 1)
                raise
        return draft_id

    def create_reply(
        self,
        message_id: str,
        *,
        comment: str = "",
        reply_all: bool = False,
        user: str | None = None,
    ) -> str:
        """Create a reply (or reply-all) draft to ``message_id``; returns the new draft's id.
        Needs Mail.ReadWrite."""
        from graphsend._drivers import sync as _driver
        from graphsend._operations import catalog as _operations
        from graphsend._operations.message import _no_controls

        _no_controls(comment, "comment", multiline=True)
        check_text(message_id, "message_id")
        op = _operations.create_reply(message_id, comment, _flag(reply_all, "reply_all"))
        return _driver.run(self, op, user)

    def create_forward(
        self,
        message_id: str,
        *,
        to: Iterable[str | tuple[str, str]] | str,
        comment: str = "",
        user: str | None = None,
    ) -> str:
        """Create a forward draft of ``message_id`` to ``to``; returns the new draft's id.
        Needs Mail.ReadWrite."""
        from graphsend._drivers import sync as _driver
        from graphsend._operations import catalog as _operations
        from graphsend._operations.message import RECIPIENTS_MAX, _no_controls, recipients

        _no_controls(comment, "comment", multiline=True)
        check_text(message_id, "message_id")
        rcpt = recipients(to, "to")
        if not rcpt:
            raise ValueError("create_forward needs at least one recipient in to=")
        if len(rcpt) > RECIPIENTS_MAX:
            raise ValueError(f"{len(rcpt)} recipients; at most {RECIPIENTS_MAX} per message")
        return _driver.run(self, _operations.create_forward(message_id, rcpt, comment), user)

    def attach(
        self,
        message_id: str,
        source: str | os.PathLike[str] | bytes | Attachment,
        *,
        name: str | None = None,
        content_type: str | None = None,
        inline: bool = False,
        content_id: str | None = None,
        user: str | None = None,
        progress: ProgressArg = None,
    ) -> str:
        """Attach a file (a path or bytes, up to 150 MB) to the draft ``message_id``; returns
        the attachment id. Up to 3 MB: one request; larger: an upload session whose chunks are
        read from disk in C (streamed, never whole in memory) and never carry the token.
        ``progress`` (bytes done, total) as in send_many. Needs Mail.ReadWrite."""
        from graphsend._drivers import sync as _driver
        from graphsend._drivers.progress import reporter
        from graphsend._operations import catalog as _operations
        from graphsend._operations import upload as _upload
        from graphsend._operations.message import Attachment

        check_text(message_id, "message_id")
        if isinstance(source, Attachment):
            if name is not None or content_type is not None or inline or content_id is not None:
                raise ValueError("pass name/content_type/inline/content_id to the Attachment")
            att = source
        else:
            att = Attachment(
                source, name=name, content_type=content_type, inline=inline, content_id=content_id
            )
        if att.small:
            op = _operations.add_attachment(message_id, att.file_json())
            attachment_id = _driver.run(self, op, user)
            report = reporter(progress, att.size)
            if report is not None:
                report(att.size, att.size)
            return attachment_id
        return _upload.upload(self, message_id, att, user, reporter(progress, att.size))

    def send_mail(
        self, message: Message, *, user: str | None = None, save_to_sent_items: bool = True
    ) -> Receipt:
        """Send ``message`` in one request (POST /sendMail), without a draft: needs Mail.Send
        only. Graph caps the request at 4 MB, attachments included (base64): a larger message
        is a ValueError before any request; use create_draft() + send() for those."""
        from graphsend._drivers import sync as _driver
        from graphsend._operations import catalog as _operations
        from graphsend._operations.message import REQUEST_MAX, Message

        if not isinstance(message, Message):
            raise TypeError("message must be a graphsend.Message")
        _flag(save_to_sent_items, "save_to_sent_items")
        if any(not a.small for a in message.attachments):
            raise ValueError(
                "an attachment is over 3 MB: sendMail cannot carry it (Graph's 4 MB request "
                "cap); use client.send(client.create_draft(message)), which uploads it"
            )
        op = _operations.send_mail(message.json(message.attachments), save_to_sent_items)
        if op.body is not None and len(op.body) > REQUEST_MAX:
            raise ValueError(
                f"the sendMail request would be {len(op.body)} bytes, over Graph's 4 MB cap; "
                "use client.send(client.create_draft(message)), which uploads attachments"
            )
        return _driver.run(self, op, user)

    def send_mime(
        self,
        mime: bytes | email.message.Message,
        *,
        user: str | None = None,
        save_to_sent_items: bool = True,
    ) -> Receipt:
        """Send an RFC 5322 message (bytes or an ``email.message.EmailMessage``) as is, through
        POST /sendMail (Mail.Send). Graph always saves a MIME send to Sent Items, so
        ``save_to_sent_items=False`` is a ValueError. At most 4 MB once base64-encoded."""
        import base64

        from graphsend._drivers import sync as _driver
        from graphsend._operations import catalog as _operations
        from graphsend._operations.message import REQUEST_MAX, mime_bytes

        if not _flag(save_to_sent_items, "save_to_sent_items"):
            raise ValueError("Graph's MIME sendMail always saves to Sent Items")
        encoded = base64.b64encode(mime_bytes(mime))
        if len(encoded) > REQUEST_MAX:
            raise ValueError(
                f"the MIME message is {len(encoded)} bytes in base64, over Graph's 4 MB cap; "
                "use create_draft() + attach() + send() for large messages"
            )
        return _driver.run(self, _operations.send_mime(encoded), user)

    def send_many(
        self,
        items: Iterable[Item],
        *,
        max_concurrency: int = 64,
        max_per_mailbox: int = 4,
        progress: ProgressArg = None,
        stop_on_error: bool = False,
    ) -> list[Receipt | SendError]:
        """Send many drafts at once; results come back in input order.

        ``items`` are message ids (sent from ``/me``) or ``(user, message_id)`` pairs. Each
        result is a Receipt or the SendError that ``send()`` would have raised for that item.
        One native call per wait drives every transfer (libcurl multi, GIL released), with at
        most ``max_per_mailbox`` requests in flight per mailbox and ``max_concurrency`` in all.
        A throttled mailbox pauses for its Retry-After while the others go on.

        On Ctrl-C the KeyboardInterrupt carries ``.results`` (a list like the return value:
        what is known of every item; an item whose request may have reached Graph says
        ``may_have_sent=True``). Read it typed with :func:`graphsend.interrupted_results`.
        """
        from graphsend._drivers import bulk as _bulk  # only bulk users pay for importing it

        if self._closed:
            raise ValueError("this Client is closed")
        return _bulk.send_many(
            self,
            items,
            max_concurrency=max_concurrency,
            max_per_mailbox=max_per_mailbox,
            progress=progress,
            stop_on_error=stop_on_error,
        )

    def _handle(self) -> _native.Handle:
        if self._closed:  # one attribute test: a thread's cached handle must not outlive close()
            raise ValueError("this Client is closed")
        if self._generation != _fork.generation:
            self._reset_handles()
        handle = getattr(self._local, "handle", None)
        if handle is None:
            handle = self._local.handle = self._own(
                _native.Handle(
                    share=self._share,
                    check_signals=threading.current_thread() is threading.main_thread(),
                    **self._native_options(),
                )
            )
        return handle

    def _engine(self) -> _native.Engine:
        """This thread's Engine (libcurl multi) for bulk sends; it keeps its connections."""
        if self._generation != _fork.generation:
            self._reset_handles()
        engine = getattr(self._local, "engine", None)
        if engine is None:
            engine = self._local.engine = self._own(
                _native.Engine(share=self._share, **self._native_options())
            )
        return engine

    def _native_options(self) -> dict[str, Any]:
        """Options for a new Handle/Engine (made at a thread's first send): without CAs to
        verify an https server with, that send fails here, before anything is sent."""
        if self._ca_missing is not None:
            raise TransportError(self._ca_missing, curl_code=77, may_have_sent=False)
        return self._options

    def _own(self, obj: _Native) -> _Native:
        """Register a native object of this thread so close() can close it."""
        with self._lock:
            if self._closed:
                raise ValueError("this Client is closed")
            self._natives.setdefault(threading.current_thread(), []).append(obj)
        return obj

    def _reset_handles(self) -> None:
        """Start afresh: at construction, and in a forked child (the parent's handles are left
        alone; the native layer skips their cleanup in this process)."""
        self._generation = _fork.generation
        self._share = _native.Share()
        self._local = threading.local()
        # Per thread, so the objects of a finished thread go with it.
        self._natives: weakref.WeakKeyDictionary[threading.Thread, list[Any]]
        self._natives = weakref.WeakKeyDictionary()

    # The one format of the per-attempt DEBUG record and of the WARNING before a retry, for
    # every path (send, send_many, compose operations, upload chunks). ``path`` never holds a
    # secret: an upload chunk passes a description, never its pre-authenticated URL.
    @staticmethod
    def _log_attempt(
        path: str,
        status: int | str,
        request_id: str | None,
        crid: str | None,
        elapsed: float,
        attempt: int,
        method: str = "POST",
    ) -> None:
        log = _log.debug_enabled()
        if log is None:
            return
        log.debug(
            "%s %s -> %s request-id=%s client-request-id=%s elapsed=%.3fs attempt=%d",
            method,
            path,
            status,
            request_id,
            crid,
            elapsed,
            attempt,
        )

    @staticmethod
    def _log_retry(
        path: str, error: SendError, wait: float, attempt: int, method: str = "POST"
    ) -> None:
        log = _log.get(create=True)
        assert log is not None
        log.warning("%s %s failed (%s); attempt %d in %.3fs", method, path, error, attempt, wait)


def _ca_bundle(value: str | os.PathLike[str] | None) -> str | None:
    """A PEM file of CA certificates: missing is FileNotFoundError, anything else wrong with it
    a ValueError that says what."""
    if value is None:
        return None
    path = os.fspath(value)
    if not isinstance(path, str):
        raise TypeError("ca_bundle must be a str path")
    check_text(path, "ca_bundle")
    if not os.path.exists(path):
        raise FileNotFoundError(f"ca_bundle not found: {path}")
    if not os.path.isfile(path):
        raise ValueError(f"ca_bundle is not a regular file: {path}")
    try:
        with open(path, "rb") as f:
            pem = f.read(4 << 20)
    except OSError as exc:
        raise ValueError(f"ca_bundle cannot be read: {path}: {exc.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError(f"ca_bundle is not a PEM bundle of CA certificates: {path}")
    return path


def _proxy(value: str | bool | None) -> str | None:
    """None: libcurl honours https_proxy/no_proxy; False: no proxy at all; str: this proxy."""
    if value is None:
        return None
    if value is False:
        return ""
    if value is True:
        raise TypeError("proxy must be a URL, None or False")
    return check_proxy(value)


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or ""


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be a bool")
    return value


def interrupted_results(exc: BaseException) -> list[Receipt | SendError] | None:
    """The ``.results`` that ``send_many`` attached to ``exc`` when it stopped early.

    On Ctrl-C, ``Client.send_many`` (and ``AsyncClient.send_many``) re-raise the
    KeyboardInterrupt with a ``results`` attribute: one Receipt or SendError per item, in input
    order. Returns None when ``exc`` carries none::

        try:
            results = client.send_many(items)
        except KeyboardInterrupt as exc:
            results = graphsend.interrupted_results(exc)
            raise
    """
    results = getattr(exc, "results", None)
    return results if isinstance(results, list) else None

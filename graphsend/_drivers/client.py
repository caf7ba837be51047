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
    check_flag,
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
    from collections.abc import Callable, Iterable
    from typing import Any, TypeVar

    from graphsend._drivers.limiter import Limiter
    from graphsend._drivers.progress import ProgressArg
    from graphsend._native import Result
    from graphsend._operations.message import Attachment, Message
    from graphsend._operations.reconcile import Stamps, Verdict
    from graphsend._rules.request import Item
    from graphsend._rules.tokens import TokenArg

    _Native = TypeVar("_Native", "_native.Handle", "_native.Engine")

DEFAULT_RETRY = Retry()


class Client:
    """Sends Graph mail with one configuration; safe to share between any number of threads.

    Each thread gets its own libcurl handle (and so its own kept-alive connection); DNS and TLS
    sessions are shared between them. A send releases the GIL for the whole transfer. After
    ``os.fork()`` the child opens its own connections. Use it as a context manager, or call
    :meth:`close`.

    Example:
        ::

            with graphsend.Client(credential) as client:
                receipt = client.send(draft_id, user="adele@contoso.com")

    Attributes:
        base_url: The Graph host requests go to, e.g. ``"https://graph.microsoft.com"``.
        api_version: ``"v1.0"`` or ``"beta"``.
        cloud: The national cloud whose token scope is asked for.
        retry: The retry policy of every request.
        immutable_ids: Whether requests that return ids ask for immutable ones.
    """

    base_url: str
    api_version: str
    cloud: str
    retry: Retry
    immutable_ids: bool

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
        proxy_ca_bundle: str | os.PathLike[str] | None = None,
        user_agent: str | None = None,
        http2: bool = True,
        immutable_ids: bool = True,
        limiter: Limiter | None = None,
    ) -> None:
        """Check the configuration; no connection is made until the first request.

        Args:
            token: The access token: a str; a callable returning a str or an MSAL result dict
                (``{"access_token": ...}``), called before every attempt; or an
                azure-identity style credential (``get_token(scope)``), asked for the cloud's
                ``https://<graph host>/.default`` scope and cached until 5 minutes before it
                expires. On a 401 a provider is asked for a fresh token once.
            cloud: ``"global"`` (graph.microsoft.com), ``"usgov"`` (graph.microsoft.us),
                ``"dod"`` (dod-graph.microsoft.us) or ``"china"``
                (microsoftgraph.chinacloudapi.cn).
            base_url: Another Graph host (``https://host[:port]``); plain ``http://`` only for
                loopback hosts. Overrides the cloud's host, not its token scope.
            api_version: ``"v1.0"`` or ``"beta"``.
            timeout: Seconds a request may take in all (at most 2,147,483).
            connect_timeout: Seconds to connect, TLS included.
            retry: The retry policy (see :class:`Retry`); the default retries only what
                proves nothing was sent.
            proxy: ``None`` honours ``https_proxy``/``no_proxy``; a URL (``http``, ``https``,
                ``socks4``, ``socks4a``, ``socks5``, ``socks5h``) sets the proxy; ``False``
                disables proxies. Requests are always tunnelled (CONNECT); a loopback
                ``base_url`` never uses a proxy.
            ca_bundle: A PEM file of CA certificates to trust instead of the system's. It
                verifies an ``https://`` proxy too, unless ``proxy_ca_bundle`` is given.
            proxy_ca_bundle: A PEM file of the CA certificates that verify an ``https://``
                proxy (a corporate proxy with its own CA), when they are not those that
                verify Graph. ``None``: the proxy is verified like Graph (``ca_bundle``,
                else ``SSL_CERT_FILE``/``CURL_CA_BUNDLE``, else the system's).
            user_agent: The User-Agent header (default ``graphsend/<version> libcurl/...``).
            http2: Use HTTP/2 when the server offers it.
            immutable_ids: Send ``Prefer: IdType="ImmutableId"`` on requests that return
                ids, so a draft keeps its id in Sent Items.
            limiter: Per-mailbox limits shared beyond this call: a :class:`LocalLimiter`
                (every Client, thread and loop given it), a :class:`RedisLimiter` (every
                process and machine), or any object with their ``acquire`` and ``release``.
                It is asked for a slot before each request to a mailbox. ``send()`` and the
                other one-request methods wait in their thread for one, at most ``timeout``
                seconds (then :class:`LimiterError`, nothing sent); ``send_many`` pauses only
                that mailbox. ``None``: no limit but ``send_many``'s ``max_per_mailbox``.

        Raises:
            ValueError: An unknown cloud, a malformed ``base_url`` or proxy (the message
                never quotes a proxy password), a timeout out of range, a ``ca_bundle``
                or ``proxy_ca_bundle`` that is not a readable PEM bundle.
            FileNotFoundError: ``ca_bundle`` or ``proxy_ca_bundle`` does not exist.
            TypeError: An argument of the wrong type (``retry`` not a :class:`Retry`, a
                flag not a bool, an unusable token, a ``limiter`` without ``acquire`` and
                ``release``).
        """
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
        # An https:// proxy is verified with the same CAs unless told otherwise: libcurl keeps
        # a separate setting for it, with no default in the wheel's libcurl.
        proxy_ca_path = (
            ca_path if proxy_ca_bundle is None else _ca_bundle(proxy_ca_bundle, "proxy_ca_bundle")
        )
        self._options: dict[str, Any] = {
            "connect_timeout_ms": check_timeout(connect_timeout, "connect_timeout"),
            "timeout_ms": check_timeout(timeout, "timeout"),
            "allow_http": allow_http,
            "ca_bundle": ca_path,
            "proxy": "" if loopback else proxy_option,
            "proxy_ca_bundle": proxy_ca_path,
            "user_agent": USER_AGENT
            if user_agent is None
            else check_text(user_agent, "user_agent"),
            "http2": check_flag(http2, "http2"),
        }
        # Every request that returns ids asks for immutable ones, so a draft keeps its id in Sent
        # Items. Not the send itself: it returns no id, and the header costs 4 % of its work.
        self.immutable_ids = check_flag(immutable_ids, "immutable_ids")
        self._closed = False
        self._lock = threading.Lock()
        self._stamp_memory: Stamps | None = None  # made on first use (reconcile.py)
        self._reset_handles()
        # A shared mailbox limiter (LocalLimiter, RedisLimiter): consulted before each request.
        # Without one, send() stays today's single native call (nothing checked per send).
        self._limiter = _limiter(limiter)
        # send() waits for a slot at most as long as a request may take (timeout 0: no limit).
        self._slot_wait = float(timeout) or float("inf")
        if limiter is not None:
            self._send = self._send_limited  # type: ignore[method-assign]

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return (
            f"<graphsend.Client base_url={self.base_url!r} api_version={self.api_version!r}{state}>"
        )

    def __enter__(self) -> Client:
        """Return the client itself; leaving the ``with`` block closes it."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the client (see :meth:`close`)."""
        self.close()

    def close(self) -> None:
        """Close every thread's connections.

        A send already under way in another thread finishes (its retries are not made); every
        later call, in any thread, raises ``ValueError("this Client is closed")``. Closing
        twice is harmless.
        """
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
        """Send the draft ``message_id`` (``POST .../messages/{id}/send``). Needs Mail.Send.

        Only outcomes that prove nothing was sent are retried (see :class:`Retry`); a send
        that may have reached Graph is never repeated.

        Args:
            message_id: The draft's id, as Graph gave it (percent-encoded here, once).
            user: The mailbox (userPrincipalName or id); ``None`` sends from ``/me``.
            client_request_id: The ``client-request-id`` header to send (default: a new
                UUID); it comes back in the Receipt or the exception.

        Returns:
            The Receipt of Graph's ``202 Accepted``.

        Raises:
            GraphError: Graph answered with another status; the subclass names it
                (:class:`NotFoundError` for a draft already sent, :class:`ThrottledError`
                after the retries, ...). ``may_have_sent`` says whether the mail may be out.
            TransportError: No answer (DNS, connect, TLS, reset, timeout).
            LimiterError: With a ``limiter``: no slot for the mailbox within ``timeout``
                seconds, or its store (Redis) is unreachable and there is no fallback.
                Nothing is sent.
            TypeError: An argument is not a str.
            ValueError: An empty or over-long id or user (2,048 characters at most), control
                characters, or the client is closed. Nothing is sent.
        """
        return self._send(message_id, user, client_request_id, self._tokens)

    def _send(
        self,
        message_id: str,
        user: str | None,
        client_request_id: str | None,
        tokens: TokenSource,
        retry: Retry | None = None,
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
        return self._settle(path, crid, result, tokens, message_id, user, retry or self.retry)

    def _send_limited(
        self,
        message_id: str,
        user: str | None,
        client_request_id: str | None,
        tokens: TokenSource,
        retry: Retry | None = None,
    ) -> Receipt:
        """send() under the limiter: one slot for the whole call (retries included)."""
        from graphsend._drivers.limiter import acquire_blocking, mailbox_of

        limiter = self._limiter
        assert limiter is not None
        # Bad input fails before a slot is taken (and so never uses up messages_per_minute).
        send_path(user, message_id)
        if client_request_id is not None:
            check_text(client_request_id, "client_request_id")
        slots: list[object] = []
        used = False
        try:  # (the slot is taken inside: a Ctrl-C right after it still gives it back)
            slots = acquire_blocking(limiter, mailbox_of(user), True, self._slot_wait)
            auth = tokens.header()
            # From here the request may be written (an interrupt mid-transfer raises): it
            # counts against messages_per_minute, which must never be exceeded.
            used = True
            got = self._handle().send_draft(self._prefix, user, message_id, auth, client_request_id)
            if got.__class__ is Receipt:
                if _log.debug_enabled():
                    path = send_path(user, message_id)
                    self._log_attempt(
                        path, 202, got.request_id, got.client_request_id, got.elapsed, 1
                    )
                return got  # type: ignore[return-value]
            path, crid, result = got  # type: ignore[misc]
            return self._settle(path, crid, result, tokens, message_id, user, retry or self.retry)
        finally:
            limiter.release(slots, used=used)

    def _settle(
        self,
        path: str,
        crid: str,
        result: Result,
        tokens: TokenSource,
        message_id: str,
        user: str | None,
        policy: Retry,
    ) -> Receipt:
        """After a first attempt other than 202: retry what the policy allows, settle an
        ambiguous failure by reading the mailbox when it asks for that, raise the rest."""
        url = self._prefix + path
        crid_header = "client-request-id: " + crid
        state = RetryState(policy)
        while True:
            status = result[0] or f"curl error {result[4]}"
            self._log_attempt(
                path, status, result[1].get("request-id"), crid, result[3], state.attempt
            )
            got = outcome(result, crid, message_id, user)
            if isinstance(got, Receipt):
                return got
            wait = state.next_wait(got, tokens)
            if wait is None:
                if not (policy.reconcile_ambiguous and got.may_have_sent):
                    raise got
                settled = self._reconcile_failure(got, state, tokens, message_id, user)
                if settled is not None:
                    if isinstance(settled, Receipt):
                        return settled
                    raise settled
                wait = 0.0  # proved not sent: the next attempt now
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

    def _reconcile_failure(
        self,
        error: SendError,
        state: RetryState,
        tokens: TokenSource,
        message_id: str,
        user: str | None,
    ) -> Receipt | SendError | None:
        """Ask the mailbox about an ambiguous failure (reconcile.py's rules): a reconciled
        Receipt, the error to raise, or None to send again. Reading never makes it worse:
        whatever goes wrong while reading is "unknown", and the original error is raised."""
        from graphsend._drivers import sync as _driver
        from graphsend._operations import reconcile as _reconcile

        started = time.monotonic()
        try:
            # (send() holds the mailbox's limiter slot, if any, while it settles: reads use it)
            verdict = _driver.reconcile(
                self, message_id, user, state.policy.reconcile_wait, None, tokens, held=True
            )
        except Exception:
            verdict = "unknown"
        elapsed = time.monotonic() - started
        return _reconcile.after(verdict, error, state, elapsed, message_id, user)

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

        Args:
            message: What to compose.
            user: The mailbox; ``None`` is ``/me``.

        Returns:
            The new draft's id (immutable unless ``immutable_ids=False``): pass it to
            :meth:`send`.

        Raises:
            SendError: Graph refused a request or could not be reached (never
                ``may_have_sent``); ``exc.draft_id`` is set once the draft exists.
            TypeError: ``message`` is not a :class:`Message`.
            FileNotFoundError: An attachment file is missing (before any request).
            ValueError: An attachment file is unusable (a directory, over 150 MB).
        """
        from graphsend._drivers import sync as _driver
        from graphsend._operations import compose as _compose
        from graphsend._operations import upload as _upload

        op, stamp, later = _compose.draft(message)
        draft_id = _driver.run(self, op, user)
        self._stamps.remember(draft_id, stamp)
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
        """Create a reply (or reply-all) draft to ``message_id``. Needs Mail.ReadWrite.

        Args:
            message_id: The message replied to.
            comment: Text Graph puts above the quoted original.
            reply_all: Reply to every recipient (``createReplyAll``).
            user: The mailbox; ``None`` is ``/me``.

        Returns:
            The new draft's id.

        Raises:
            SendError: Graph refused or could not be reached (never ``may_have_sent``).
            TypeError: An argument of the wrong type.
            ValueError: An empty id, control characters in ``comment``.
        """
        from graphsend._drivers import sync as _driver
        from graphsend._operations import compose as _compose

        op, stamp = _compose.reply(message_id, comment, reply_all)
        draft_id = _driver.run(self, op, user)
        self._stamps.remember(draft_id, stamp)
        return draft_id

    def create_forward(
        self,
        message_id: str,
        *,
        to: Iterable[str | tuple[str, str]] | str,
        comment: str = "",
        user: str | None = None,
    ) -> str:
        """Create a forward draft of ``message_id`` to ``to``. Needs Mail.ReadWrite.

        Args:
            message_id: The message forwarded.
            to: Recipients: ``"a@b.com"``, ``"Name <a@b.com>"`` or ``(name, address)``, or
                one of them alone.
            comment: Text Graph puts above the forwarded message.
            user: The mailbox; ``None`` is ``/me``.

        Returns:
            The new draft's id.

        Raises:
            SendError: Graph refused or could not be reached (never ``may_have_sent``).
            ValueError: No recipient, more than 500, a malformed address, an empty id.
            TypeError: An argument of the wrong type.
        """
        from graphsend._drivers import sync as _driver
        from graphsend._operations import compose as _compose

        op, stamp = _compose.forward(message_id, to, comment)
        draft_id = _driver.run(self, op, user)
        self._stamps.remember(draft_id, stamp)
        return draft_id

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
        """Attach a file (a path or bytes, up to 150 MB) to the draft ``message_id``.

        Up to 3 MB: one request; larger: an upload session whose 3.75 MiB chunks are read from
        disk in C (streamed, never whole in memory) and never carry the token. A failed chunk
        is sent again when another try can help; an expired session starts over. Needs
        Mail.ReadWrite.

        Args:
            message_id: The draft.
            source: A path, bytes (then ``name`` is required), or an :class:`Attachment`
                (then pass no other attachment argument).
            name: The file name shown to recipients (default: the path's base name).
            content_type: The MIME type (default: guessed from the name).
            inline: An inline attachment (an image the HTML body shows).
            content_id: The Content-ID an inline image is referred to by (``cid:...``).
            user: The mailbox; ``None`` is ``/me``.
            progress: A callable ``(bytes_done, total)``, or ``True`` for a progress bar.

        Returns:
            The attachment's id.

        Raises:
            SendError: Graph refused or could not be reached, or an upload made no progress
                (never ``may_have_sent``).
            FileNotFoundError: The file does not exist.
            ValueError: Over 150 MB, a directory, a bad name or content type, or attachment
                arguments next to an :class:`Attachment`.
            TypeError: An argument of the wrong type.
        """
        from graphsend._drivers import sync as _driver
        from graphsend._drivers.progress import reporter
        from graphsend._operations import catalog as _operations
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
        from graphsend._drivers import uploading

        return uploading.upload(self, message_id, att, user, reporter(progress, att.size))

    def send_mail(
        self, message: Message, *, user: str | None = None, save_to_sent_items: bool = True
    ) -> Receipt:
        """Send ``message`` in one request (``POST /sendMail``), without a draft.

        Needs Mail.Send only. Graph caps the request at 4 MB, attachments included (base64):
        a larger message is a ValueError before any request; use :meth:`create_draft` +
        :meth:`send` for those. Retried like :meth:`send`: never once it may have reached
        Graph. The message carries graphsend's stamp (an extended property): with
        ``Retry(reconcile_ambiguous=True)`` and ``save_to_sent_items``, a failure that may
        have sent it is looked up in Sent Items (Mail.Read): found, a Receipt with
        ``reconciled=True``; not found within ``reconcile_wait``, the error (never resent).

        Args:
            message: What to send.
            user: The mailbox; ``None`` is ``/me``.
            save_to_sent_items: Keep a copy in Sent Items.

        Returns:
            The Receipt of Graph's ``202 Accepted``.

        Raises:
            SendError: As :meth:`send` (``may_have_sent`` says whether it may be out).
            ValueError: An attachment over 3 MB, or the request over 4 MB.
            TypeError: ``message`` is not a :class:`Message`, a flag not a bool.
        """
        from graphsend._drivers import sendmail as _driver
        from graphsend._operations import compose as _compose

        return _driver.run(self, _compose.send_mail(message, save_to_sent_items), user)

    def send_mime(
        self,
        mime: bytes | email.message.Message,
        *,
        user: str | None = None,
        save_to_sent_items: bool = True,
    ) -> Receipt:
        """Send an RFC 5322 message as is, through ``POST /sendMail`` (Mail.Send).

        Args:
            mime: The message: bytes, or an ``email.message.Message`` /
                ``EmailMessage``.
            user: The mailbox; ``None`` is ``/me``.
            save_to_sent_items: Must be True: Graph always saves a MIME send to Sent Items.

        Returns:
            The Receipt of Graph's ``202 Accepted``.

        Raises:
            SendError: As :meth:`send`.
            ValueError: ``save_to_sent_items=False``, or over 4 MB once base64-encoded.
            TypeError: ``mime`` is neither bytes nor an email message.
        """
        from graphsend._drivers import sync as _driver
        from graphsend._operations import compose as _compose

        return _driver.run(self, _compose.send_mime(mime, save_to_sent_items), user)

    def reconcile(
        self,
        message_id: str,
        *,
        user: str | None = None,
        wait: float = 60.0,
        stamp: str | None = None,
    ) -> Verdict:
        """Ask ``user``'s mailbox whether the draft ``message_id`` was sent: after a send that
        ended ambiguously (``may_have_sent=True``), before deciding to send it again.

        Polls with backoff (0.25 s doubling to 5 s). Needs Mail.ReadBasic or Mail.Read.

        Args:
            message_id: The draft's id, as given to :meth:`send`.
            user: The mailbox (userPrincipalName or id); ``None`` is ``/me``.
            wait: Seconds the draft must go on reading unsent before the verdict is
                ``"not_sent"``: the settling time Graph's send pipeline is given to move it.
            stamp: The draft's graphsend stamp, when this Client did not create it (the
                Client remembers the stamps of the last 16,384 drafts it made; with
                immutable ids, the default, none is needed).

        Returns:
            ``"sent"`` as soon as the sent copy is found (the id, immutable, reads
            ``isDraft`` false; or graphsend's stamp is in Sent Items); ``"not_sent"`` only
            when the draft still reads unsent after ``wait`` seconds; ``"unknown"`` otherwise
            (403: no Mail.ReadBasic / Mail.Read; 404 for an id whose stamp is not known;
            reads failing until ``wait``).

        Raises:
            TypeError: An argument of the wrong type.
            ValueError: An empty or malformed id, user or stamp, a ``wait`` below 0 or not
                finite, or the client is closed. A read that fails does not raise: it
                counts towards ``"unknown"``.
        """
        from graphsend._drivers import sync as _driver
        from graphsend._operations.reconcile import check_wait

        check_text(message_id, "message_id")
        send_path(user, message_id)  # a bad user raises now, before any request
        if stamp is not None:
            check_text(stamp, "stamp")
        return _driver.reconcile(self, message_id, user, check_wait(wait), stamp)

    def reconcile_many(
        self,
        items: Iterable[Item],
        *,
        wait: float = 60.0,
        max_concurrency: int = 64,
        max_per_mailbox: int = 4,
    ) -> list[Verdict]:
        """:meth:`reconcile` for many drafts at once.

        The reads run side by side on one libcurl multi, at most ``max_per_mailbox`` per
        mailbox: settling what a crashed bulk job left in flight takes about ``wait`` seconds,
        not ``wait`` per item.

        Args:
            items: Draft ids (of ``/me``) or ``(user, message_id)`` pairs, as in
                :meth:`send_many`.
            wait: As for :meth:`reconcile`, for every item.
            max_concurrency: Reads in flight in all.
            max_per_mailbox: Reads in flight per mailbox (Outlook allows 4 per app).

        Returns:
            One verdict per item (``"sent"``, ``"not_sent"`` or ``"unknown"``, as
            :meth:`reconcile`), in input order.

        Raises:
            TypeError: An item that is not an id or a pair, a limit not an int, a ``wait``
                not a number (before any request).
            ValueError: A pair not of two, a malformed id or user, a limit below 1, a
                ``wait`` below 0 or not finite, or the client is closed (before any request).
            KeyboardInterrupt: Ctrl-C; the reads in flight are aborted.
        """
        from graphsend._drivers.reconciling import reconcile_many
        from graphsend._operations.reconcile import check_wait

        if self._closed:
            raise ValueError("this Client is closed")
        return reconcile_many(self, items, check_wait(wait), max_concurrency, max_per_mailbox)

    @property
    def _stamps(self) -> Stamps:
        """Stamps of the drafts this Client made (made on first use: import cost)."""
        stamps = self._stamp_memory
        if stamps is None:
            from graphsend._operations.reconcile import Stamps

            with self._lock:
                if self._stamp_memory is None:
                    self._stamp_memory = Stamps()
                stamps = self._stamp_memory
        return stamps

    def send_many(
        self,
        items: Iterable[Item],
        *,
        max_concurrency: int = 64,
        max_per_mailbox: int = 4,
        progress: ProgressArg = None,
        stop_on_error: bool = False,
        journal: str | os.PathLike[str] | None = None,
    ) -> list[Receipt | SendError]:
        """Send many messages at once; results come back in input order.

        ``items`` are message ids (sent from ``/me``), ``(user, message_id)`` pairs,
        :class:`Message` objects or ``(user, Message)`` pairs. Each result is a Receipt or the
        SendError that ``send()`` would have raised for that item. One native call per wait
        drives every transfer (libcurl multi, GIL released), with at most ``max_per_mailbox``
        requests in flight per mailbox and ``max_concurrency`` in all. A throttled mailbox
        pauses for its Retry-After while the others go on. A Message that fits one request is
        sent with sendMail; a larger one is made into a draft first (its result is that
        SendError if composing fails, and it is not sent).

        On Ctrl-C the KeyboardInterrupt carries ``.results`` (a list like the return value:
        what is known of every item; an item whose request may have reached Graph says
        ``may_have_sent=True``). Read it typed with :func:`graphsend.interrupted_results`.

        ``journal``: the path of a SQLite file recording each item before its request is
        written and its outcome after (fsynced). Run the same items with the same journal again
        after a crash: what is known sent returns its stored Receipt without a request, what
        was in flight is looked up in the mailbox (``reconcile``; a draft it cannot tell about
        is a SendError with ``may_have_sent=True``, never resent), the rest is sent. Items must
        be draft ids or ``(user, draft_id)`` pairs. One process at a time per journal.

        Args:
            items: What to send (see above).
            max_concurrency: Requests in flight in all.
            max_per_mailbox: Requests in flight per mailbox (Outlook allows 4 per app).
            progress: A callable ``(done, total)``, or ``True``: tqdm when installed,
                otherwise a counter on stderr.
            stop_on_error: Start nothing more after the first failure (the transfers in
                flight finish).
            journal: A SQLite file path that makes the batch crash-safe (see above).

        Returns:
            One Receipt or SendError per item, in input order.

        Raises:
            TypeError: A malformed item or limit (before anything is sent).
            ValueError: A bad id, user or limit, the client is closed, or the journal belongs
                to another run (before anything is sent).
            RuntimeError: The journal is in use by another process or call.
            FileNotFoundError: The journal's directory does not exist.
            KeyboardInterrupt: Ctrl-C; carries ``.results``.
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
            journal=journal,
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

    def _engine_cleanup(self, engine: _native.Engine, cleanup: Callable[[], None]) -> None:
        """Run ``cleanup`` (a failed call cancels and collects its transfers). Meanwhile the
        thread's Engine is not handed out: should a second exception (Ctrl-C twice) end the
        cleanup, the Engine keeps requests of the failed call that were submitted but never
        written, and a later call performing it would send them. It is closed instead
        (aborting them unwritten), and the thread's next call makes a new one."""
        local = self._local
        if getattr(local, "engine", None) is engine:
            local.engine = None
        try:
            cleanup()
        except BaseException:
            try:
                engine.close()
            except Exception:
                pass
            raise
        if getattr(local, "engine", None) is None:
            local.engine = engine

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


def _limiter(limiter: object) -> Limiter | None:
    if limiter is None:
        return None
    if not callable(getattr(limiter, "acquire", None)) or not callable(
        getattr(limiter, "release", None)
    ):
        raise TypeError("limiter must be a graphsend.LocalLimiter, RedisLimiter or alike")
    return limiter  # type: ignore[return-value]


def _ca_bundle(value: str | os.PathLike[str] | None, what: str = "ca_bundle") -> str | None:
    """A PEM file of CA certificates: missing is FileNotFoundError, anything else wrong with it
    a ValueError that says what."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{what} must be a str path")
    path = os.fspath(value)
    if not isinstance(path, str):
        raise TypeError(f"{what} must be a str path")
    check_text(path, what)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    if not os.path.isfile(path):
        raise ValueError(f"{what} is not a regular file: {path}")
    try:
        with open(path, "rb") as f:
            pem = f.read(4 << 20)
    except OSError as exc:
        raise ValueError(f"{what} cannot be read: {path}: {exc.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError(f"{what} is not a PEM bundle of CA certificates: {path}")
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


def interrupted_results(exc: BaseException) -> list[Receipt | SendError] | None:
    """The ``.results`` that ``send_many`` attached to ``exc`` when it stopped early.

    On Ctrl-C, ``Client.send_many`` (and ``AsyncClient.send_many``, also on cancellation or
    when a progress callback raises) re-raise the exception with a ``results`` attribute: one
    Receipt or SendError per item, in input order. On Python 3.10, awaiting a cancelled task
    raises a new CancelledError; this function finds the results on the one it replaced.

    Example:
        ::

            try:
                results = client.send_many(items)
            except KeyboardInterrupt as exc:
                results = graphsend.interrupted_results(exc)
                raise

    Args:
        exc: The exception ``send_many`` raised.

    Returns:
        The results list, or None when ``exc`` carries none.
    """
    results = getattr(exc, "results", None)
    if results is None and exc.__context__ is not None and type(exc).__name__ == "CancelledError":
        # Python 3.10: awaiting a cancelled task raises a new CancelledError whose context is
        # the one send_many raised (3.11+ re-raise that one).
        results = getattr(exc.__context__, "results", None)
    return results if isinstance(results, list) else None

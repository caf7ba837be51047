"""The rules: how FakeGraph answers a request, in the order Graph applies them.

FakeGraph's docstring lists the rules for send requests; ``_send`` applies them in that order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import TYPE_CHECKING, Protocol

from ._compose import MAX_REQUEST
from ._faults import Fault, fault_reply
from ._http import Reply, Request
from ._operations import serve_operation
from ._reads import list_folder, read_denied
from ._records import RecordedRequest
from ._replies import Refusal, Replies, retry_after_text
from ._routing import Route, parse_route
from ._traffic import Flight
from ._upload_rules import serve_upload

if TYPE_CHECKING:
    from ._fakegraph import FakeGraph


class Channel(Protocol):
    """Where one request's answer goes: an HTTP/1.1 connection (``_connection``) or an HTTP/2
    stream (``_http2``). The rules below are the same for both."""

    def client_gone(self) -> bool:
        """Whether the client has already given up on this request."""

    async def write(self, reply: Reply, *, close: bool, head_only: bool) -> None:
        """Send ``reply``; raise ConnectionError or OSError when the client is gone."""

    async def wait_gone(self) -> None:
        """Return once the client has given up on this request (it is never answered)."""

    def reset(self, *, stream_only: bool) -> None:
        """Abort without an answer (see FakeGraph.reset_next for what the client sees);
        ``stream_only``: over HTTP/2, reset only this request's stream."""


async def serve_request(
    graph: FakeGraph,
    request: Request,
    connection: int,
    served: int,
    channel: Channel,
) -> bool:
    """Serve the ``served``-th request of a connection; return whether the connection stays
    open."""
    route = parse_route(request.target, graph.default_user)
    record = RecordedRequest(
        method=request.method,
        path=request.target,
        headers=request.headers,
        body=request.body,
        user=route.user,
        message_id=route.message_id,
        received_at=request.received_at,
        connection=connection,
        http_version=request.version,
    )
    if graph.record_requests:
        graph._traffic.record(record)
    replies = Replies(https=graph.scheme == "https", request_headers=request.headers)
    limit = graph.max_requests_per_connection
    keep = request.keep_alive and (limit is None or served < limit)
    exchange = _Exchange(channel, record, graph._traffic.flight(route.user), keep)
    try:
        if route.kind == "upload":
            return await serve_upload(graph, request, replies, exchange)
        if len(request.body) > MAX_REQUEST:
            # Graph's gateway refuses before looking at anything else.
            message = f"The request body is {len(request.body)} bytes; the limit is {MAX_REQUEST}."
            return await exchange.answer(replies.error(413, "RequestEntityTooLarge", message))
        if route.kind in ("send", "sendmail") and request.method == "POST":
            return await _send(graph, request, route, replies, exchange)
        try:
            reply = _other(graph, request, route, replies)
        except Refusal as refusal:
            reply = replies.refusal(refusal)
        return await exchange.answer(reply, head_only=request.method == "HEAD")
    finally:
        exchange.flight.release()


class _Exchange:
    """The connection's side of one request: where its answer goes, what the answer settles."""

    def __init__(
        self, channel: Channel, record: RecordedRequest, flight: Flight, keep: bool
    ) -> None:
        self.channel = channel
        self.record, self.flight, self.keep = record, flight, keep

    async def answer(self, reply: Reply, head_only: bool = False) -> bool:
        """Write ``reply``, update the record; return whether the connection stays open."""
        close = not self.keep or reply.raw_framing
        for name, value in reply.headers:
            if name.lower() == "connection" and "close" in value.lower():
                close = True
        # Settle the record and the counts before the client can see the answer, so that a test
        # reading them right after its response never finds them a step behind.
        self.record.status = reply.status
        # A client that closed its side before the answer has given up (curl never half-closes);
        # the answer is still written, as Graph would.
        self.record.outcome = "disconnected" if self.channel.client_gone() else "answered"
        self.record.answered_at = time.monotonic()
        self.flight.release()
        try:
            await self.channel.write(reply, close=close, head_only=head_only)
        except (ConnectionError, OSError):
            self.record.outcome = "disconnected"
            return False
        return not close

    async def stall(self) -> None:
        """Never answer: wait for the client to give up (stop() cancels this)."""
        self.record.outcome = "stalled"
        await self.channel.wait_gone()
        self.record.outcome = "disconnected"

    def reset(self, stream_only: bool = False) -> None:
        self.record.outcome = "reset"
        self.flight.release()
        self.channel.reset(stream_only=stream_only)


async def _send(
    graph: FakeGraph, request: Request, route: Route, replies: Replies, exchange: _Exchange
) -> bool:
    """A POST to a send path or to sendMail, by the rules in FakeGraph's docstring (for
    sendMail the last one is sendMail's own: the message is checked and sent, or refused)."""
    user = route.user
    assert user is not None
    if request.content_length is None:
        return await exchange.answer(replies.error(411))

    fault = graph._faults.take(user)
    lose = None  # a fault that lets the send go through and then loses its answer
    if fault is not None and fault.deliver:
        lose, fault = fault, None
    if fault is not None and fault.kind == "stall":
        await exchange.stall()
        return False
    latency = graph._latency_for(user)
    if fault is not None and fault.kind == "reset":
        await _sleep(latency)
        exchange.reset(fault.stream_only)
        return False
    if fault is not None and not 200 <= fault.status < 300:
        await _sleep(latency)
        return await exchange.answer(fault_reply(fault, replies))

    error = _auth_error(graph, request, replies)
    if error is None and route.id_malformed:
        error = replies.error(400, "ErrorInvalidIdMalformed", "Id is malformed.")
    if error is not None:
        await _sleep(latency)
        return await exchange.answer(error)

    # Throttling answers at once: Graph refuses before doing any work.
    cap = graph.mailbox_concurrency_limit
    if cap is not None and graph._traffic.admitted(user) >= cap:
        graph._traffic.throttled(user)
        reply = replies.error(429)
        retry_after = retry_after_text(graph.throttle_retry_after)
        if retry_after is not None:
            reply.headers.append(("Retry-After", retry_after))
        return await exchange.answer(reply)

    exchange.flight.admit()
    await _sleep(latency)
    if route.kind == "sendmail":
        try:
            reply = _other(graph, request, route, replies)
        except Refusal as refusal:
            reply = replies.refusal(refusal)
        if fault is not None and reply.status == 202:
            reply = fault_reply(fault, replies, success=reply)
        if lose is not None and reply.status == 202:
            return await _lose(exchange, lose, replies)  # sent; the answer is lost
        return await exchange.answer(reply)
    try:
        result = graph._mailboxes.send(
            user, route.message_id or "", graph.resend_window, graph.sent_items_delay
        )
    except Refusal as refusal:
        return await exchange.answer(replies.refusal(refusal))
    if result == "no mailbox":
        return await exchange.answer(replies.invalid_user(user))
    if result == "no draft":
        return await exchange.answer(replies.error(404))
    graph._traffic.accepted_send(user, exchange.record.received_at)
    if lose is not None:  # sent; the answer is lost on the way back
        return await _lose(exchange, lose, replies)
    reply = replies.accepted()
    if fault is not None:  # a 2xx fault: the send went through, the answer is the fault's
        reply = fault_reply(fault, replies, success=reply)
    return await exchange.answer(reply)


async def _lose(exchange: _Exchange, lose: Fault, replies: Replies) -> bool:
    """Lose the answer of a send that went through: stall, reset, or the fault's status."""
    if lose.kind == "stall":
        await exchange.stall()
        return False
    if lose.kind == "reset":
        exchange.reset(lose.stream_only)
        return False
    return await exchange.answer(fault_reply(lose, replies))


def _other(graph: FakeGraph, request: Request, route: Route, replies: Replies) -> Reply:
    """Everything that is not a POST to a send path."""
    if route.kind == "send":
        return replies.method_not_allowed(request.method, "POST")
    if route.kind == "unknown":
        return replies.error(
            404, "ResourceNotFound", f"Resource not found for the segment '{route.segment}'."
        )
    error = _auth_error(graph, request, replies)
    if error is not None:
        return error
    user = route.user
    assert user is not None
    denied = read_denied(graph, request, route, replies)
    if denied is not None:
        return denied
    if route.kind == "folder":
        if request.method not in ("GET", "HEAD"):
            return replies.method_not_allowed(request.method, "GET")
        return list_folder(graph, request, route, replies)
    if route.id_malformed:
        return replies.error(400, "ErrorInvalidIdMalformed", "Id is malformed.")
    user = graph._key(user)  # "users/me" is the default user too
    if route.kind != "create" and not graph._mailboxes.exists(user):
        return replies.invalid_user(user)
    return serve_operation(graph, request, dataclasses.replace(route, user=user), replies)


def _auth_error(graph: FakeGraph, request: Request, replies: Replies) -> Reply | None:
    """401 unless the request carries ``Authorization: Bearer <graph.token>``."""
    value = request.headers.get("authorization", "").strip()
    scheme, _, credential = value.partition(" ")
    if not value:
        return replies.unauthorized("Access token is empty.")
    if scheme.lower() != "bearer" or credential.strip() != graph.token:
        return replies.unauthorized("Access token validation failure. Invalid audience.")
    return None


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)

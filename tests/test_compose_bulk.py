"""Issue 11, bulk side: Client.send_many and AsyncClient.send_many take Message items (and
(user, Message) pairs) mixed with draft ids. Names: test_i11_bulk_<what>."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from compose_servers import Answer, Recorder, Request, error

import graphsend
from graphsend import AsyncClient, Attachment, Client, Message, Receipt, SendError
from graphsend.testing import FakeGraph

PREFER = 'IdType="ImmutableId"'
NO_RETRY_WAIT = graphsend.Retry(backoff_base=0.01, backoff_max=0.02)
SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))

Runner = Callable[..., list[Receipt | SendError]]


def run_sync(base_url: str, token: str, items: list[Any], **kw: Any) -> list[Receipt | SendError]:
    opts = {k: kw.pop(k) for k in ("immutable_ids",) if k in kw}
    with Client(token, base_url=base_url, http2=False, retry=NO_RETRY_WAIT, **opts) as c:
        return c.send_many(items, **kw)


def run_async(base_url: str, token: str, items: list[Any], **kw: Any) -> list[Receipt | SendError]:
    opts = {k: kw.pop(k) for k in ("immutable_ids", "max_per_mailbox") if k in kw}

    async def main() -> list[Receipt | SendError]:
        async with AsyncClient(
            token, base_url=base_url, http2=False, retry=NO_RETRY_WAIT, **opts
        ) as c:
            return await c.send_many(items, **kw)

    return asyncio.run(main())


@pytest.fixture(params=["sync", "async"])
def send_many(request: pytest.FixtureRequest) -> Runner:
    return run_sync if request.param == "sync" else run_async  # type: ignore[return-value]


def subjects(graph: FakeGraph) -> list[str]:
    return sorted(m.subject for m in graph.delivered())


# --- FakeGraph: mixed items ------------------------------------------------------------------


def test_i11_bulk_mixed_ids_small_and_large_messages(graph: FakeGraph, send_many: Runner) -> None:
    graph.add_mailbox("bob@contoso.com")
    with Client(graph.token, base_url=graph.base_url, http2=False) as c:
        d1 = c.create_draft(Message("draft-1", "b", to="a@b.com"))
        d2 = c.create_draft(Message("draft-2", "b", to="a@b.com"), user="bob@contoso.com")
    big = os.urandom(5_000_000)
    before = len(graph.requests)
    items = [
        d1,
        Message("small-me", "b", to="x@y.com", attachments=[Attachment(b"abc", name="a.txt")]),
        ("bob@contoso.com", d2),
        ("bob@contoso.com", Message("small-bob", "b", to="x@y.com")),
        Message("large", "b", to="x@y.com", attachments=[Attachment(big, name="big.bin")]),
    ]
    results = send_many(graph.base_url, graph.token, items)
    assert all(isinstance(r, Receipt) and r.status == 202 for r in results)
    assert len({r.client_request_id for r in results}) == 5  # type: ignore[union-attr]
    assert subjects(graph) == sorted(["draft-1", "small-me", "draft-2", "small-bob", "large"])
    got = {m.subject: m for m in graph.delivered()}
    assert got["large"].attachments[0].content_bytes == big
    assert got["small-me"].attachments[0].content_bytes == b"abc"
    assert [m.subject for m in graph.sent_items("bob@contoso.com")] in (
        ["draft-2", "small-bob"],
        ["small-bob", "draft-2"],
    )
    reqs = graph.requests[before:]
    send_mails = [r for r in reqs if r.path.endswith("/sendMail")]
    assert len(send_mails) == 2  # the two small messages, one request each
    assert all(r.headers.get("prefer") == PREFER for r in send_mails)
    sends = [r for r in reqs if r.path.endswith("/send")]
    assert len(sends) == 3 and all("prefer" not in r.headers for r in sends)
    # Each result is the one of its item: the sendMail's client-request-id is on its result.
    crid_of = {
        json.loads(r.body)["message"]["subject"]: r.headers["client-request-id"] for r in send_mails
    }
    assert results[1].client_request_id == crid_of["small-me"]  # type: ignore[union-attr]
    assert results[3].client_request_id == crid_of["small-bob"]  # type: ignore[union-attr]
    puts = [r for r in reqs if r.method == "PUT"]
    assert puts and all("authorization" not in r.headers for r in puts)


def test_i11_bulk_immutable_ids_opt_out(graph: FakeGraph, send_many: Runner) -> None:
    results = send_many(
        graph.base_url, graph.token, [Message("m", "b", to="a@b.com")], immutable_ids=False
    )
    assert isinstance(results[0], Receipt)
    assert all("prefer" not in r.headers for r in graph.requests)


def test_i11_bulk_bad_message_input_raises_before_anything_is_sent(
    graph: FakeGraph, send_many: Runner
) -> None:
    good = Message("ok", "b", to="a@b.com")
    big = Message(
        "big", "b", to="a@b.com", attachments=[Attachment(os.urandom(3_500_000), name="b.bin")]
    )
    for items in (
        [good, ("bad\nuser", Message("x", "b", to="a@b.com"))],
        [good, big, ("bad\nuser", big)],
        [good, ("a@b.com", good, "extra")],
    ):
        with pytest.raises((ValueError, TypeError)):
            send_many(graph.base_url, graph.token, items)
    assert graph.requests == [] and graph.delivered() == []


def test_i11_bulk_large_message_whose_draft_fails(graph: FakeGraph, send_many: Runner) -> None:
    big = Message(
        "big", "b", to="a@b.com", attachments=[Attachment(os.urandom(3_500_000), name="b.bin")]
    )
    for n in range(1, 12):
        graph.fail_upload_chunk(n, 500)  # its upload fails for good: the draft is incomplete
    results = send_many(
        graph.base_url, graph.token, [Message("ok", "b", to="a@b.com"), big, "missing-draft"]
    )
    assert isinstance(results[0], Receipt)
    assert isinstance(results[1], SendError) and results[1].may_have_sent is False
    assert "without this attachment" in str(results[1])
    assert isinstance(results[2], graphsend.NotFoundError)
    assert subjects(graph) == ["ok"]  # the incomplete draft was never sent
    assert not any(r.path.endswith("/send") and "missing" not in r.path for r in graph.requests)


# --- an independent server: caps, throttling, ambiguity for sendMail items --------------------


class Mailboxes(Recorder):
    """Answers sendMail/send with 202 after ``latency``, counting concurrent requests per
    mailbox; more than ``cap`` at once in one mailbox is a 429 (as Outlook does). ``script``
    answers chosen requests (by subject) first."""

    def __init__(self, latency: float, cap: int = 4) -> None:
        self.latency, self.cap = latency, cap
        self.now: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.count_lock = threading.Lock()
        self.script: dict[str, list[Answer]] = {}
        super().__init__(self.answer)
        # socketserver listens with a backlog of 5: more simultaneous connects than that would
        # wait for a SYN retransmit (1 s) and hide the concurrency under test.
        self.httpd.socket.listen(64)

    def answer(self, r: Request) -> Answer:
        box = r.path.split("/")[3] if "/users/" in r.path else "me"
        subject = json.loads(r.body)["message"]["subject"] if r.body else r.path
        scripted = self.script.get(subject)
        if scripted:
            return scripted.pop(0)
        with self.count_lock:
            self.now[box] = self.now.get(box, 0) + 1
            self.peak[box] = max(self.peak.get(box, 0), self.now[box])
            over = self.now[box] > self.cap
        try:
            if over:
                return error(429, "ApplicationThrottled")
            time.sleep(self.latency)
            return Answer(202)
        finally:
            with self.count_lock:
                self.now[box] -= 1


@pytest.fixture
def boxes() -> Iterator[Mailboxes]:
    server = Mailboxes(latency=0.15)
    yield server
    server.close()


def test_i11_bulk_per_mailbox_cap_holds_for_send_mail_items(
    boxes: Mailboxes, send_many: Runner
) -> None:
    items: list[Any] = [Message(f"me-{i}", "b", to="a@b.com") for i in range(10)]
    items += [("bob@contoso.com", Message(f"bob-{i}", "b", to="a@b.com")) for i in range(10)]
    items += [f"draft-{i}" for i in range(4)]  # sends share the /me cap with the sendMail items
    results = send_many(boxes.base_url, "tok", items, max_per_mailbox=4)
    assert all(isinstance(r, Receipt) for r in results)
    assert boxes.peak["me"] == 4 and boxes.peak["bob@contoso.com"] == 4
    assert len(boxes.requests) == 24  # nothing throttled, nothing repeated


def test_i11_bulk_send_mail_item_429_retried_after_retry_after(
    boxes: Mailboxes, send_many: Runner
) -> None:
    throttled = error(429, "ApplicationThrottled")
    throttled.headers = (*throttled.headers, ("Retry-After", "1"))
    boxes.script["slow"] = [throttled]
    start = time.monotonic()
    results = send_many(
        boxes.base_url, "tok", [Message("slow", "b", to="a@b.com"), Message("x", "b", to="c@d.e")]
    )
    took = time.monotonic() - start
    assert all(isinstance(r, Receipt) for r in results)
    slow = [r for r in boxes.requests if r.body and b'"slow"' in r.body]
    assert len(slow) == 2 and slow[1].headers["retry-attempt"] == "1"
    assert slow[0].headers["client-request-id"] == slow[1].headers["client-request-id"]
    assert 0.9 <= took < 5 * SCALE


def test_i11_bulk_send_mail_item_500_may_have_sent_not_retried(
    boxes: Mailboxes, send_many: Runner
) -> None:
    boxes.script["ambiguous"] = [error(500, "InternalServerError")]
    boxes.script["refused"] = [error(400, "ErrorInvalidRecipients")]
    items = [
        Message("ambiguous", "b", to="a@b.com"),
        Message("fine", "b", to="a@b.com"),
        Message("refused", "b", to="a@b.com"),
    ]
    results = send_many(boxes.base_url, "tok", items)
    first, second, third = results
    assert isinstance(first, graphsend.ServerError) and first.may_have_sent is True
    assert "sendMail" in str(first)
    assert isinstance(second, Receipt)
    assert isinstance(third, graphsend.BadRequestError) and third.may_have_sent is False
    assert sum(1 for r in boxes.requests if b'"ambiguous"' in r.body) == 1  # never repeated


def test_i11_bulk_stop_on_error_when_a_large_message_cannot_be_composed(
    graph: FakeGraph, send_many: Runner
) -> None:
    def big(subject: str) -> Message:
        return Message(
            subject, "b", to="a@b.com", attachments=[Attachment(b"x" * 3_500_000, name="b")]
        )

    for n in range(1, 12):
        graph.fail_upload_chunk(n, 500)
    results = send_many(
        graph.base_url,
        graph.token,
        [big("first"), Message("small", "b", to="a@b.com"), big("second")],
        stop_on_error=True,
    )
    assert all(isinstance(r, SendError) and r.may_have_sent is False for r in results)
    assert "not sent" in str(results[1]) and "not sent" in str(results[2])
    assert graph.delivered() == []
    assert len([r for r in graph.requests if r.path.endswith("/messages")]) == 1  # no 2nd draft


def test_i11_bulk_interrupted_while_composing_keeps_the_record(graph: FakeGraph) -> None:
    big = Message("big", "b", to="a@b.com", attachments=[Attachment(b"x" * 3_500_000, name="b")])

    async def main() -> None:
        async with AsyncClient(graph.token, base_url=graph.base_url, http2=False) as c:
            # Its chunk is refused with Retry-After: 2; the cancel comes during that wait.
            graph.fail_upload_chunk(1, 503, retry_after=2)
            task = asyncio.ensure_future(c.send_many([Message("small", "b", to="a@b.com"), big]))
            while not any(r.method == "PUT" and r.status == 503 for r in graph.requests):
                await asyncio.sleep(0.001)
            task.cancel()
            with pytest.raises(asyncio.CancelledError) as info:
                await task
            results = graphsend.interrupted_results(info.value)
            assert results is not None and len(results) == 2
            assert all(isinstance(r, SendError) and not r.may_have_sent for r in results)
            assert len([r for r in graph.requests if r.method == "PUT"]) == 1

    asyncio.run(main())
    assert graph.delivered() == []

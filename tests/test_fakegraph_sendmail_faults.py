"""Issue 11, FakeGraph: sendMail is a send. fail_next, reset_next, stall_next, latency and
mailbox_concurrency_limit apply to POST .../sendMail exactly as to a draft's /send, so tests of
sendMail's faults need no recording server. Names: test_i11_fakegraph_sendmail_<what>."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator

import pytest

import graphsend
from graphsend import Client, Message
from graphsend.testing import FakeGraph

FAST = graphsend.Retry(backoff_base=0.01, backoff_max=0.02)


@pytest.fixture
def client(graph: FakeGraph) -> Iterator[Client]:
    with Client(graph.token, base_url=graph.base_url, http2=False, retry=FAST) as c:
        yield c


def send_mails(graph: FakeGraph) -> list[graphsend.testing.RecordedRequest]:
    return [r for r in graph.requests if r.path.endswith("/sendMail")]


def test_i11_fakegraph_sendmail_fail_next_fails_it_and_sends_nothing(
    graph: FakeGraph, client: Client
) -> None:
    graph.fail_next(500, "InternalServerError")
    with pytest.raises(graphsend.ServerError) as info:
        client.send_mail(Message("s", "b", to="a@b.c"))
    assert info.value.may_have_sent is True and info.value.code == "InternalServerError"
    assert len(send_mails(graph)) == 1  # an ambiguous sendMail is not repeated
    assert graph.delivered() == [] and graph.pending_faults == 0


def test_i11_fakegraph_sendmail_503_is_retried_then_sent_once(
    graph: FakeGraph, client: Client
) -> None:
    graph.fail_next(503, retry_after=0)
    receipt = client.send_mail(Message("s", "b", to="a@b.c"))
    assert receipt.status == 202
    first, second = send_mails(graph)
    assert (first.status, second.status) == (503, 202)
    assert second.headers["retry-attempt"] == "1"
    assert [m.subject for m in graph.delivered()] == ["s"]


def test_i11_fakegraph_sendmail_2xx_fault_sends_and_is_not_retried(
    graph: FakeGraph, client: Client
) -> None:
    graph.fail_next(202, retry_after=5)
    receipt = client.send_mail(Message("s", "b", to="a@b.c"))
    assert receipt.status == 202 and len(send_mails(graph)) == 1
    assert len(graph.delivered()) == 1 and graph.pending_faults == 0


def test_i11_fakegraph_sendmail_reset_and_stall(graph: FakeGraph) -> None:
    graph.reset_next()
    with Client(graph.token, base_url=graph.base_url, http2=False, retry=FAST) as c:
        with pytest.raises(graphsend.TransportError) as info:
            c.send_mail(Message("s", to="a@b.c"))
    assert info.value.may_have_sent is True
    graph.stall_next()
    with Client(graph.token, base_url=graph.base_url, http2=False, timeout=0.5) as c:
        with pytest.raises(graphsend.TransportError) as stalled:
            c.send_mail(Message("s", to="a@b.c"))
    assert stalled.value.may_have_sent is True
    assert graph.delivered() == []
    reset, stall = send_mails(graph)
    assert reset.outcome == "reset" and stall.outcome in ("stalled", "disconnected")


def test_i11_fakegraph_sendmail_fault_for_one_user_only(graph: FakeGraph, client: Client) -> None:
    graph.add_mailbox("carol@contoso.com")
    graph.fail_next(403, "ErrorSendAsDenied", user="carol@contoso.com")
    assert client.send_mail(Message("s", to="a@b.c")).status == 202  # me: untouched
    with pytest.raises(graphsend.SendError) as info:
        client.send_mail(Message("s", to="a@b.c"), user="carol@contoso.com")
    assert info.value.code == "ErrorSendAsDenied" and info.value.may_have_sent is False
    assert len(graph.delivered()) == 1


def test_i11_fakegraph_sendmail_over_the_mailbox_concurrency_limit_is_throttled(
    graph: FakeGraph,
) -> None:
    graph.mailbox_concurrency_limit = 1
    graph.throttle_retry_after = 7
    graph.latency = 0.5
    body = json.dumps({"message": {"subject": "s", "toRecipients": []}}).encode()
    answers: list[tuple[int, str | None, bytes]] = []
    started = threading.Barrier(2)

    def post() -> None:
        conn = http.client.HTTPConnection(graph.host, graph.port, timeout=10)
        started.wait()
        headers = {"Authorization": f"Bearer {graph.token}", "Content-Type": "application/json"}
        conn.request("POST", "/v1.0/me/sendMail", body, headers)
        response = conn.getresponse()
        answers.append((response.status, response.getheader("Retry-After"), response.read()))
        conn.close()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(a[0] for a in answers) == [202, 429]
    throttled = next(a for a in answers if a[0] == 429)
    assert throttled[1] == "7" and b"ApplicationThrottled" in throttled[2]
    assert len(graph.delivered()) == 1


def test_i11_fakegraph_sendmail_limit_is_respected_by_send_many(graph: FakeGraph) -> None:
    graph.mailbox_concurrency_limit = 2
    graph.throttle_retry_after = 0.05
    graph.latency = 0.05
    messages = [Message(f"m{i}", "b", to="a@b.c") for i in range(12)]
    patient = graphsend.Retry(max_attempts=30, backoff_base=0.01, backoff_max=0.02)
    with Client(graph.token, base_url=graph.base_url, http2=False, retry=patient) as c:
        results = c.send_many(messages, max_per_mailbox=4)
    assert all(isinstance(r, graphsend.Receipt) for r in results), results
    statuses = [r.status for r in send_mails(graph)]
    assert 429 in statuses  # four at once against a limit of two
    assert statuses.count(202) == 12
    assert sorted(m.subject for m in graph.delivered()) == sorted(m.subject for m in messages)

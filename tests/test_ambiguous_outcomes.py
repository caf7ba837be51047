"""An item one attempt of which may have reached Graph is never reported "not sent", whatever
ends it before its next attempt: the batch stopping (stop_on_error, a cancel, a progress
callback that raises), the token provider failing, the limiter failing. Each case reported
``may_have_sent=False`` for a message FakeGraph had delivered before its fix, inviting a
duplicate (and, with a journal, recording it as failed: a rerun sent it again)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

import graphsend
from graphsend.testing import FakeGraph

A, B = "a@contoso.com", "b@contoso.com"
# 504 after the send went through, and 2 s before the retry: the item waits in its queue.
AMBIGUOUS = {"deliver": True, "retry_after": 2, "user": A}


def _retry() -> graphsend.Retry:
    return graphsend.Retry(retry_ambiguous=True, max_attempts=3)


def _check_maybe_sent(got: object) -> None:
    assert isinstance(got, graphsend.SendError), got
    assert got.may_have_sent, f"delivered, yet reported not sent: {got!r}"


def test_stop_on_error_while_a_delivered_item_waits_for_its_retry() -> None:
    with FakeGraph() as graph:
        graph.set_latency(B, 0.5)  # B fails once A waits for its retry
        a = graph.create_drafts(1, user=A)[0]
        b = graph.create_drafts(1, user=B)[0]
        graph.fail_next(504, **AMBIGUOUS)  # type: ignore[arg-type]
        graph.fail_next(400, user=B)
        with graphsend.Client(graph.token, base_url=graph.base_url, retry=_retry()) as client:
            results = client.send_many([(A, a), (B, b)], stop_on_error=True)
        assert len(graph.sent_items(A)) == 1
    _check_maybe_sent(results[0])
    assert isinstance(results[1], graphsend.BadRequestError)


def test_the_batch_stops_while_a_delivered_items_retry_is_in_flight() -> None:
    """A's first attempt delivered it (504); its retry is in flight when B's 400 stops the batch;
    the retry's answer (a 503, retryable) is then final: it must still say A may be out."""
    with FakeGraph() as graph:
        graph.set_latency(A, 0.5)
        graph.set_latency(B, 0.7)  # B's 400 arrives while A's retry is in flight
        a = graph.create_drafts(1, user=A)[0]
        b = graph.create_drafts(1, user=B)[0]
        graph.fail_next(504, deliver=True, retry_after=0, user=A)
        graph.fail_next(503, user=A)
        graph.fail_next(400, user=B)
        with graphsend.Client(graph.token, base_url=graph.base_url, retry=_retry()) as client:
            results = client.send_many([(A, a), (B, b)], stop_on_error=True)
        assert len(graph.sent_items(A)) == 1
        assert len([r for r in graph.requests if r.message_id == a]) == 2  # the retry went out
    assert isinstance(results[0], graphsend.ServiceUnavailableError)
    _check_maybe_sent(results[0])


def test_a_progress_that_raises_while_a_delivered_item_waits_for_its_retry() -> None:
    with FakeGraph() as graph:
        graph.set_latency(B, 0.5)
        a = graph.create_drafts(1, user=A)[0]
        b = graph.create_drafts(1, user=B)[0]
        graph.fail_next(504, **AMBIGUOUS)  # type: ignore[arg-type]

        def progress(done: int, total: int) -> None:
            raise RuntimeError("the progress bar broke")

        with graphsend.Client(graph.token, base_url=graph.base_url, retry=_retry()) as client:
            with pytest.raises(RuntimeError) as raised:
                client.send_many([(A, a), (B, b)], progress=progress)
        assert len(graph.sent_items(A)) == 1
    results = graphsend.interrupted_results(raised.value)
    assert results is not None
    _check_maybe_sent(results[0])


def test_an_async_send_many_cancelled_while_a_delivered_item_waits_for_its_retry() -> None:
    with FakeGraph() as graph:
        a = graph.create_drafts(1, user=A)[0]
        graph.fail_next(504, **AMBIGUOUS)  # type: ignore[arg-type]

        async def main() -> list[object] | None:
            async with graphsend.AsyncClient(
                graph.token, base_url=graph.base_url, retry=_retry()
            ) as client:
                task = asyncio.ensure_future(client.send_many([(A, a)]))
                while not graph.sent_items(A):
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.2)  # the 504 is in: the item waits for its retry
                task.cancel()
                with pytest.raises(asyncio.CancelledError) as raised:
                    await task
                return graphsend.interrupted_results(raised.value)  # type: ignore[return-value]

        results = asyncio.run(main())
        assert len(graph.sent_items(A)) == 1
    assert results is not None
    _check_maybe_sent(results[0])


def test_a_token_provider_that_fails_at_the_retry_of_a_delivered_item(tmp_path: Path) -> None:
    calls = 0

    def token() -> str:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError("the identity endpoint is down")
        return "t"

    journal = tmp_path / "run.journal"
    with FakeGraph(token="t") as graph:
        a = graph.create_drafts(1, user=A)[0]
        graph.fail_next(504, **AMBIGUOUS)  # type: ignore[arg-type]
        with graphsend.Client(token, base_url=graph.base_url, retry=_retry()) as client:
            results = client.send_many([(A, a)], journal=journal)
        assert len(graph.sent_items(A)) == 1
        got = results[0]
        assert isinstance(got, graphsend.AuthenticationError), got
        _check_maybe_sent(got)
        # The journal says so too: a rerun asks the mailbox (which cannot tell, for a draft
        # not made by graphsend) and never sends it again.
        with graphsend.Client("t", base_url=graph.base_url) as client:
            again = client.send_many([(A, a)], journal=journal)
        _check_maybe_sent(again[0])
        assert [r.path.endswith("/send") for r in graph.requests].count(True) == 1


class _FailingAfterFirst:
    """A limiter (the public protocol) whose store goes away after the first grant."""

    def __init__(self) -> None:
        self.inner = graphsend.LocalLimiter()
        self.asked = 0

    def acquire(
        self, mailbox: str, count: int = 1, *, sends: bool = True
    ) -> tuple[list[object], float]:
        self.asked += 1
        if self.asked > 1:
            raise graphsend.LimiterError("the limiter's store is unreachable; nothing was sent")
        return self.inner.acquire(mailbox, count, sends=sends)

    def release(self, slots: Sequence[object], *, used: bool = True) -> None:
        self.inner.release(slots, used=used)


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_limiter_that_fails_at_the_retry_of_a_delivered_item(driver: str) -> None:
    limiter = _FailingAfterFirst()
    with FakeGraph() as graph:
        a = graph.create_drafts(1, user=A)[0]
        graph.fail_next(504, **AMBIGUOUS)  # type: ignore[arg-type]
        kw = {"base_url": graph.base_url, "retry": _retry(), "limiter": limiter}
        if driver == "sync":
            with graphsend.Client(graph.token, **kw) as client:  # type: ignore[arg-type]
                results = client.send_many([(A, a)])
        else:

            async def main() -> list[graphsend.Receipt | graphsend.SendError]:
                async with graphsend.AsyncClient(graph.token, **kw) as client:  # type: ignore[arg-type]
                    return await client.send_many([(A, a)])

            results = asyncio.run(main())
        assert len(graph.sent_items(A)) == 1
    got = results[0]
    assert isinstance(got, graphsend.LimiterError), got
    _check_maybe_sent(got)

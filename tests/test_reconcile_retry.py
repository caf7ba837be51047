"""Issue 12 part A, the retry side: Retry(reconcile_ambiguous=True) settles a send that may have
gone out by reading the mailbox, in Client.send, send_message, send_many and AsyncClient; the
chaos run (2,000 drafts, 50 mailboxes, 10 % of sends faulted, both before and after delivery)
sends every draft exactly once. Test names: test_i12_<what>."""

from __future__ import annotations

import asyncio
import os
import pickle
import time

import pytest

import graphsend
from graphsend import AsyncClient, Client, Receipt, Retry, SendError
from graphsend.testing import FakeGraph

SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))
DELAY = 0.2  # FakeGraph's send pipeline: 202 -> Sent Items
WAIT = 1.0  # the settling time the client gives it (well above DELAY)
RECONCILE = Retry(
    reconcile_ambiguous=True, reconcile_wait=WAIT * SCALE, backoff_base=0.01, backoff_max=0.05
)


def client_for(graph: FakeGraph, retry: Retry = RECONCILE, **kw: object) -> Client:
    return Client(
        graph.token,
        base_url=graph.base_url,
        http2=False,
        timeout=kw.pop("timeout", 1.0 * SCALE),  # type: ignore[arg-type]
        retry=retry,
        **kw,  # type: ignore[arg-type]
    )


def sends(graph: FakeGraph) -> list[str]:
    """The client-request-id of each send request FakeGraph received, in order."""
    return [r.client_request_id or "" for r in graph.requests if r.path.endswith("/send")]


def settle_pipeline(graph: FakeGraph, drafts: list[str]) -> None:
    deadline = time.monotonic() + 10
    while any(graph.processing(d) for d in drafts) and time.monotonic() < deadline:
        time.sleep(0.05)


# --- the policy -------------------------------------------------------------------------------


def test_i12_retry_checks_its_new_arguments() -> None:
    with pytest.raises(TypeError, match="reconcile_ambiguous"):
        Retry(reconcile_ambiguous=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="reconcile_wait"):
        Retry(reconcile_wait="60")  # type: ignore[arg-type]
    for bad in (float("inf"), float("nan"), -1.0):
        with pytest.raises(ValueError, match="reconcile_wait"):
            Retry(reconcile_wait=bad)
    policy = Retry(reconcile_ambiguous=True, reconcile_wait=5)
    assert policy.reconcile_wait == 5.0 and "reconcile_ambiguous=True" in repr(policy)
    assert Retry().reconcile_ambiguous is False and Retry().reconcile_wait == 60.0


# --- Client.send --------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["504", "reset", "stall"])
def test_i12_send_delivered_then_answer_lost_returns_a_reconciled_receipt(
    graph: FakeGraph, fault: str
) -> None:
    graph.sent_items_delay = DELAY
    with client_for(graph) as client:
        draft = client.create_draft(graphsend.Message("x", "b", to="a@b.com"), user="bob@x.com")
        {"504": lambda: graph.fail_next(504, deliver=True),
         "reset": lambda: graph.reset_next(deliver=True),
         "stall": lambda: graph.stall_next(deliver=True)}[fault]()  # fmt: skip
        receipt = client.send(draft, user="bob@x.com")
    assert isinstance(receipt, Receipt) and receipt.reconciled is True
    assert (receipt.message_id, receipt.user, receipt.status) == (draft, "bob@x.com", 202)
    assert len(sends(graph)) == 1 and receipt.client_request_id == sends(graph)[0]
    settle_pipeline(graph, [draft])
    assert graph.send_count(draft) == 1 and len(graph.sent_items()) == 1


@pytest.mark.parametrize("fault", ["504", "reset", "stall"])
def test_i12_send_lost_before_delivery_is_sent_again_once_proved_unsent(
    graph: FakeGraph, fault: str
) -> None:
    draft = graph.create_draft(immutable_id=True)
    {"504": lambda: graph.fail_next(504),
     "reset": lambda: graph.reset_next(),
     "stall": lambda: graph.stall_next()}[fault]()  # fmt: skip
    with client_for(graph) as client:
        started = time.monotonic()
        receipt = client.send(draft)
    assert receipt.reconciled is False and receipt.message_id == draft
    first, second = sends(graph)  # resent once, with the same client-request-id
    assert first == second == receipt.client_request_id
    resend = [r for r in graph.requests if r.path.endswith("/send")][1]
    assert resend.headers.get("retry-attempt") == "1"
    assert resend.received_at - started >= WAIT * SCALE  # not before the settling time
    assert graph.send_count(draft) == 1


def test_i12_without_reconciling_the_same_faults_raise_or_duplicate(graph: FakeGraph) -> None:
    """What the option fixes: by default an ambiguous send raises (a mail that went out is
    reported failed); retry_ambiguous resends blindly (a duplicate)."""
    graph.sent_items_delay = DELAY
    draft = graph.create_draft(immutable_id=True)
    graph.fail_next(504, deliver=True)
    with client_for(graph, Retry()) as client, pytest.raises(graphsend.ServerError):
        client.send(draft)
    assert graph.send_count(draft) == 1
    draft = graph.create_draft(immutable_id=True)
    graph.fail_next(504, deliver=True)
    blind = Retry(retry_ambiguous=True, backoff_base=0.01, backoff_max=0.02)
    with client_for(graph, blind) as client:
        client.send(draft)
    assert graph.send_count(draft) == 2  # the duplicate users report


def test_i12_a_processing_draft_is_not_resent_before_the_settling_time(graph: FakeGraph) -> None:
    graph.sent_items_delay = 0.6 * SCALE  # the draft reads isDraft: true this long after its 202
    draft = graph.create_draft(immutable_id=True)
    graph.fail_next(504, deliver=True)
    retry = Retry(reconcile_ambiguous=True, reconcile_wait=2.0 * SCALE)
    with client_for(graph, retry) as client:
        receipt = client.send(draft)
    assert receipt.reconciled is True
    gets = [r for r in graph.requests if r.method == "GET"]
    assert len(gets) >= 2  # it read the unsent draft at least once and did not resend it
    assert len(sends(graph)) == 1 and graph.send_count(draft) == 1


def test_i12_a_settling_time_shorter_than_the_pipeline_is_the_limit(graph: FakeGraph) -> None:
    """The honest limit, and proof that the test above can fail: a mailbox that takes longer
    than reconcile_wait to move the sent draft looks unsent, and the draft goes out again."""
    graph.sent_items_delay = 1.5 * SCALE
    draft = graph.create_draft(immutable_id=True)
    graph.fail_next(504, deliver=True)
    retry = Retry(reconcile_ambiguous=True, reconcile_wait=0.3 * SCALE)
    with client_for(graph, retry) as client:
        client.send(draft)
    assert graph.send_count(draft) == 2


def test_i12_403_on_reads_is_unknown_and_nothing_is_resent(graph: FakeGraph) -> None:
    graph.deny_reads = True
    draft = graph.create_draft(immutable_id=True)
    graph.stall_next()  # lost before delivery: a resend would be safe, but nobody can tell
    with client_for(graph) as client, pytest.raises(graphsend.TimeoutError) as info:
        client.send(draft)
    assert info.value.may_have_sent is True and "could not tell" in str(info.value)
    assert len(sends(graph)) == 1 and graph.send_count(draft) == 0
    # The same in bulk and in asyncio.
    drafts = [graph.create_draft(f"u{i}@x.com", immutable_id=True) for i in range(3)]
    graph.fail_next(504, count=3)
    with client_for(graph) as client:
        results = client.send_many([(f"u{i}@x.com", d) for i, d in enumerate(drafts)])
    assert all(isinstance(r, graphsend.ServerError) and r.may_have_sent for r in results)

    async def one() -> BaseException:
        async with AsyncClient(graph.token, base_url=graph.base_url, retry=RECONCILE) as c:
            graph.fail_next(504)
            try:
                await c.send(drafts[0], user="u0@x.com")
            except SendError as exc:
                return exc
        raise AssertionError("sent")

    assert asyncio.run(one()).may_have_sent is True
    assert len(sends(graph)) == 1 + 3 + 1
    assert all(graph.send_count(d) == 0 for d in drafts)


def test_i12_proved_unsent_with_no_attempt_left_says_it_was_not_sent(graph: FakeGraph) -> None:
    draft = graph.create_draft(immutable_id=True)
    graph.fail_next(504)
    retry = Retry(max_attempts=1, reconcile_ambiguous=True, reconcile_wait=0.3 * SCALE)
    with client_for(graph, retry) as client, pytest.raises(graphsend.ServerError) as info:
        client.send(draft)
    assert info.value.may_have_sent is False and "not sent" in str(info.value)
    assert len(sends(graph)) == 1 and graph.send_count(draft) == 0


def test_i12_send_message_reconciles_with_its_retry_argument(graph: FakeGraph) -> None:
    graph.sent_items_delay = DELAY
    draft = graph.create_draft(immutable_id=True)
    graph.fail_next(504, deliver=True)
    receipt = graphsend.send_message(
        draft, token=graph.token, base_url=graph.base_url, retry=RECONCILE
    )
    assert receipt.reconciled is True and receipt.message_id == draft
    draft = graph.create_draft(immutable_id=True)
    graph.reset_next()
    receipt = graphsend.send_message(
        draft, token=graph.token, base_url=graph.base_url, retry=RECONCILE
    )
    assert receipt.reconciled is False and graph.send_count(draft) == 1
    with pytest.raises(TypeError, match="retry"):
        graphsend.send_message(draft, token=graph.token, base_url=graph.base_url, retry=3)  # type: ignore[arg-type]


# --- Receipt ----------------------------------------------------------------------------------


def test_i12_receipts_name_their_item_on_every_path(graph: FakeGraph) -> None:
    with client_for(graph, Retry()) as client:
        a = graph.create_draft()
        receipt = client.send(a)  # the C fast path
        assert (receipt.message_id, receipt.user, receipt.reconciled) == (a, None, False)
        b = graph.create_draft("bob@x.com")
        (bulk,) = client.send_many([("bob@x.com", b)])
        assert isinstance(bulk, Receipt) and (bulk.message_id, bulk.user) == (b, "bob@x.com")
        mail = client.send_mail(graphsend.Message("x", "b", to="a@b.com"), user="bob@x.com")
        assert (mail.message_id, mail.user) == (None, "bob@x.com")
        c = graph.create_draft()
        graph.fail_next(503, retry_after=0)
        retried = client.send(c)  # the Python path after a retry
        assert (retried.message_id, retried.user) == (c, None)
    copy = pickle.loads(pickle.dumps(bulk))
    assert copy == bulk and copy.user == "bob@x.com" and type(copy) is Receipt
    assert "message_id=" in repr(bulk) and "reconciled=False" in repr(bulk)
    assert Receipt(202, None, "c", None, 0.1).message_id is None  # the old five fields still do


# --- send_many and AsyncClient ----------------------------------------------------------------


def test_i12_chaos_2000_drafts_50_mailboxes_10_percent_faults_exactly_once(
    graph: FakeGraph,
) -> None:
    graph.sent_items_delay = DELAY
    users = [f"user{i}@contoso.com" for i in range(50)]
    items = [(u, graph.create_draft(u, immutable_id=True)) for u in users for _ in range(40)]
    drafts = [d for _, d in items]
    graph.random_faults(0.10, seed=12)
    started = time.monotonic()
    with client_for(graph) as client:
        results = client.send_many(items)
    elapsed = time.monotonic() - started
    graph.random_faults(0)
    applied = graph.random_faults_applied()
    delivered = sum(n for kind, n in applied.items() if kind.startswith("delivered"))
    lost = sum(n for kind, n in applied.items() if kind.startswith("lost"))
    assert delivered > 40 and lost > 40  # both kinds, about 10 % of ~2,200 sends
    assert all(isinstance(r, Receipt) for r in results), [
        r for r in results if not isinstance(r, Receipt)
    ][:3]
    assert [(r.user, r.message_id) for r in results] == items  # type: ignore[union-attr]
    # Each delivered-then-lost send came back as a reconciled Receipt, and only those.
    assert sum(r.reconciled for r in results) == delivered  # type: ignore[union-attr]
    settle_pipeline(graph, drafts)
    counts = graph.send_counts()
    assert [counts.get(d, 0) for d in drafts] == [1] * 2000  # every draft sent exactly once
    assert sorted(m.id for m in graph.sent_items()) == sorted(drafts)
    assert elapsed < 30 * SCALE


def test_i12_send_many_stopped_while_reconciling_reports_may_have_sent(graph: FakeGraph) -> None:
    slow = graph.create_draft("slow@x.com", immutable_id=True)
    fast = graph.create_draft("fast@x.com", immutable_id=True)
    graph.fail_next(504, user="slow@x.com")  # lost: the draft reads unsent for the whole wait
    graph.set_latency("fast@x.com", 0.3)
    retry = Retry(reconcile_ambiguous=True, reconcile_wait=10.0 * SCALE)

    def progress(done: int, total: int) -> None:
        raise RuntimeError("stop")

    started = time.monotonic()
    with client_for(graph, retry) as client, pytest.raises(RuntimeError) as info:
        client.send_many([("slow@x.com", slow), ("fast@x.com", fast)], progress=progress)
    assert time.monotonic() - started < 5 * SCALE  # the reconciliation did not hold the stop
    results = graphsend.interrupted_results(info.value)
    assert results is not None
    first, second = results
    assert isinstance(first, graphsend.ServerError) and first.may_have_sent is True
    assert isinstance(second, Receipt)


def test_i12_async_send_many_and_send_reconcile(graph: FakeGraph) -> None:
    graph.sent_items_delay = DELAY
    users = [f"a{i}@contoso.com" for i in range(10)]
    items = [(u, graph.create_draft(u, immutable_id=True)) for u in users for _ in range(20)]
    singles = [(u, graph.create_draft(u, immutable_id=True)) for u in users]
    graph.random_faults(0.15, seed=5)

    async def main() -> list[Receipt | SendError]:
        async with AsyncClient(
            graph.token, base_url=graph.base_url, timeout=1.0 * SCALE, retry=RECONCILE
        ) as client:
            results = await client.send_many(items)
            one = await asyncio.gather(*(client.send(d, user=u) for u, d in singles))
            return [*results, *one]

    results = asyncio.run(main())
    graph.random_faults(0)
    applied = graph.random_faults_applied()
    assert all(isinstance(r, Receipt) for r in results)
    delivered = sum(n for kind, n in applied.items() if kind.startswith("delivered"))
    assert delivered > 0 and sum(r.reconciled for r in results) == delivered  # type: ignore[union-attr]
    drafts = [d for _, d in items + singles]
    settle_pipeline(graph, drafts)
    assert [graph.send_count(d) for d in drafts] == [1] * len(drafts)


@pytest.mark.default_feature
def test_i12_chaos_over_http2_where_a_reset_fails_every_stream_of_the_connection() -> None:
    """Over HTTP/2 a reset kills every request in flight on the connection, the reads that are
    reconciling other sends included: a failed read is read again, never taken as proof."""
    pytest.importorskip("cryptography")
    pytest.importorskip("h2")
    with FakeGraph(https=True, http2=True) as graph:
        graph.sent_items_delay = DELAY
        users = [f"h{i}@contoso.com" for i in range(20)]
        items = [(u, graph.create_draft(u, immutable_id=True)) for u in users for _ in range(25)]
        graph.random_faults(0.10, seed=3)
        with Client(
            graph.token,
            base_url=graph.base_url,
            ca_bundle=graph.ca_bundle,
            timeout=1.0 * SCALE,
            retry=RECONCILE,
        ) as client:
            results = client.send_many(items)
        graph.random_faults(0)
        assert {r.http_version for r in graph.requests} == {"HTTP/2"}
        assert all(isinstance(r, Receipt) for r in results), [
            r for r in results if not isinstance(r, Receipt)
        ][:3]
        drafts = [d for _, d in items]
        settle_pipeline(graph, drafts)
        assert [graph.send_count(d) for d in drafts] == [1] * len(drafts)


class _ReadsRefused(graphsend.LocalLimiter):
    """A limiter whose store went away after the send: every read's slot is refused (what a
    RedisLimiter without a fallback does once Redis is unreachable)."""

    def acquire(
        self, mailbox: str, count: int = 1, *, sends: bool = True
    ) -> tuple[list[object], float]:
        if not sends:
            raise graphsend.LimiterError("the mailbox limiter's store is unreachable")
        return super().acquire(mailbox, count, sends=sends)


def test_a_refused_read_slot_is_a_failed_read_not_nothing_sent(graph: FakeGraph) -> None:
    """The send went out and its answer was lost; the reads that would tell cannot get a slot:
    the verdict is "unknown", so the item may have been sent (never LimiterError's "nothing was
    sent"), and nothing is resent."""
    graph.sent_items_delay = DELAY
    draft = graph.create_draft("adele@contoso.com", immutable_id=True)
    graph.fail_next(504, "GatewayTimeout", deliver=True)
    with client_for(graph, limiter=_ReadsRefused()) as client:
        (result,) = client.send_many([("adele@contoso.com", draft)])
    assert isinstance(result, graphsend.SendError)
    assert result.may_have_sent is True, repr(result)
    assert graph.send_count(draft) == 1

"""Issue 12 part A: Client.reconcile / AsyncClient.reconcile ask the mailbox whether an
ambiguous send went out; every graphsend draft carries one stamp; FakeGraph models the send
pipeline's delay, immutable and changing ids, reads with $select and the stamp $filter, 403 on
reads, and per-draft send counts. Test names: test_i12_<what>."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

import graphsend
from graphsend import AsyncClient, Client, Message
from graphsend._operations.reconcile import STAMP_ID
from graphsend.testing import FakeGraph

QUICK = graphsend.Retry(backoff_base=0.01, backoff_max=0.02)
SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))


@pytest.fixture
def client(graph: FakeGraph) -> Iterator[Client]:
    with Client(graph.token, base_url=graph.base_url, http2=False, retry=QUICK) as c:
        yield c


def get(graph: FakeGraph, target: str, **headers: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        graph.base_url + target, headers={"Authorization": f"Bearer {graph.token}", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def stamp_of(graph: FakeGraph, draft_id: str, user: str | None = None) -> str:
    (value,) = [v for i, v in graph.message(draft_id, user).extended_properties if i == STAMP_ID]
    return value


def stamp_filter(stamp: str) -> str:
    expr = f"singleValueExtendedProperties/Any(ep: ep/id eq '{STAMP_ID}' and ep/value eq '{stamp}')"
    return "/v1.0/me/mailFolders/sentitems/messages?$filter=" + quote(expr)


# --- FakeGraph --------------------------------------------------------------------------------


def test_i12_fakegraph_send_pipeline_delay_keeps_the_draft_unsent_then_moves_it(
    graph: FakeGraph, client: Client
) -> None:
    graph.sent_items_delay = 0.4 * SCALE
    draft = client.create_draft(Message("Later", "b", to="a@b.com"))
    client.send(draft)
    assert graph.processing(draft)
    status, doc = get(graph, f"/v1.0/me/messages/{quote(draft, safe='')}?$select=isDraft")
    assert (status, doc["isDraft"]) == (200, True)
    assert graph.sent_items() == [] and graph.send_count(draft) == 1
    # A second send inside the window goes out again: the duplicate a blind retry makes.
    client.send(draft)
    assert graph.send_count(draft) == 2
    time.sleep(0.5 * SCALE)
    assert not graph.processing(draft)
    status, doc = get(graph, f"/v1.0/me/messages/{quote(draft, safe='')}?$select=isDraft")
    assert (status, doc["isDraft"]) == (200, False)  # immutable id: found in Sent Items
    assert [m.id for m in graph.sent_items()] == [draft, draft]


def test_i12_fakegraph_filters_sent_items_on_the_stamp_and_refuses_other_filters(
    graph: FakeGraph,
) -> None:
    with Client(graph.token, base_url=graph.base_url, immutable_ids=False) as client:
        draft = client.create_draft(Message("Stamped", "b", to="a@b.com"))
        other = client.create_draft(Message("Other", "b", to="a@b.com"))
        stamp = stamp_of(graph, draft)
        client.send(draft)
        client.send(other)
    sent = graph.message(graph.sent_items()[0].sent_id or "")
    assert sent.sent_id != draft  # without the Prefer header the id changes on send
    status, doc = get(graph, stamp_filter(stamp))
    assert status == 200 and [m["id"] for m in doc["value"]] == [sent.sent_id]
    assert get(graph, stamp_filter("nope"))[1]["value"] == []
    status, doc = get(graph, "/v1.0/me/mailFolders/sentitems/messages?$filter=subject%20eq%20'x'")
    assert status == 400 and doc["error"]["code"] == "BadRequest"


def test_i12_fakegraph_deny_reads_answers_403_in_graphs_shape(
    graph: FakeGraph, client: Client
) -> None:
    draft = client.create_draft(Message("x", "b", to="a@b.com"))
    graph.deny_reads = True
    status, doc = get(graph, f"/v1.0/me/messages/{quote(draft, safe='')}")
    assert status == 403 and doc["error"]["code"] == "ErrorAccessDenied"
    status, doc = get(graph, "/v1.0/me/mailFolders/sentitems/messages")
    assert status == 403
    client.send(draft)  # sending is not reading
    assert graph.send_count(draft) == 1


@pytest.mark.parametrize("fault", ["504", "reset", "stall"])
def test_i12_fakegraph_faults_that_deliver_then_lose_the_answer(
    graph: FakeGraph, fault: str
) -> None:
    draft = graph.create_draft(immutable_id=True)
    if fault == "504":
        graph.fail_next(504, deliver=True)
    elif fault == "reset":
        graph.reset_next(deliver=True)
    else:
        graph.stall_next(deliver=True)
    with Client(graph.token, base_url=graph.base_url, timeout=0.5) as client:
        with pytest.raises(graphsend.SendError) as info:
            client.send(draft)
    assert info.value.may_have_sent
    assert graph.send_count(draft) == 1 and [m.id for m in graph.sent_items()] == [draft]


def test_i12_fakegraph_random_faults_draw_both_kinds(graph: FakeGraph) -> None:
    drafts = graph.create_drafts(200)
    graph.random_faults(0.5, kinds=["lost-503", "delivered-504"], seed=7)
    with Client(graph.token, base_url=graph.base_url, retry=graphsend.Retry(max_attempts=1)) as c:
        results = c.send_many(drafts)
    applied = graph.random_faults_applied()
    assert applied["lost-503"] > 20 and applied["delivered-504"] > 20
    sent = sum(graph.send_count(d) for d in drafts)
    failed_503 = sum(isinstance(r, graphsend.ServiceUnavailableError) for r in results)
    assert failed_503 == applied["lost-503"]
    assert sent == 200 - applied["lost-503"]


# --- stamps -----------------------------------------------------------------------------------


def test_i12_every_draft_graphsend_makes_carries_one_stamp(
    graph: FakeGraph, client: Client
) -> None:
    original = graph.add_received(subject="Question")
    drafts = [
        client.create_draft(Message("New", "b", to="a@b.com")),
        client.create_reply(original, comment="Yes"),
        client.create_reply(original, reply_all=True),
        client.create_forward(original, to="c@d.com", comment="FYI"),
    ]
    stamps = []
    for draft in drafts:
        props = graph.message(draft).extended_properties
        assert [i for i, _ in props] == [STAMP_ID]  # one property, one fixed name
        stamps.append(props[0][1])
        assert client._stamps.get(draft) == props[0][1]
    assert len(set(stamps)) == 4  # a fresh value per draft
    assert graph.message(drafts[1]).comment == "Yes"


# --- Client.reconcile ---------------------------------------------------------------------------


def test_i12_reconcile_sent_with_an_immutable_id(graph: FakeGraph, client: Client) -> None:
    graph.sent_items_delay = 0.3
    draft = client.create_draft(Message("x", "b", to="a@b.com"))
    client.send(draft)
    started = time.monotonic()
    assert client.reconcile(draft, wait=10) == "sent"
    assert 0.25 < time.monotonic() - started < 5 * SCALE  # found once the pipeline moved it
    gets = [r for r in graph.requests if r.method == "GET"]
    assert all("%24select=isDraft" in r.path or "$select=isDraft" in r.path for r in gets)
    assert all(r.headers.get("prefer") == 'IdType="ImmutableId"' for r in gets)


def test_i12_reconcile_sent_via_the_stamp_when_the_id_changed(graph: FakeGraph) -> None:
    with Client(graph.token, base_url=graph.base_url, immutable_ids=False) as client:
        draft = client.create_draft(Message("x", "b", to="a@b.com"), user="bob@contoso.com")
        client.send(draft, user="bob@contoso.com")
        assert client.reconcile(draft, user="bob@contoso.com", wait=5) == "sent"
        paths = [r.path for r in graph.requests if r.method == "GET"]
        assert len(paths) == 2 and "sentitems" in paths[1] and "users/bob" in paths[1]
    # Another process knows the stamp only if told: without it, a 404 says nothing.
    with Client(graph.token, base_url=graph.base_url, immutable_ids=False) as fresh:
        assert fresh.reconcile(draft, user="bob@contoso.com", wait=0.5) == "unknown"
        stamp = stamp_of(
            graph, graph.sent_items("bob@contoso.com")[0].sent_id or "", "bob@contoso.com"
        )
        assert fresh.reconcile(draft, user="bob@contoso.com", wait=0.5, stamp=stamp) == "sent"


def test_i12_reconcile_not_sent_only_after_the_settling_time(
    graph: FakeGraph, client: Client
) -> None:
    draft = client.create_draft(Message("x", "b", to="a@b.com"))
    started = time.monotonic()
    assert client.reconcile(draft, wait=0.8) == "not_sent"
    assert time.monotonic() - started >= 0.8
    gets = [r for r in graph.requests if r.method == "GET"]
    assert len(gets) >= 3 and gets[-1].received_at - started >= 0.79
    assert graph.send_count(draft) == 0


def test_i12_reconcile_unknown_on_403_at_once(graph: FakeGraph, client: Client) -> None:
    draft = client.create_draft(Message("x", "b", to="a@b.com"))
    graph.deny_reads = True
    started = time.monotonic()
    assert client.reconcile(draft, wait=30 * SCALE) == "unknown"
    assert time.monotonic() - started < 5 * SCALE
    assert len([r for r in graph.requests if r.method == "GET"]) == 1


def test_i12_reconcile_unknown_for_a_deleted_draft_and_bad_input(
    graph: FakeGraph, client: Client
) -> None:
    with pytest.raises(TypeError):
        client.reconcile("x", wait="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        client.reconcile("x", wait=float("nan"))
    with pytest.raises(ValueError):
        client.reconcile("")
    assert graph.requests == []
    draft = graph.create_draft(immutable_id=True)
    graph.message(draft)
    assert client.reconcile(draft + "A", wait=5) == "unknown"  # 404, no stamp known


def test_i12_async_reconcile(graph: FakeGraph) -> None:
    graph.sent_items_delay = 0.2

    async def main() -> tuple[str, str, str]:
        async with AsyncClient(graph.token, base_url=graph.base_url, http2=False) as client:
            sent = await client.create_draft(Message("x", "b", to="a@b.com"))
            unsent = await client.create_draft(Message("y", "b", to="a@b.com"))
            await client.send(sent)
            a, b = await asyncio.gather(
                client.reconcile(sent, wait=5), client.reconcile(unsent, wait=0.5)
            )
            many = await client.reconcile_many([sent, (None, unsent)], wait=0.3)
            assert many == ["sent", "not_sent"]
            graph.deny_reads = True
            c = await client.reconcile(unsent, wait=5)
            return a, b, c

    assert asyncio.run(main()) == ("sent", "not_sent", "unknown")


def test_i12_drafts_made_by_send_many_and_async_compose_are_stamped(graph: FakeGraph) -> None:
    big = Message(
        "Big",
        "b",
        to="a@b.com",
        attachments=[graphsend.Attachment(b"x" * (3 << 20) + b"y", name="big.bin")],
    )
    with Client(graph.token, base_url=graph.base_url, http2=False) as client:
        (receipt,) = client.send_many([big])  # too large for sendMail: a draft, then its send
    assert isinstance(receipt, graphsend.Receipt) and receipt.message_id is not None
    (sent,) = graph.sent_items()
    assert sent.id == receipt.message_id and [i for i, _ in sent.extended_properties] == [STAMP_ID]
    original = graph.add_received(subject="Q")

    async def main() -> list[str]:
        async with AsyncClient(graph.token, base_url=graph.base_url, http2=False) as client:
            return [
                await client.create_draft(Message("n", "b", to="a@b.com")),
                await client.create_reply(original, comment="c"),
                await client.create_forward(original, to="c@d.com"),
            ]

    drafts = asyncio.run(main())
    stamps = {stamp_of(graph, d) for d in drafts}
    assert len(stamps) == 3


# --- the rules alone (reconcile.plan with a fake clock and canned answers) ----------------------


def run_plan(
    answers: list[tuple[int, dict[str, Any]]], wait: float, stamp: str | None = None
) -> tuple[str, list[str], float]:
    """Feed ``answers`` (status, JSON) to plan(); returns the verdict, the operations read, and
    the fake time at the end. Pauses advance the fake clock."""
    from graphsend._operations.reconcile import plan

    now = [0.0]
    steps = plan("AAMkAD=", stamp, wait, clock=lambda: now[0])
    seen: list[str] = []
    feed = iter(answers)
    result: tuple[object, ...]
    try:
        step = next(steps)
        while True:
            if step[0] == "sleep":
                assert step[1] >= 0
                now[0] += step[1]
                step = steps.send(None)
            else:
                seen.append(step[1].name)
                status, doc = next(feed, (0, {}))  # (past the canned answers: a failure)
                result = (status, {}, json.dumps(doc).encode(), 0.01, 0, "", True)
                step = steps.send(result)
    except StopIteration as done:
        return done.value, seen, now[0]


DRAFT = (200, {"isDraft": True})
SENT = (200, {"isDraft": False})
GONE = (404, {"error": {"code": "ErrorItemNotFound"}})


def test_i12_plan_not_sent_only_from_a_read_after_the_deadline() -> None:
    verdict, seen, end = run_plan([DRAFT] * 50, wait=10)
    assert verdict == "not_sent" and end >= 10 and len(seen) < 12
    verdict, seen, end = run_plan([DRAFT, DRAFT, SENT], wait=10)
    assert verdict == "sent" and len(seen) == 3 and end < 10
    assert run_plan([DRAFT], wait=0)[0] == "not_sent"  # wait=0: one read, taken as final


def test_i12_plan_unknown_cases() -> None:
    assert run_plan([(403, {"error": {"code": "ErrorAccessDenied"}})], wait=10)[:2] == (
        "unknown",
        ["getMessage"],
    )
    assert run_plan([(404, {"error": {"code": "ErrorInvalidUser"}})], wait=10)[0] == "unknown"
    assert run_plan([GONE], wait=10)[:2] == ("unknown", ["getMessage"])  # no stamp known
    unreadable = (200, {"value": 1})  # no isDraft: a read that failed, tried 3 more times
    assert run_plan([unreadable] * 4, wait=0)[:2] == ("unknown", ["getMessage"] * 4)
    verdict, seen, _ = run_plan([(503, {})] * 50, wait=2)
    assert verdict == "unknown" and seen.count("getMessage") >= 4 + 3  # 3 retries after


def test_i12_plan_follows_the_stamp_when_the_id_is_gone() -> None:
    found = (200, {"value": [{"id": "x", "isDraft": False}]})
    none = (200, {"value": []})
    verdict, seen, _ = run_plan([GONE, none, none, found], wait=10, stamp="s")
    assert verdict == "sent" and seen == ["getMessage"] + ["findSentByStamp"] * 3
    verdict, seen, end = run_plan([GONE] + [none] * 50, wait=3, stamp="s")
    assert verdict == "unknown" and end >= 3  # never "not_sent" from an absence
    assert run_plan([GONE, (403, {})], wait=3, stamp="s")[0] == "unknown"


def test_i12_reconcile_many_settles_every_item_side_by_side(graph: FakeGraph) -> None:
    """What a crashed bulk job left in flight, settled at once: each item's verdict in input
    order, in about one settling time (not one per item), under the per-mailbox cap."""
    graph.sent_items_delay = 0.2
    users = [f"r{i}@x.com" for i in range(8)]
    sent = [(u, graph.create_draft(u, immutable_id=True)) for u in users for _ in range(3)]
    unsent = [(u, graph.create_draft(u, immutable_id=True)) for u in users for _ in range(3)]
    with Client(graph.token, base_url=graph.base_url, http2=False) as client:
        client.send_many(sent)
        with pytest.raises(ValueError):
            client.reconcile_many([("a", "b", "c")], wait=1)  # type: ignore[list-item]
        started = time.monotonic()
        verdicts = client.reconcile_many([*sent, *unsent, "gone=="], wait=1.0)
        elapsed = time.monotonic() - started
    assert verdicts == ["sent"] * 24 + ["not_sent"] * 24 + ["unknown"]
    assert 1.0 <= elapsed < 4 * SCALE  # 48 plans of a 1 s settling time, side by side
    assert max(graph.peak_in_flight(u) for u in users) <= 4
    assert all(graph.send_count(d) == 0 for _, d in unsent)

"""Issue 12, sendMail: every JSON sendMail graphsend sends carries graphsend's stamp, and with
Retry(reconcile_ambiguous=True) an ambiguous sendMail failure (Client.send_mail,
AsyncClient.send_mail, Message items of send_many) is settled by finding the stamp in Sent
Items. Found: a Receipt with reconciled=True. Not found after the settling time, no
permission to read, or saveToSentItems false: the original error (may_have_sent=True) and
never a resend. Test names: test_i12_sendmail_<what>."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter

import pytest

import graphsend
from graphsend import AsyncClient, Client, Message, Receipt, Retry, SendError
from graphsend._operations.reconcile import STAMP_ID
from graphsend.testing import FakeGraph

SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))
DELAY = 0.2  # FakeGraph's send pipeline: 202 -> Sent Items
WAIT = 1.0  # the settling time the client gives it (well above DELAY)
RECONCILE = Retry(
    reconcile_ambiguous=True, reconcile_wait=WAIT * SCALE, backoff_base=0.01, backoff_max=0.05
)


def client_for(graph: FakeGraph, retry: Retry = RECONCILE) -> Client:
    return Client(
        graph.token, base_url=graph.base_url, http2=False, timeout=1.0 * SCALE, retry=retry
    )


def stamp_in(body: bytes) -> str:
    """The stamp a sendMail request body carries (exactly one graphsend property)."""
    props = json.loads(body)["message"]["singleValueExtendedProperties"]
    (value,) = [p["value"] for p in props if p["id"] == STAMP_ID]
    return str(value)


def sendmail_stamps(graph: FakeGraph) -> list[str]:
    """The stamp of each sendMail request FakeGraph received, in order (resends repeat it)."""
    return [stamp_in(r.body) for r in graph.requests if r.path.endswith("/sendMail")]


def reads(graph: FakeGraph) -> list[str]:
    return [r.path for r in graph.requests if r.method == "GET"]


def delivered_stamps(graph: FakeGraph) -> Counter[str]:
    """How many times each stamp went out (FakeGraph's delivered(), saved or not)."""
    counts: Counter[str] = Counter()
    for message in graph.delivered():
        counts.update(v for i, v in message.extended_properties if i == STAMP_ID)
    return counts


def wait_delivered(graph: FakeGraph, n: int) -> None:
    deadline = time.monotonic() + 10 * SCALE
    while len(graph.delivered()) < n and time.monotonic() < deadline:
        time.sleep(0.05)


def lose(graph: FakeGraph, fault: str, deliver: bool) -> None:
    {"504": lambda: graph.fail_next(504, deliver=deliver),
     "reset": lambda: graph.reset_next(deliver=deliver),
     "stall": lambda: graph.stall_next(deliver=deliver)}[fault]()  # fmt: skip


# --- the stamp and FakeGraph ------------------------------------------------------------------


def test_i12_sendmail_every_json_sendmail_is_stamped_and_found_in_sent_items(
    graph: FakeGraph,
) -> None:
    graph.add_mailbox("bob@x.com")
    with client_for(graph, Retry()) as client:
        client.send_mail(Message("one", "b", to="a@b.com"), user="bob@x.com")
        client.send_mail(Message("two", "b", to="a@b.com"), user="bob@x.com")
        client.send_many([("bob@x.com", Message("three", "b", to="a@b.com"))])

    async def one() -> None:
        async with AsyncClient(graph.token, base_url=graph.base_url) as c:
            await c.send_mail(Message("four", "b", to="a@b.com"), user="bob@x.com")

    asyncio.run(one())
    stamps = sendmail_stamps(graph)
    assert len(stamps) == 4 and len(set(stamps)) == 4  # a fresh value per message
    assert delivered_stamps(graph) == Counter(stamps)  # Graph keeps it with the sent copy
    with client_for(graph, Retry()) as client:
        # Found through the same Sent Items $filter the draft path uses (Mail.Read).
        assert client.reconcile("gone", user="bob@x.com", stamp=stamps[2], wait=0) == "sent"
    # MIME carries no stamp: it is not reconciled (see reconcile.py).
    with client_for(graph, Retry()) as client:
        client.send_mime(b"To: a@b.com\r\nSubject: m\r\n\r\nbody\r\n", user="bob@x.com")
    assert len(graph.delivered()) == 5


def test_i12_sendmail_fakegraph_delays_the_copy_and_delivers_then_loses_the_answer(
    graph: FakeGraph,
) -> None:
    graph.add_mailbox("bob@x.com")
    graph.sent_items_delay = 0.4 * SCALE
    graph.fail_next(504, deliver=True)
    with client_for(graph, Retry()) as client, pytest.raises(graphsend.ServerError) as info:
        client.send_mail(Message("x", "b", to="a@b.com"), user="bob@x.com")
    assert info.value.may_have_sent is True
    assert graph.sent_items("bob@x.com") == []  # still in the pipeline
    wait_delivered(graph, 1)
    assert [m.subject for m in graph.sent_items("bob@x.com")] == ["x"]
    graph.fail_next(504)  # lost before delivery: nothing goes out
    with client_for(graph, Retry()) as client, pytest.raises(graphsend.ServerError):
        client.send_mail(Message("y", "b", to="a@b.com"), user="bob@x.com")
    time.sleep(0.5 * SCALE)
    assert len(graph.delivered()) == 1


# --- Client.send_mail -------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["504", "reset", "stall"])
def test_i12_sendmail_delivered_then_answer_lost_returns_a_reconciled_receipt(
    graph: FakeGraph, fault: str
) -> None:
    graph.add_mailbox("bob@x.com")
    graph.sent_items_delay = DELAY
    lose(graph, fault, deliver=True)
    with client_for(graph) as client:
        receipt = client.send_mail(Message("x", "b", to="a@b.com"), user="bob@x.com")
    assert isinstance(receipt, Receipt) and receipt.reconciled is True
    assert (receipt.message_id, receipt.user, receipt.status) == (None, "bob@x.com", 202)
    (stamp,) = sendmail_stamps(graph)  # one sendMail request: nothing was sent again
    assert receipt.client_request_id == graph.requests[0].client_request_id
    wait_delivered(graph, 1)
    assert delivered_stamps(graph) == {stamp: 1}
    assert any("mailFolders/sentitems/messages?$filter=" in p for p in reads(graph))


@pytest.mark.parametrize("fault", ["504", "reset", "stall"])
def test_i12_sendmail_lost_before_delivery_is_the_original_error_never_a_resend(
    graph: FakeGraph, fault: str
) -> None:
    graph.add_mailbox("bob@x.com")
    lose(graph, fault, deliver=False)
    started = time.monotonic()
    with client_for(graph) as client, pytest.raises(SendError) as info:
        client.send_mail(Message("x", "b", to="a@b.com"), user="bob@x.com")
    elapsed = time.monotonic() - started
    assert info.value.may_have_sent is True and "could not tell" in str(info.value)
    assert len(sendmail_stamps(graph)) == 1 and graph.delivered() == []
    # It looked for the whole settling time before giving up (absence is not proof).
    assert elapsed >= WAIT * SCALE * 0.9 and len(reads(graph)) >= 2


def test_i12_sendmail_403_on_reads_is_the_original_error_and_nothing_is_resent(
    graph: FakeGraph,
) -> None:
    graph.add_mailbox("bob@x.com")
    graph.deny_reads = True
    graph.fail_next(504, deliver=True)
    retry = Retry(reconcile_ambiguous=True, reconcile_wait=30.0 * SCALE, backoff_base=0.01)
    started = time.monotonic()
    with client_for(graph, retry) as client, pytest.raises(graphsend.ServerError) as info:
        client.send_mail(Message("x", "b", to="a@b.com"), user="bob@x.com")
    assert time.monotonic() - started < 10 * SCALE  # a 403 says "cannot tell" at once
    assert info.value.may_have_sent is True and "could not tell" in str(info.value)
    assert len(sendmail_stamps(graph)) == 1 and len(graph.delivered()) == 1
    assert len(reads(graph)) == 1


def test_i12_sendmail_not_saved_to_sent_items_is_the_original_error_without_reads(
    graph: FakeGraph,
) -> None:
    graph.add_mailbox("bob@x.com")
    graph.fail_next(504, deliver=True)
    with client_for(graph) as client, pytest.raises(graphsend.ServerError) as info:
        client.send_mail(
            Message("x", "b", to="a@b.com"), user="bob@x.com", save_to_sent_items=False
        )
    assert info.value.may_have_sent is True and "could not tell" not in str(info.value)
    assert reads(graph) == [] and len(sendmail_stamps(graph)) == 1
    assert len(graph.delivered()) == 1 and graph.sent_items() == []


def test_i12_sendmail_without_reconciling_raises_and_reads_nothing(graph: FakeGraph) -> None:
    graph.add_mailbox("bob@x.com")
    graph.fail_next(504, deliver=True)
    with client_for(graph, Retry()) as client, pytest.raises(graphsend.ServerError) as info:
        client.send_mail(Message("x", "b", to="a@b.com"), user="bob@x.com")
    assert info.value.may_have_sent is True and reads(graph) == []


# --- send_many and AsyncClient ----------------------------------------------------------------


def check_outcomes(graph: FakeGraph, results: list[Receipt | SendError], n: int) -> int:
    """Every Receipt's message went out exactly once; every error may have sent and its message
    did not go out (the delivered ones were all found); nothing was sent twice. Returns the
    number of reconciled Receipts."""
    assert len(results) == n
    wait_delivered(graph, sum(isinstance(r, Receipt) for r in results))
    requested = sendmail_stamps(graph)
    delivered = delivered_stamps(graph)
    assert all(count == 1 for count in delivered.values())  # never twice
    assert len(set(requested)) == n  # one stamp per item
    subjects = {m.subject: v for m in graph.delivered() for i, v in m.extended_properties}
    for index, result in enumerate(results):
        if isinstance(result, Receipt):
            assert result.status == 202 and delivered[subjects[f"m{index}"]] == 1
        else:
            assert isinstance(result, SendError) and result.may_have_sent is True
            assert f"m{index}" not in subjects
    assert len(delivered) == sum(isinstance(r, Receipt) for r in results)
    return sum(isinstance(r, Receipt) and r.reconciled for r in results)


def test_i12_sendmail_send_many_messages_under_random_faults_of_both_kinds(
    graph: FakeGraph,
) -> None:
    graph.sent_items_delay = DELAY
    users = [f"user{i}@contoso.com" for i in range(20)]
    for user in users:
        graph.add_mailbox(user)
    items = [(users[i % 20], Message(f"m{i}", "b", to="a@b.com")) for i in range(400)]
    graph.random_faults(0.10, seed=21)
    with client_for(graph) as client:
        results = client.send_many(items)
    graph.random_faults(0)
    applied = graph.random_faults_applied()
    delivered = sum(n for kind, n in applied.items() if kind.startswith("delivered"))
    lost = sum(n for kind, n in applied.items() if kind.startswith("lost"))
    assert delivered > 5 and lost > 5
    # Each delivered-then-lost sendMail came back as a reconciled Receipt, and only those.
    assert check_outcomes(graph, results, len(items)) == delivered
    pairs = zip(results, items, strict=True)
    assert all(r.user == u for r, (u, _) in pairs if isinstance(r, Receipt))


def test_i12_sendmail_async_send_mail_and_send_many_reconcile(graph: FakeGraph) -> None:
    graph.sent_items_delay = DELAY
    users = [f"a{i}@contoso.com" for i in range(10)]
    for user in users:
        graph.add_mailbox(user)
    items = [(users[i % 10], Message(f"m{i}", "b", to="a@b.com")) for i in range(150)]
    singles = [(users[i % 10], Message(f"m{i}", "b", to="a@b.com")) for i in range(150, 200)]
    graph.random_faults(0.15, seed=5)

    async def main() -> list[Receipt | SendError]:
        async with AsyncClient(
            graph.token, base_url=graph.base_url, timeout=1.0 * SCALE, retry=RECONCILE
        ) as client:
            results = await client.send_many(items)

            async def single(user: str, message: Message) -> Receipt | SendError:
                try:
                    return await client.send_mail(message, user=user)
                except SendError as exc:
                    return exc

            one = await asyncio.gather(*(single(u, m) for u, m in singles))
            return [*results, *one]

    results = asyncio.run(main())
    graph.random_faults(0)
    applied = graph.random_faults_applied()
    delivered = sum(n for kind, n in applied.items() if kind.startswith("delivered"))
    assert delivered > 0
    assert check_outcomes(graph, results, 200) == delivered


def test_i12_sendmail_403_on_reads_in_bulk_and_async_resends_nothing(graph: FakeGraph) -> None:
    graph.deny_reads = True
    for i in range(3):
        graph.add_mailbox(f"u{i}@x.com")
    graph.fail_next(504, count=2, deliver=True)
    graph.fail_next(504, count=1)
    with client_for(graph) as client:
        results = client.send_many(
            [(f"u{i}@x.com", Message(f"m{i}", "b", to="a@b.com")) for i in range(3)]
        )
    assert all(isinstance(r, graphsend.ServerError) and r.may_have_sent for r in results)

    async def one() -> BaseException:
        async with AsyncClient(graph.token, base_url=graph.base_url, retry=RECONCILE) as c:
            graph.fail_next(504, deliver=True)
            try:
                await c.send_mail(Message("m3", "b", to="a@b.com"), user="u0@x.com")
            except SendError as exc:
                return exc
        raise AssertionError("sent")

    error = asyncio.run(one())
    assert isinstance(error, SendError) and error.may_have_sent is True
    assert len(sendmail_stamps(graph)) == 4 and len(set(sendmail_stamps(graph))) == 4
    assert sum(delivered_stamps(graph).values()) == 3

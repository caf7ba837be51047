"""A large gather of AsyncClient.send starts its transfers while its tasks are still being run
(issue 10, S3's send + gather against send_many). asyncio runs the first step of every task of a
gather in one loop iteration; had the sends waited for a kick queued behind all of them, the first
request of 2,000 would go out only after the 2,000th task had run. They start a slice (64) at a
time as the tasks add them, up to 8 slices in that iteration (a larger gather starts the rest in
slices with other tasks between them, as before); caps and outcomes are as before."""

from __future__ import annotations

import asyncio

import pytest

import graphsend
from graphsend._drivers import async_client
from graphsend.testing import FakeGraph

SENDS = 256
MAILBOXES = 64  # with the cap of 4, every send may start at once


def test_a_gathers_sends_start_while_its_later_tasks_have_not_run_yet() -> None:
    with FakeGraph(latency=0.05) as graph:
        users = [f"user{i}@contoso.com" for i in range(MAILBOXES)]
        items = [
            (users[i % MAILBOXES], graph.create_draft(users[i % MAILBOXES])) for i in range(SENDS)
        ]

        async def main() -> tuple[int, list[graphsend.Receipt]]:
            async with graphsend.AsyncClient(graph.token, base_url=graph.base_url) as client:
                seen = [-1]

                async def last() -> None:  # the gather's last task: its first step runs last
                    driver = client._drivers[asyncio.get_running_loop()]
                    seen[0] = len(driver.scheduler.in_flight)

                *receipts, _ = await asyncio.gather(
                    *(client.send(m, user=u) for u, m in items), last()
                )
                return seen[0], receipts

        in_flight, receipts = asyncio.run(main())
    assert [r.status for r in receipts] == [202] * SENDS
    # Before: 1 (the first send starts at once, the others waited for the queued kick).
    assert in_flight >= SENDS - 64, in_flight
    assert graph.peak_in_flight() <= SENDS
    assert max(graph.peak_in_flight(u) for u in users) <= 4


def test_a_gather_starts_a_bounded_number_of_slices_early_and_the_rest_between_other_tasks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Smaller slices than the defaults (64 per slice, 8 early), so that a small gather is
    # "large": its first steps start 2 slices of 8; the rest start in the queued kick's slices,
    # with the loop's other tasks running between them, as a large gather's always did.
    monkeypatch.setattr(async_client, "_START_SLICE", 8)
    monkeypatch.setattr(async_client, "_EARLY_SLICES", 2)
    sends, mailboxes = 100, 25  # every send may start at once under the cap of 4
    with FakeGraph(latency=0.05) as graph:
        users = [f"user{i}@contoso.com" for i in range(mailboxes)]
        items = [
            (users[i % mailboxes], graph.create_draft(users[i % mailboxes])) for i in range(sends)
        ]

        async def main() -> tuple[list[int], list[graphsend.Receipt]]:
            async with graphsend.AsyncClient(graph.token, base_url=graph.base_url) as client:
                seen: list[int] = []

                async def other() -> None:  # the gather's last task
                    driver = client._drivers[asyncio.get_running_loop()]
                    for _ in range(4):
                        seen.append(len(driver.scheduler.in_flight))
                        await asyncio.sleep(0)

                *receipts, _ = await asyncio.gather(
                    *(client.send(m, user=u) for u, m in items), other()
                )
                return seen, receipts

        seen, receipts = asyncio.run(main())
    assert [r.status for r in receipts] == [202] * sends
    assert seen[0] == 1 + 2 * 8, seen  # the first send (started alone), then 2 early slices
    assert seen[0] < seen[-1] <= sends, seen  # the other slices came while `other` ran


class _BrokenLimiter(graphsend.LocalLimiter):
    """A user's limiter with a bug: from its `fail_from`th call on, acquire raises."""

    def __init__(self, fail_from: int) -> None:
        super().__init__(per_mailbox=4)
        self.calls = 0
        self.fail_from = fail_from

    def acquire(
        self, mailbox: str, count: int = 1, *, sends: bool = True
    ) -> tuple[list[object], float]:
        self.calls += 1
        if self.calls >= self.fail_from:
            raise RuntimeError("limiter bug")
        return super().acquire(mailbox, count, sends=sends)


def test_a_failure_while_a_gathers_sends_start_settles_every_send() -> None:
    """The defect: a failure inside the early start (here a limiter's bug) reached only the task
    whose send was being added, as a bare RuntimeError, and left the other sends waiting for
    ever. Every send gets an outcome now: a Receipt, or a SendError that says truly whether it
    may have been sent."""
    with FakeGraph(latency=0.05) as graph:
        users = [f"user{i}@contoso.com" for i in range(MAILBOXES)]
        items = [
            (users[i % MAILBOXES], graph.create_draft(users[i % MAILBOXES])) for i in range(SENDS)
        ]
        limiter = _BrokenLimiter(fail_from=40)

        async def main() -> list[object]:
            client = graphsend.AsyncClient(graph.token, base_url=graph.base_url, limiter=limiter)
            async with client:
                sends = asyncio.gather(
                    *(client.send(m, user=u) for u, m in items), return_exceptions=True
                )
                return await asyncio.wait_for(sends, 30)

        results = asyncio.run(main())
    assert limiter.calls >= 40, "the limiter never failed: the test did not test that"
    assert all(isinstance(r, (graphsend.Receipt, graphsend.SendError)) for r in results), {
        type(r).__name__ for r in results
    }
    sent = graph.send_counts()
    assert set(sent.values()) <= {1}
    for (_, message_id), r in zip(items, results, strict=True):
        if isinstance(r, graphsend.Receipt) or (
            isinstance(r, graphsend.SendError) and not r.may_have_sent
        ):
            assert sent.get(message_id, 0) == (1 if isinstance(r, graphsend.Receipt) else 0)

"""A batch's connections stay open for the next batch (HTTP/1.1, where each send in flight needs
a connection of its own). libcurl sizes its connection cache at 4 times the transfers in flight
now, so as a batch drained it closed a quarter of what it had opened (the last transfers to
finish took their connections with them), and the next batch opened them again: a TCP and TLS
handshake each. The engines size it at 4 times the most ever in flight. Against FakeGraph, which
counts the connections it accepted; the sync Engine and the event loop's LoopEngine alike."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest

import graphsend
from graphsend.testing import FakeGraph

MAILBOXES = 10
CAP = 4
WIDE = MAILBOXES * CAP  # every send of a batch in flight at once: one connection each
SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))


def _items(graph: FakeGraph) -> list[tuple[str, str]]:
    users = [f"user{i}@contoso.com" for i in range(MAILBOXES)]
    return [(user, graph.create_draft(user)) for _ in range(CAP) for user in users]


def _sync_send_many(graph: FakeGraph, batches: list[list[tuple[str, str]]]) -> list[object]:
    client = graphsend.Client(graph.token, base_url=graph.base_url, http2=False)
    try:
        out: list[object] = []
        for items in batches:
            out += client.send_many(items, max_concurrency=WIDE, max_per_mailbox=CAP)
        return out
    finally:
        client.close()


async def _async(
    graph: FakeGraph, batches: list[list[tuple[str, str]]], gather: bool
) -> list[object]:
    async with graphsend.AsyncClient(
        graph.token, base_url=graph.base_url, http2=False, max_per_mailbox=CAP
    ) as client:
        out: list[object] = []
        for items in batches:
            if gather:
                out += await asyncio.gather(*(client.send(m, user=u) for u, m in items))
            else:
                out += await client.send_many(items, max_concurrency=WIDE)
        return out


RUNNERS: dict[str, Callable[[FakeGraph, list[list[tuple[str, str]]]], list[object]]] = {
    "Client.send_many": _sync_send_many,
    "AsyncClient.send_many": lambda g, b: asyncio.run(_async(g, b, gather=False)),
    "AsyncClient.send+gather": lambda g, b: asyncio.run(_async(g, b, gather=True)),
}


@pytest.mark.parametrize("how", list(RUNNERS))
def test_the_next_batch_reuses_every_connection_the_last_one_opened(how: str) -> None:
    # The latency holds a batch's sends in flight together, so the first batch opens about WIDE
    # connections; the batches after it find them all idle: no more connections than were ever
    # needed at once (before: 58 for 40).
    with FakeGraph(latency=0.2 * SCALE) as graph:
        batches = [_items(graph) for _ in range(3)]
        results = RUNNERS[how](graph, batches)
        assert [getattr(r, "status", r) for r in results] == [202] * (3 * WIDE)
        peak = graph.peak_in_flight()
        assert peak >= WIDE // 2, f"only {peak} in flight at once: the test did not test that"
        assert graph.connections <= peak, f"{graph.connections - peak} connections opened again"

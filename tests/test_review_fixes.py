"""Defects found reviewing the issue 10-14 merge: each test failed on main before its fix.

Real servers on loopback only (FakeGraph, redis-server); what is asserted is what the server
received and what the caller gets.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import graphsend
from graphsend import AsyncClient, Client
from graphsend.testing import FakeGraph


def _drafts(graph: FakeGraph, count: int) -> list[tuple[str, str]]:
    users = [f"user{i % 3}@contoso.com" for i in range(count)]
    return [(u, graph.create_draft(u, immutable_id=True)) for u in users]


def _sends(graph: FakeGraph) -> int:
    return sum(1 for r in graph.requests if r.method == "POST" and r.path.endswith("/send"))


def test_async_journal_rerun_without_a_token_keeps_the_stored_receipts(tmp_path: Path) -> None:
    """A rerun whose async token provider fails must still report what the journal knows
    was sent as sent (not as a provider error that says nothing was sent)."""
    path = tmp_path / "run.db"
    with FakeGraph() as graph:
        items = _drafts(graph, 6)
        with Client(graph.token, base_url=graph.base_url) as client:
            first = client.send_many(items, journal=path)
        assert all(isinstance(r, graphsend.Receipt) for r in first)
        # As if the run had died with item 0's request written and no outcome recorded.
        db = sqlite3.connect(path, timeout=30)  # (waits for the journal's closing thread)
        with db:
            db.execute("INSERT INTO event (changes) VALUES ('[0]')")
        db.close()

        async def no_token() -> str:
            raise RuntimeError("the vault is down")

        async def rerun() -> list[graphsend.Receipt | graphsend.SendError]:
            async with AsyncClient(no_token, base_url=graph.base_url) as aclient:
                return await aclient.send_many(items, journal=path)

        again = asyncio.run(rerun())
        assert _sends(graph) == 6
    assert again[1:] == first[1:], [type(r).__name__ for r in again]
    doubtful = again[0]
    assert isinstance(doubtful, graphsend.SendError) and doubtful.may_have_sent, repr(doubtful)

"""Error answers read the way the README describes, end to end against FakeGraph: tests that kill
surviving generated mutants of _errors.py and the Scheduler (`make mutants`, issue 15 item 3)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

import pytest

import graphsend
from graphsend.testing import FakeGraph

SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))
NO_IDS = {"request-id": None, "client-request-id": None, "date": None}


def send_and_fail(graph: FakeGraph, **fault: object) -> graphsend.SendError:
    graph.fail_next(500, **fault)  # type: ignore[arg-type]
    with graphsend.Client(graph.token, base_url=graph.base_url) as client:
        with pytest.raises(graphsend.SendError) as caught:
            client.send(
                graph.create_draft(), client_request_id="0f2e3c4d-aaaa-4bbb-8ccc-000000000001"
            )
    return caught.value


def test_i15_03_an_error_member_that_is_not_an_object_still_gives_a_graph_error(
    graph: FakeGraph,
) -> None:
    error = send_and_fail(graph, body='{"error": "boom"}')
    assert isinstance(error, graphsend.ServerError)
    assert error.status == 500 and error.code is None


def test_i15_03_ids_come_from_the_outermost_inner_error_when_headers_lack_them(
    graph: FakeGraph,
) -> None:
    body = {
        "error": {
            "code": "InternalServerError",
            "message": "m",
            "innerError": {
                "request-id": "outer-id",
                "date": "2026-01-01T00:00:00",
                "innerError": {"request-id": "inner-id", "date": "2000-01-01T00:00:00"},
            },
        }
    }
    error = send_and_fail(graph, body=json.dumps(body), headers=NO_IDS)
    assert isinstance(error, graphsend.GraphError)
    assert error.request_id == "outer-id"
    assert error.date == "2026-01-01T00:00:00"
    # No client-request-id header in the answer: the one the client sent is kept.
    assert error.client_request_id == "0f2e3c4d-aaaa-4bbb-8ccc-000000000001"


def test_i15_03_non_text_codes_in_an_error_body_are_ignored(graph: FakeGraph) -> None:
    error = send_and_fail(graph, body='{"error": {"code": 42, "message": ""}}')
    assert isinstance(error, graphsend.GraphError)
    assert error.code is None and error.message is None


def test_i15_03_send_many_resumes_a_throttled_mailbox_when_its_retry_after_ends(
    graph: FakeGraph,
) -> None:
    # The Scheduler tells its driver when the paused mailbox wakes; waiting for the next poll
    # (up to 1 s) instead would still work, only slower.
    graph.fail_next(429, retry_after=0.3)
    with graphsend.Client(graph.token, base_url=graph.base_url) as client:
        start = time.monotonic()
        results = client.send_many([graph.create_draft()])
        elapsed = time.monotonic() - start
    assert isinstance(results[0], graphsend.Receipt)
    assert 0.3 <= elapsed < 0.8 * SCALE, elapsed


def test_i15_03_async_send_many_of_nothing_returns_at_once(graph: FakeGraph) -> None:
    async def main() -> list[object]:
        async with graphsend.AsyncClient(graph.token, base_url=graph.base_url) as client:
            return await asyncio.wait_for(client.send_many([]), 5 * SCALE)

    assert asyncio.run(main()) == []


def test_i15_03_send_many_with_max_concurrency_1_sends_every_mailbox(graph: FakeGraph) -> None:
    # While one mailbox's item holds the batch's only slot, the other mailboxes wait with
    # nothing in flight: they must keep their queues.
    users = ["a@contoso.com", "b@contoso.com", "c@contoso.com"]
    items = [(u, graph.create_draft(u)) for _ in range(2) for u in users]
    results: list[object] = []

    def run() -> None:
        with graphsend.Client(graph.token, base_url=graph.base_url) as client:
            results.extend(client.send_many(items, max_concurrency=1))

    worker = threading.Thread(target=run, daemon=True)  # daemon: a hung batch cannot hang pytest
    worker.start()
    worker.join(10 * SCALE)
    assert not worker.is_alive(), "send_many(max_concurrency=1) never finished"
    assert all(isinstance(r, graphsend.Receipt) for r in results), results
    assert graph.peak_in_flight() == 1


def test_i15_03_a_throttled_mailbox_resumes_on_time_while_others_finish(graph: FakeGraph) -> None:
    # The other mailbox's answer wakes the driver while the first is still paused: the wake-up
    # time of the paused mailbox must survive that.
    graph.fail_next(429, retry_after=0.5, user="a@contoso.com")
    graph.set_latency("b@contoso.com", 0.1)
    items = [("a@contoso.com", graph.create_draft("a@contoso.com"))]
    items.append(("b@contoso.com", graph.create_draft("b@contoso.com")))
    with graphsend.Client(graph.token, base_url=graph.base_url) as client:
        start = time.monotonic()
        results = client.send_many(items)
        elapsed = time.monotonic() - start
    assert all(isinstance(r, graphsend.Receipt) for r in results), results
    assert 0.5 <= elapsed < 0.9 * SCALE, elapsed

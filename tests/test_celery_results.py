"""Receipts and graphsend's exceptions through a real Celery result backend (Redis, JSON
serializer) from a real `celery worker` process: class and every field kept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery_cluster import MAILBOXES, Cluster
from redis_server import have_redis

import graphsend
from graphsend.testing import FakeGraph

pytestmark = pytest.mark.skipif(not have_redis(), reason="redis-server is not installed")


@pytest.fixture
def limited_graph() -> Iterator[FakeGraph]:
    with FakeGraph(mailbox_concurrency_limit=4, latency=0.02) as g:
        yield g


def test_receipts_and_exceptions_through_the_result_backend(limited_graph: FakeGraph) -> None:
    graph = limited_graph
    cluster = Cluster(graph)
    try:
        cluster.start_workers(1, 2)
        draft = graph.create_draft(user=MAILBOXES[0])
        receipt = cluster.send.delay(draft, user=MAILBOXES[0]).get(timeout=60)
        assert isinstance(receipt, graphsend.Receipt)
        assert receipt.status == 202 and receipt.request_id

        # A Message (its keyword arguments, as JSON carries them): a draft first, then its send.
        composed = cluster.send.delay(
            message={"subject": "Quarterly", "body": "Hello", "to": ["lee@contoso.com"]},
            user=MAILBOXES[3],
        ).get(timeout=60)
        assert isinstance(composed, graphsend.Receipt) and composed.status == 202
        [sent] = graph.sent_items(MAILBOXES[3])
        assert sent.subject == "Quarterly"

        with pytest.raises(graphsend.NotFoundError) as info:
            cluster.send.delay("AAMkADno-such-draft", user=MAILBOXES[0]).get(timeout=60)
        err = info.value
        assert err.status == 404 and err.code == "ErrorItemNotFound"
        assert err.request_id and err.client_request_id and err.may_have_sent is False
        assert "404 ErrorItemNotFound" in str(err)
        assert graph.token not in repr(err.args)

        graph.fail_next(403, user=MAILBOXES[1])
        with pytest.raises(graphsend.PermissionDeniedError) as denied:
            cluster.send.delay(graph.create_draft(user=MAILBOXES[1]), user=MAILBOXES[1]).get(
                timeout=60
            )
        assert denied.value.status == 403 and denied.value.may_have_sent is False

        # A batch: Receipts and errors, in input order, each rebuilt.
        ok = graph.create_draft(user=MAILBOXES[2])
        batch = cluster.send.delay(items=[[MAILBOXES[2], ok], [MAILBOXES[2], "AAMkADgone"]])
        first, second = batch.get(timeout=60)
        assert isinstance(first, graphsend.Receipt)
        assert isinstance(second, graphsend.NotFoundError) and second.status == 404
    finally:
        cluster.close()

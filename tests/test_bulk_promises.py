"""Promises of send_many and AsyncClient pinned against mutation (issue 15): may_have_sent for
every way a batch can stop, the token in no log record or exception, mailbox caps that ignore
case."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from collections.abc import Iterator

import pytest
from helpers import interrupt_subprocess

import graphsend
from graphsend import Client, Retry
from graphsend.testing import FakeGraph

FAST = "fast@contoso.com"


def run(coro):
    return asyncio.run(coro)


class Stop:
    """One batch of three: `at_server` stalls at the server (its request was written), `unstarted`
    waits behind it (one request per mailbox at a time), `other` finishes after 0.2 s in another
    mailbox (it drives a progress callback)."""

    def __init__(self, graph: FakeGraph) -> None:
        self.graph = graph
        self.at_server = graph.create_draft()
        self.unstarted = graph.create_draft()
        self.other = graph.create_draft(FAST)
        graph.set_latency(FAST, 0.2)
        graph.stall_next(user=graph.default_user)
        self.items: list = [self.at_server, self.unstarted, (FAST, self.other)]

    def check(self, results: list) -> None:
        """The item at the server may have been sent; the one never started was not."""
        ids = [r.message_id for r in self.graph.requests]
        assert self.at_server in ids and self.unstarted not in ids
        at_server, unstarted = results[0], results[1]
        assert isinstance(at_server, graphsend.SendError), at_server
        assert at_server.may_have_sent is True, at_server
        assert isinstance(unstarted, graphsend.SendError), unstarted
        assert unstarted.may_have_sent is False, unstarted


def raising_progress(done: int, total: int) -> None:
    raise RuntimeError("progress bar broke")


# ---------------------------------------------------------------- may_have_sent, sync


def test_i15_may_have_sent_sync_progress_raises(graph: FakeGraph) -> None:
    stop = Stop(graph)
    client = Client(graph.token, base_url=graph.base_url)
    with pytest.raises(RuntimeError) as info:
        client.send_many(stop.items, max_per_mailbox=1, progress=raising_progress)
    stop.check(info.value.results)  # type: ignore[attr-defined]


def test_i15_may_have_sent_sync_stop_on_error(graph: FakeGraph) -> None:
    denied = "denied@contoso.com"
    at_server, unstarted = graph.create_draft(), graph.create_draft()
    graph.set_latency(graph.default_user, 0.4)  # still in flight when the 403 comes back
    graph.fail_next(403, "ErrorAccessDenied", user=denied)
    items: list = [at_server, unstarted, (denied, graph.create_draft(denied))]
    client = Client(graph.token, base_url=graph.base_url, retry=Retry(max_attempts=1))
    results = client.send_many(items, max_per_mailbox=1, stop_on_error=True)
    assert isinstance(results[2], graphsend.PermissionDeniedError)
    # The one in flight is let finish: it was sent, and says so.
    assert isinstance(results[0], graphsend.Receipt)
    assert isinstance(results[1], graphsend.SendError) and results[1].may_have_sent is False
    ids = [r.message_id for r in graph.requests]
    assert at_server in ids and unstarted not in ids


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import graphsend
    from graphsend.testing import FakeGraph
    with FakeGraph() as graph:
        at_server, unstarted = graph.create_draft(), graph.create_draft()
        graph.stall_next()
        client = graphsend.Client(graph.token, base_url=graph.base_url)
        print("ready", flush=True)
        try:
            client.send_many([at_server, unstarted], max_per_mailbox=1)
        except KeyboardInterrupt as exc:
            ids = [r.message_id for r in graph.requests]
            print(at_server in ids, unstarted in ids,
                  *(getattr(r, "may_have_sent", None) for r in exc.results), flush=True)
    """
)


def test_i15_may_have_sent_sync_ctrl_c() -> None:
    returncode, output, _ = interrupt_subprocess(CTRL_C_SCRIPT, after=0.5)
    assert returncode == 0
    # at the server, the other not; may_have_sent: True for the first, False for the second
    assert output.split() == ["True", "False", "True", "False"]


# ---------------------------------------------------------------- may_have_sent, async


def async_client(graph: FakeGraph, **kwargs: object) -> graphsend.AsyncClient:
    return graphsend.AsyncClient(graph.token, base_url=graph.base_url, max_per_mailbox=1, **kwargs)


def test_i15_may_have_sent_async_aclose_during_send_many(graph: FakeGraph) -> None:
    stop = Stop(graph)

    async def main() -> list:
        client = async_client(graph)
        task = asyncio.create_task(client.send_many(stop.items))
        await asyncio.to_thread(graph.wait_for_requests, 2)
        await asyncio.sleep(0.05)
        await client.aclose()
        return await task

    stop.check(run(main()))


def test_i15_may_have_sent_async_task_cancelled(graph: FakeGraph) -> None:
    stop = Stop(graph)

    async def main() -> list:
        async with async_client(graph) as client:
            task = asyncio.create_task(client.send_many(stop.items))
            await asyncio.to_thread(graph.wait_for_requests, 2)
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError) as info:
                await task
            return graphsend.interrupted_results(info.value)  # also on Python 3.10

    stop.check(run(main()))


def test_i15_may_have_sent_async_progress_raises(graph: FakeGraph) -> None:
    stop = Stop(graph)

    async def main() -> list:
        async with async_client(graph) as client:
            with pytest.raises(RuntimeError) as info:
                await client.send_many(stop.items, progress=raising_progress)
            return info.value.results  # type: ignore[attr-defined]

    stop.check(run(main()))


def test_i15_may_have_sent_async_stop_on_error(graph: FakeGraph) -> None:
    denied = "denied@contoso.com"
    at_server, unstarted = graph.create_draft(), graph.create_draft()
    graph.set_latency(graph.default_user, 0.4)
    graph.fail_next(403, "ErrorAccessDenied", user=denied)
    items: list = [at_server, unstarted, (denied, graph.create_draft(denied))]

    async def main() -> list:
        async with async_client(graph, retry=Retry(max_attempts=1)) as client:
            return await client.send_many(items, stop_on_error=True)

    results = run(main())
    assert isinstance(results[2], graphsend.PermissionDeniedError)
    assert isinstance(results[0], graphsend.Receipt)
    assert isinstance(results[1], graphsend.SendError) and results[1].may_have_sent is False
    ids = [r.message_id for r in graph.requests]
    assert at_server in ids and unstarted not in ids


# ---------------------------------------------------------------- the token never leaks

SECRET = "tok-SECRET-5f3a9c"
STALE = "stale-SECRET-77b1e0"


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Every record of every logger, DEBUG on."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    root = logging.getLogger()
    handler = Keep(logging.DEBUG)
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield seen
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def assert_no_secret(records: list[logging.LogRecord], results: list) -> None:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    texts = [formatter.format(r) for r in records] + [repr(r.args) for r in records]
    for result in results:
        texts += [str(result), repr(result)]
        if isinstance(result, BaseException):
            texts += [repr(vars(result)), repr(result.args)]
    for text in texts:
        assert SECRET not in text and STALE not in text, text
    assert any(r.levelno == logging.WARNING for r in records)  # the retries were logged
    assert sum(r.levelno == logging.DEBUG and r.name == "graphsend" for r in records) >= 6


def leaky_graph(graph: FakeGraph) -> tuple[list, object]:
    """429 then 202, 503 then 202, and a 401 answered by a refresh; one NotFound at the end."""
    graph.token = SECRET
    tokens = iter([STALE] + [SECRET] * 50)  # the first request carries the stale one
    throttled = "throttled@contoso.com"
    graph.fail_next(429, "ApplicationThrottled", retry_after="0.05", user=throttled)
    graph.fail_next(503, "ServiceUnavailable", retry_after="0.05", user=throttled)
    items = [graph.create_draft()] + [(throttled, graph.create_draft(throttled)) for _ in "ab"]
    return [*items, "AAMkAGunknown"], lambda: next(tokens)


def test_i15_token_absent_from_logs_and_errors_bulk(
    graph: FakeGraph, records: list[logging.LogRecord]
) -> None:
    items, provider = leaky_graph(graph)
    results = Client(provider, base_url=graph.base_url).send_many(items, max_per_mailbox=1)
    assert [type(r) for r in results[:3]] == [graphsend.Receipt] * 3
    assert isinstance(results[3], graphsend.NotFoundError)
    assert [r.status for r in graph.requests].count(401) == 1
    assert_no_secret(records, results)


def test_i15_token_absent_from_logs_and_errors_async(
    graph: FakeGraph, records: list[logging.LogRecord]
) -> None:
    items, provider = leaky_graph(graph)

    async def main() -> list:
        async with graphsend.AsyncClient(provider, base_url=graph.base_url) as client:
            results = await client.send_many(items[:2])
            results.append(await client.send(items[2][1], user=items[2][0]))
            try:
                await client.send(items[3])
            except graphsend.SendError as exc:
                results.append(exc)
            return results

    results = run(main())
    assert [type(r) for r in results[:3]] == [graphsend.Receipt] * 3
    assert isinstance(results[3], graphsend.NotFoundError)
    assert [r.status for r in graph.requests].count(401) == 1
    assert_no_secret(records, results)


# ---------------------------------------------------------------- mailbox names and case


def mixed_case_items(graph: FakeGraph) -> list:
    users = ["Adele@contoso.com", "adele@contoso.com", "ADELE@CONTOSO.COM"]
    return [(users[i % 3], graph.create_draft(users[i % 3])) for i in range(16)]


def test_i15_mailbox_cap_ignores_case_bulk() -> None:
    with FakeGraph(latency=0.15, mailbox_concurrency_limit=None) as graph:
        items = mixed_case_items(graph)
        results = Client(graph.token, base_url=graph.base_url).send_many(items)
        assert all(isinstance(r, graphsend.Receipt) for r in results)
        assert graph.peak_in_flight("adele@contoso.com") == 4


def test_i15_mailbox_cap_ignores_case_async() -> None:
    with FakeGraph(latency=0.15, mailbox_concurrency_limit=None) as graph:
        items = mixed_case_items(graph)

        async def main() -> list:
            async with graphsend.AsyncClient(graph.token, base_url=graph.base_url) as client:
                return await client.send_many(items)

        assert all(isinstance(r, graphsend.Receipt) for r in run(main()))
        assert graph.peak_in_flight("adele@contoso.com") == 4

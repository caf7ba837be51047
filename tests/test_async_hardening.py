"""AsyncClient hardening (issue 9 items 2, 7, 8, 17, 18, 21): a stopped batch settles every item,
no crash at exit, collected without aclose(), token providers sync and async."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections import namedtuple

import pytest

import graphsend
from graphsend._drivers.async_client import _async_token
from graphsend.testing import FakeGraph

SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))

AccessToken = namedtuple("AccessToken", ["token", "expires_on"])  # azure.core's shape


def run(coro):
    return asyncio.run(coro)


def client_for(graph: FakeGraph, token: object = None, **kwargs: object) -> graphsend.AsyncClient:
    return graphsend.AsyncClient(
        graph.token if token is None else token, base_url=graph.base_url, **kwargs
    )


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout * SCALE
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# ---------------------------------------------------------------- item 2


def test_i9_02_progress_callback_raising_stops_the_async_batch() -> None:
    with FakeGraph(latency=0.2) as graph:
        users = [f"user{i % 10}@contoso.com" for i in range(100)]
        items = [(user, graph.create_draft(user)) for user in users]

        def progress(done: int, total: int) -> None:
            raise RuntimeError("progress bar broke")

        async def main() -> BaseException:
            client = client_for(graph)
            async with client:
                with pytest.raises(RuntimeError, match="progress bar broke") as info:
                    await client.send_many(items, progress=progress)
                return info.value

        error = run(main())
        results = error.results  # type: ignore[attr-defined]
        assert len(results) == 100
        receipts = [r for r in results if isinstance(r, graphsend.Receipt)]
        maybe = [r for r in results if isinstance(r, graphsend.SendError) and r.may_have_sent]
        unsent = [r for r in results if isinstance(r, graphsend.SendError) and not r.may_have_sent]
        assert receipts and unsent  # it stopped mid-way
        # Nothing more was started: once the aborted requests are dealt with, the server has
        # sent exactly the items reported as sent or maybe sent, and that number stays put.
        time.sleep(1.0)
        sent = len(graph.sent_items())
        assert sent == len(receipts) + len(maybe)
        time.sleep(0.5)
        assert len(graph.sent_items()) == sent


# ---------------------------------------------------------------- item 7

EXIT_SCRIPT = textwrap.dedent(
    """
    import asyncio, atexit, sys, threading
    import graphsend

    def at_exit():
        print("threads at exit:", threading.active_count(), flush=True)

    atexit.register(at_exit)
    base_url, token, ca_bundle, ids = sys.argv[1:]
    client = graphsend.AsyncClient(
        token, base_url=base_url, ca_bundle=ca_bundle, max_per_mailbox=16
    )
    loop = asyncio.new_event_loop()
    task = loop.create_task(client.send_many(open(ids).read().split()))
    loop.run_until_complete(asyncio.sleep(0.3))
    print("in flight", flush=True)
    # The program returns with TLS transfers in flight on the loop: the task stays pending,
    # the client is never closed.
    """
)


def test_i9_07_exit_with_https_sends_in_flight_never_crashes(
    graph_https: FakeGraph, tmp_path
) -> None:
    graph_https.latency = 0.02
    graph_https.record_requests = False
    runs = 20
    procs = []
    start = time.monotonic()
    for i in range(runs):
        ids = tmp_path / f"ids{i}"
        ids.write_text("\n".join(graph_https.create_drafts(2000)))
        args = [graph_https.base_url, graph_https.token, graph_https.ca_bundle or "", str(ids)]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", EXIT_SCRIPT, *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        if len(procs) >= 4:  # a few at a time: the server shares the machine with them
            p = procs[-4]
            p.wait(timeout=60)
    try:
        outcomes = [(p.wait(timeout=60), *p.communicate()) for p in procs]
    finally:
        for p in procs:
            p.kill()
    elapsed = time.monotonic() - start
    for returncode, out, err in outcomes:
        assert returncode == 0, (returncode, err[-2000:])
        # No thread of graphsend's is left to call libcurl after OpenSSL's cleanup (issue 10:
        # there is none at all; the transfers end with the multi, before OpenSSL's atexit).
        assert out.split("\n")[:2] == ["in flight", "threads at exit: 1"], out
    assert elapsed < 60 * SCALE


# ---------------------------------------------------------------- item 8


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_i9_08_async_client_without_aclose_is_collected(graph: FakeGraph) -> None:
    threads_before = threading.active_count()
    fds_before = _open_fds()
    refs = []
    for _ in range(20):
        client = client_for(graph)
        receipt = run(client.send(graph.create_draft()))
        assert receipt.status == 202
        refs.append(weakref.ref(client))
        del client
    gc.collect()
    assert all(ref() is None for ref in refs)
    assert wait_until(lambda: threading.active_count() <= threads_before), [
        t.name for t in threading.enumerate()
    ]
    assert wait_until(lambda: _open_fds() <= fds_before + 4), (_open_fds(), fds_before)


# ---------------------------------------------------------------- item 17


def test_i9_17_failing_provider_in_async_send_is_an_authentication_error_at_once(
    graph: FakeGraph,
) -> None:
    def provider() -> str:
        raise RuntimeError("the vault is down")

    async def main() -> None:
        async with client_for(graph, provider) as client:
            start = time.monotonic()
            with pytest.raises(graphsend.AuthenticationError) as info:
                await client.send(graph.create_draft())
            assert time.monotonic() - start < 0.5 * SCALE
            assert info.value.may_have_sent is False
            assert info.value.code == "RuntimeError"
            assert isinstance(info.value.__cause__, RuntimeError)

    run(main())
    assert graph.requests == []


def test_i9_17_failing_provider_in_async_send_many_is_per_item(graph: FakeGraph) -> None:
    calls = 0

    def provider() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the vault is down")
        return graph.token

    drafts = [graph.create_draft() for _ in range(5)]

    async def main() -> list:
        async with client_for(graph, provider, max_per_mailbox=1) as client:
            return await client.send_many(drafts)

    results = run(main())
    assert isinstance(results[0], graphsend.AuthenticationError)
    assert results[0].may_have_sent is False
    assert isinstance(results[0].__cause__, RuntimeError)
    assert all(isinstance(r, graphsend.Receipt) for r in results[1:])
    assert len(graph.sent_items()) == 4


# ---------------------------------------------------------------- item 18


class AsyncCredential:
    """An azure.identity.aio-style credential: ``get_token`` is a coroutine function."""

    def __init__(self, graph: FakeGraph, lifetime: float = 3600.0) -> None:
        self.graph = graph
        self.lifetime = lifetime
        self.calls: list[tuple[str, ...]] = []
        self.fail: Exception | None = None

    async def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        self.calls.append(scopes)
        await asyncio.sleep(0.01)  # a real one does I/O in the loop
        if self.fail is not None:
            raise self.fail
        return AccessToken(self.graph.token, int(time.time() + self.lifetime))


def test_i9_18_async_credential_is_awaited_and_cached(graph: FakeGraph) -> None:
    credential = AsyncCredential(graph)

    async def main() -> None:
        async with client_for(graph, credential) as client:
            assert (await client.send(graph.create_draft())).status == 202
            results = await asyncio.gather(*(client.send(graph.create_draft()) for _ in range(8)))
            assert all(r.status == 202 for r in results)
            many = await client.send_many([graph.create_draft() for _ in range(10)])
            assert all(isinstance(r, graphsend.Receipt) for r in many)

    run(main())
    assert credential.calls == [("https://graph.microsoft.com/.default",)]  # cached
    assert len(graph.sent_items()) == 19


def test_i9_18_async_credential_401_refresh_then_202(graph: FakeGraph) -> None:
    credential = AsyncCredential(graph)

    async def main() -> None:
        async with client_for(graph, credential) as client:
            assert (await client.send(graph.create_draft())).status == 202
            graph.token = "rotated-token"  # the cached token is now refused
            assert (await client.send(graph.create_draft())).status == 202
            graph.token = "rotated-again"
            many = await client.send_many([graph.create_draft() for _ in range(6)])
            assert all(isinstance(r, graphsend.Receipt) for r in many), many

    run(main())
    statuses = [r.status for r in graph.requests]
    assert statuses[:3] == [202, 401, 202]
    assert statuses.count(202) == 8
    assert len(credential.calls) == 3  # one fetch per rotation, shared by the batch's items


def test_i9_18_async_credential_refreshed_near_expiry(graph: FakeGraph) -> None:
    # A token that expires in 2 s serves half its remaining life (1 s at most), then is
    # fetched again before Graph would refuse it.
    credential = AsyncCredential(graph, lifetime=2.0)

    async def main() -> None:
        async with client_for(graph, credential) as client:
            assert (await client.send(graph.create_draft())).status == 202
            assert (await client.send(graph.create_draft())).status == 202
            await asyncio.sleep(1.1)
            assert (await client.send(graph.create_draft())).status == 202

    run(main())
    assert len(credential.calls) == 2
    assert [r.status for r in graph.requests] == [202] * 3


def test_i9_18_async_callable_provider_and_rotation(graph: FakeGraph) -> None:
    calls = 0

    async def provider() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return graph.token

    async def main() -> None:
        async with client_for(graph, provider) as client:
            assert (await client.send(graph.create_draft())).status == 202
            graph.token = "rotated-token"
            # Asked again for every call, like a sync callable before every attempt: no 401.
            assert (await client.send(graph.create_draft())).status == 202
            many = await client.send_many([graph.create_draft() for _ in range(5)])
            assert all(isinstance(r, graphsend.Receipt) for r in many)

    run(main())
    assert [r.status for r in graph.requests] == [202] * 7
    assert calls == 3


def test_i9_18_async_provider_401_refresh_inside_a_batch(graph: FakeGraph) -> None:
    tokens = iter(["stale-token"] + [graph.token] * 10)

    async def provider() -> str:
        return next(tokens)

    async def main() -> list:
        async with client_for(graph, provider) as client:
            return await client.send_many([graph.create_draft() for _ in range(3)])

    results = run(main())
    assert all(isinstance(r, graphsend.Receipt) for r in results), results
    statuses = sorted(r.status for r in graph.requests)
    assert statuses == [202, 202, 202, 401, 401, 401]


def test_i9_18_failing_async_provider_raises_at_once(graph: FakeGraph) -> None:
    credential = AsyncCredential(graph)
    credential.fail = ValueError("AADSTS7000215: Invalid client secret provided.")

    async def main() -> None:
        async with client_for(graph, credential) as client:
            start = time.monotonic()
            with pytest.raises(graphsend.AuthenticationError) as info:
                await client.send(graph.create_draft())
            assert time.monotonic() - start < 0.5 * SCALE
            assert info.value.may_have_sent is False
            assert isinstance(info.value.__cause__, ValueError)
            assert "AADSTS7000215" in str(info.value)
            results = await client.send_many([graph.create_draft() for _ in range(3)])
            assert [type(r) for r in results] == [graphsend.AuthenticationError] * 3
            assert len({id(r) for r in results}) == 3  # each item has its own error
            credential.fail = None  # the provider recovers: the next call sends
            assert (await client.send(graph.create_draft())).status == 202

    run(main())
    assert [r.status for r in graph.requests] == [202]


def test_i9_18_async_provider_fails_during_refresh_of_a_batch(graph: FakeGraph) -> None:
    credential = AsyncCredential(graph)

    async def main() -> list:
        async with client_for(graph, credential, max_per_mailbox=1) as client:
            assert (await client.send(graph.create_draft())).status == 202
            graph.token = "rotated-token"  # the next request gets 401 and asks for a new token
            credential.fail = RuntimeError("token endpoint unreachable")
            return await client.send_many([graph.create_draft() for _ in range(3)])

    results = run(main())
    assert all(isinstance(r, graphsend.AuthenticationError) for r in results), results
    assert not any(r.may_have_sent for r in results)
    assert [r.status for r in graph.requests] == [202, 401]


def test_i9_18_real_azure_identity_aio_credential(graph: FakeGraph, refused_url: str) -> None:
    """A real azure.identity.aio credential, offline: its token endpoint refuses connections, so
    its own error (an AzureError) must come back at once as an AuthenticationError."""
    aio = pytest.importorskip("azure.identity.aio")
    pytest.importorskip("requests")  # the transport below; aiohttp may not be installed
    from azure.core.exceptions import AzureError
    from azure.core.pipeline.transport import AsyncioRequestsTransport

    async def main() -> None:
        credential = aio.ClientSecretCredential(
            "tenant",
            "client",
            "secret",
            authority=refused_url.replace("http://", "https://"),
            transport=AsyncioRequestsTransport(),
            retry_total=0,
        )
        assert _async_token(credential, "scope") is not None  # detected as async
        async with credential, client_for(graph, credential) as client:
            start = time.monotonic()
            with pytest.raises(graphsend.AuthenticationError) as info:
                await client.send(graph.create_draft())
            assert time.monotonic() - start < 5 * SCALE
            assert info.value.may_have_sent is False
            assert isinstance(info.value.__cause__, AzureError), repr(info.value.__cause__)

    run(main())
    assert graph.requests == []


# ---------------------------------------------------------------- item 21


def test_i9_21_async_debug_record_per_attempt(
    graph: FakeGraph, caplog: pytest.LogCaptureFixture
) -> None:
    graph.fail_next(429, "ApplicationThrottled", retry_after="0.1")
    drafts = [graph.create_draft() for _ in range(2)]

    async def main() -> None:
        async with client_for(graph) as client:
            await client.send(graph.create_draft())
            await client.send_many(drafts)

    with caplog.at_level(logging.DEBUG, logger="graphsend"):
        run(main())
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(debug) == 4  # 429, then 202 after the retry; two more 202s
    assert "-> 429" in debug[0] and "attempt=1" in debug[0]
    assert "-> 202" in debug[1] and "attempt=2" in debug[1]
    for message in debug:
        assert message.startswith("POST /me/messages/")  # as Client.send logs it
        assert "request-id=" in message and "client-request-id=" in message
        assert "elapsed=" in message
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1


def test_i9_21_async_long_pause_shows_on_the_progress_counter(
    graph: FakeGraph, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # the plain counter, tqdm or not
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    user = "slow@contoso.com"
    graph.fail_next(429, "ApplicationThrottled", retry_after=1, user=user)
    items = [(user, graph.create_draft(user)), graph.create_draft()]

    async def main() -> list:
        async with client_for(graph) as client:
            return await client.send_many(items, progress=True)

    assert all(isinstance(r, graphsend.Receipt) for r in run(main()))
    err = capfd.readouterr().err
    assert f"mailbox {user} throttled, resuming in 1 s" in err
    assert err.splitlines()[-1] == "graphsend: sent 2/2"

"""AsyncClient drives libcurl on the running event loop (issue 10): no thread, one multi per loop,
cancellation at once, uvloop, the Proactor loop refused, Ctrl-C and Jupyter interrupts."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import textwrap
import threading
import time
import weakref

import pytest
from helpers import interrupt_subprocess

import graphsend
from graphsend import _native
from graphsend.testing import FakeGraph

SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))


def client_for(graph: FakeGraph, **kwargs: object) -> graphsend.AsyncClient:
    return graphsend.AsyncClient(graph.token, base_url=graph.base_url, **kwargs)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_i10_sends_start_no_thread_and_leave_none(graph: FakeGraph) -> None:
    before = threading.active_count()
    counts: list[int] = []

    async def main() -> None:
        async with client_for(graph) as client:
            drafts = graph.create_drafts(50)
            task = asyncio.gather(*(client.send(d) for d in drafts))
            for _ in range(5):
                await asyncio.sleep(0.01)
                counts.append(threading.active_count())
            await task
            counts.append(threading.active_count())
            await client.send_many(graph.create_drafts(20))
            counts.append(threading.active_count())

    asyncio.run(main())
    assert set(counts) == {before}, counts
    assert threading.active_count() == before


def test_i10_each_event_loop_gets_its_own_multi_and_a_closed_loop_lets_go(
    graph: FakeGraph,
) -> None:
    client = client_for(graph)

    async def send() -> object:
        await client.send(graph.create_draft())
        return client._drivers[asyncio.get_running_loop()]

    first = asyncio.run(send())
    second = asyncio.run(send())  # asyncio.run twice: a new loop, a new multi
    assert first is not second
    assert first.engine.closed and not second.engine.closed  # type: ignore[attr-defined]
    assert len(client._drivers) == 1
    asyncio.run(client.aclose())
    assert second.engine.closed  # type: ignore[attr-defined]
    assert len(graph.sent_items()) == 2


def test_i10_cancelling_a_task_aborts_its_transfer_in_the_same_step(graph: FakeGraph) -> None:
    graph.stall_next()

    async def main() -> graphsend.SendError:
        async with client_for(graph) as client:
            task = asyncio.create_task(client.send_many([graph.create_draft()]))
            while not graph.requests:
                await asyncio.sleep(0.01)
            task.cancel()
            # No await on the client's side: the transfer is aborted while the task unwinds.
            done, _ = await asyncio.wait([task], timeout=0.05 * SCALE)
            assert done, "the cancelled send_many did not end at once"
            with pytest.raises(asyncio.CancelledError) as info:
                task.result()
            results = graphsend.interrupted_results(info.value)  # also on Python 3.10
            assert results is not None
            return results[0]  # type: ignore[return-value]

    result = asyncio.run(main())
    assert isinstance(result, graphsend.SendError) and result.may_have_sent


def test_i10_unclosed_client_in_a_live_loop_is_collected_and_closes_its_sockets(
    graph: FakeGraph,
) -> None:
    loop = asyncio.new_event_loop()
    try:
        fds_before = _open_fds()
        client = client_for(graph)
        assert loop.run_until_complete(client.send(graph.create_draft())).status == 202
        assert _open_fds() > fds_before  # its multi and its connection
        ref = weakref.ref(client)
        del client
        gc.collect()
        assert ref() is None
        # Closed by the finalizer, the loop still open (FakeGraph, in this process, closes its
        # end of the connection a moment later).
        deadline = time.monotonic() + 5 * SCALE
        while _open_fds() > fds_before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _open_fds() <= fds_before
        loop.run_until_complete(asyncio.sleep(0.01))  # the loop watches nothing stale
    finally:
        loop.close()


def test_i10_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")
    with FakeGraph(latency=0.05) as graph:
        graph.stall_next()
        stalled = graph.create_draft()
        drafts = graph.create_drafts(60)
        many = graph.create_drafts(40)

        async def main() -> tuple[list, list, BaseException]:
            assert "uvloop" in type(asyncio.get_running_loop()).__module__
            async with client_for(graph) as client:
                task = asyncio.create_task(client.send(stalled))
                while not graph.requests:
                    await asyncio.sleep(0.01)
                task.cancel()
                cancelled = await asyncio.gather(task, return_exceptions=True)
                sent = await asyncio.gather(*(client.send(d) for d in drafts))
                results = await client.send_many(many)
                return sent, results, cancelled[0]

        sent, results, cancelled = uvloop.run(main())
        assert isinstance(cancelled, asyncio.CancelledError)
        assert all(r.status == 202 for r in sent + results)
        assert len(graph.sent_items()) == 100


class _NoReaderLoop(asyncio.SelectorEventLoop):
    """Like the Windows Proactor loop: add_reader() is AbstractEventLoop's (NotImplemented)."""

    add_reader = asyncio.AbstractEventLoop.add_reader  # type: ignore[assignment]


def test_i10_a_loop_without_add_reader_is_refused_naming_the_selector_policy(
    graph: FakeGraph,
) -> None:
    loop = _NoReaderLoop()
    try:
        client = client_for(graph)
        with pytest.raises(RuntimeError, match="WindowsSelectorEventLoopPolicy") as info:
            loop.run_until_complete(client.send(graph.create_draft()))
        assert "add_reader" in str(info.value) and "Proactor" in str(info.value)
        assert graph.requests == []
    finally:
        loop.close()


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, time
    import graphsend
    from graphsend.testing import FakeGraph

    with FakeGraph(latency=30) as graph:  # nothing answers before the interrupt
        drafts = graph.create_drafts(8)

        async def main():
            async with graphsend.AsyncClient(graph.token, base_url=graph.base_url) as client:
                if sys.argv[1] == "send":
                    await asyncio.gather(*(client.send(d) for d in drafts))
                else:
                    await client.send_many(drafts)

        print("ready", flush=True)
        try:
            asyncio.run(main())
        except KeyboardInterrupt as exc:
            results = getattr(exc, "results", None)
            print("interrupted", "-" if results is None else len(results), flush=True)
    """
)


@pytest.mark.parametrize("call", ["send", "send_many"])
def test_i10_ctrl_c_under_asyncio_run_stops_awaited_sends_within_1s(call: str) -> None:
    script = CTRL_C_SCRIPT.replace("sys.argv[1]", repr(call))
    returncode, output, seconds = interrupt_subprocess(script, after=0.5)
    assert returncode == 0, output
    assert output.split()[0] == "interrupted", output
    # From the signal to the process gone, FakeGraph's shutdown included.
    assert seconds < 1.0 * SCALE, seconds


# ---- a real Jupyter kernel (ipykernel), driven over the Jupyter protocol (jupyter_client)

KERNEL_CELL = textwrap.dedent(
    """
    import time, graphsend
    from graphsend.testing import FakeGraph
    graph = FakeGraph(latency=30).__enter__()  # nothing answers before the interrupt
    client = graphsend.AsyncClient(graph.token, base_url=graph.base_url)
    drafts = graph.create_drafts(8)
    print("sending", flush=True)
    await {call}
    """
)


@pytest.mark.parametrize(
    "call", ["client.send(drafts[0])", "client.send_many(drafts)"], ids=["send", "send_many"]
)
def test_i10_kernel_interrupt_stops_an_awaited_send_within_1s(call: str) -> None:
    pytest.importorskip("ipykernel")
    manager_module = pytest.importorskip("jupyter_client.manager")
    km, kc = manager_module.start_new_kernel(kernel_name="python3", startup_timeout=60)
    try:
        msg_id = kc.execute(KERNEL_CELL.format(call=call))
        deadline = time.monotonic() + 30
        while True:  # until the cell prints: the await is under way
            msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            if msg["msg_type"] == "stream" and "sending" in msg["content"]["text"]:
                break
        time.sleep(0.5)
        sent_at = time.monotonic()
        km.interrupt_kernel()
        while True:  # that cell's execute_reply (a late kernel_info_reply may come first)
            reply = kc.get_shell_msg(timeout=10)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        seconds = time.monotonic() - sent_at
        assert reply["content"]["status"] == "error", reply["content"]
        assert seconds < 1.0 * SCALE, seconds
        # The kernel goes on: the next cell runs. ipykernel aborts requests that reach it while
        # it is still clearing its queue after the error ("aborted"): send the cell again then.
        for _ in range(10):
            reply = kc.execute_interactive(
                "graph.__exit__(None, None, None); print('ok')", timeout=30
            )
            if reply["content"]["status"] != "aborted":
                break
            time.sleep(0.2)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_i10_native_event_backend_is_named() -> None:
    expected = "epoll" if sys.platform == "linux" else "curl_multi_poll"
    assert _native.event_backend in (expected, "curl_multi_poll")  # portable build: the latter


def test_i10_401s_coming_back_one_by_one_fetch_one_new_token(graph: FakeGraph) -> None:
    """On the loop each answer is its own callback: the 401s of requests sent with a rotated
    token arrive after the new token was fetched, and must not throw the new one away."""
    from test_async_hardening import AsyncCredential

    credential = AsyncCredential(graph)
    users = [f"u{i}@contoso.com" for i in range(4)]
    for i, user in enumerate(users):
        graph.set_latency(user, 0.15 * i)  # the four answers come back 150 ms apart
    items = [(user, graph.create_draft(user)) for user in users]

    async def main() -> list:
        async with graphsend.AsyncClient(credential, base_url=graph.base_url) as client:
            await client.send(graph.create_draft())  # the first token
            graph.token = "rotated-token"  # every request in flight now gets a 401
            return await client.send_many(items)

    results = asyncio.run(main())
    assert all(isinstance(r, graphsend.Receipt) for r in results), results
    assert len(credential.calls) == 2  # the first token, and one after the rotation

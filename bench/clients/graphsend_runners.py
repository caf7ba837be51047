"""graphsend under test: send_message, Client.send (one thread or many), send_many, and
AsyncClient (send one at a time, send + gather, send_many). A missing piece raises NotAvailable
so its row reads "n/a (not built yet)" while the rest of the suite runs."""

from __future__ import annotations

import asyncio
from typing import Any

from ..common import BulkPlan, Target
from .base import AsyncBulk, AsyncSequential, NotAvailable, Sequential, Threaded, TransferClock


def _graphsend() -> Any:
    try:
        import graphsend
    except ImportError as e:
        raise NotAvailable(f"not built yet ({e})") from e
    return graphsend


def _need(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name)
    except AttributeError as e:
        raise NotAvailable(f"not built yet (no {name})") from e


def _client(target: Target, cls: str = "Client", **extra: Any) -> Any:
    return _need(_graphsend(), cls)(
        target.token, base_url=target.base_url, ca_bundle=target.cafile, http2=target.http2, **extra
    )


def send_message(target: Target) -> Sequential:
    gs = _graphsend()
    clock = TransferClock()

    def send(message_id: str) -> bool:
        r = gs.send_message(
            message_id,
            token=target.token,
            user=target.user,
            base_url=target.base_url,
            ca_bundle=target.cafile,
        )
        clock.add(r.elapsed)
        return r.status == 202  # type: ignore[no-any-return]

    return Sequential(send, clock=clock)


def client_send(target: Target) -> Sequential:
    client = _client(target)
    user = target.user
    clock = TransferClock()

    def send(message_id: str) -> bool:
        r = client.send(message_id, user=user)
        clock.add(r.elapsed)
        return r.status == 202  # type: ignore[no-any-return]

    return Sequential(send, client.close, clock)


def client_threads(target: Target, threads: int) -> Threaded:
    client = _client(target)  # one Client shared by every thread
    user = target.user
    return Threaded(threads, lambda: lambda mid: client.send(mid, user=user).status == 202)


class SendMany:
    """S3: Client.send_many over every item, max_per_mailbox=cap, max_concurrency wide enough
    (mailboxes x cap) that the per-mailbox cap is the only limit, as for the peers."""

    def __init__(self, target: Target, plan: BulkPlan) -> None:
        self._client = _client(target)
        _need(self._client, "send_many")
        self._plan = plan
        self._round = 0

    def run(self, n: int) -> int:
        ok = 0
        for _ in range(n):
            out = self._client.send_many(
                self._plan.items(self._round),
                max_concurrency=self._plan.max_in_flight,
                max_per_mailbox=self._plan.cap,
            )
            self._round += 1
            ok += sum(1 for r in out if getattr(r, "status", None) == 202)
        return ok

    def close(self) -> None:
        self._client.close()


def send_many(target: Target, plan: BulkPlan) -> SendMany:
    return SendMany(target, plan)


def send_many_portable(target: Target, plan: BulkPlan) -> SendMany:
    """send_many on the portable wait (curl_multi_poll, as off Linux): the build that
    `make -C bench portable` (part of `make bench`) leaves in build/portable."""
    import sys
    from pathlib import Path

    portable = Path(__file__).resolve().parents[2] / "build" / "portable"
    if not (portable / "graphsend").is_dir():
        raise NotAvailable("no portable build (run make -C bench portable first)")
    sys.path.insert(0, str(portable))
    backend = _need(_graphsend()._native, "event_backend")
    if backend != "curl_multi_poll":
        raise NotAvailable(f"build/portable waits with {backend}")
    return SendMany(target, plan)


async def _async_client(target: Target, **extra: Any) -> Any:
    client = _client(target, "AsyncClient", **extra)
    return await client.__aenter__()


def _async_close(client: Any):  # -> coroutine function
    async def close() -> None:
        await client.__aexit__(None, None, None)

    return close


async def async_client_send(target: Target, loop: asyncio.AbstractEventLoop) -> AsyncSequential:
    client = await _async_client(target)
    user = target.user

    async def send(mid: str) -> bool:
        return (await client.send(mid, user=user)).status == 202  # type: ignore[no-any-return]

    return AsyncSequential(loop, send, _async_close(client))


async def async_gather(
    target: Target, plan: BulkPlan, loop: asyncio.AbstractEventLoop
) -> AsyncBulk:
    # AsyncClient caps concurrent sends per mailbox itself (max_per_mailbox), so the idiomatic
    # call is a plain gather, with no semaphores of the caller's own.
    client = await _async_client(target, max_per_mailbox=plan.cap)

    async def send(mid: str, user: str) -> bool:
        return (await client.send(mid, user=user)).status == 202  # type: ignore[no-any-return]

    return AsyncBulk(loop, plan, send, _async_close(client), caller_limits=False)


class AsyncSendMany:
    def __init__(self, client: Any, plan: BulkPlan, loop: asyncio.AbstractEventLoop) -> None:
        _need(client, "send_many")
        self._client, self._plan, self._loop = client, plan, loop
        self._round = 0

    async def _bulk(self) -> int:
        out = await self._client.send_many(
            self._plan.items(self._round), max_concurrency=self._plan.max_in_flight
        )
        self._round += 1
        return sum(1 for r in out if getattr(r, "status", None) == 202)

    def run(self, n: int) -> int:
        return sum(self._loop.run_until_complete(self._bulk()) for _ in range(n))

    def close(self) -> None:
        self._loop.run_until_complete(_async_close(self._client)())


async def async_send_many(
    target: Target, plan: BulkPlan, loop: asyncio.AbstractEventLoop
) -> AsyncSendMany:
    client = await _async_client(target, max_per_mailbox=plan.cap)
    return AsyncSendMany(client, plan, loop)

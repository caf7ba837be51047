"""asyncio peers: httpx.AsyncClient and aiohttp.ClientSession, one per runner, reused, keep-alive
on, static headers set once, pools sized to the concurrency the scenario allows."""

from __future__ import annotations

import asyncio

from ..common import BulkPlan, Target, new_request_id
from .base import AsyncBulk, AsyncSequential, NotAvailable


def _httpx_client(target: Target, connections: int):  # -> httpx.AsyncClient
    import httpx

    if target.http2:
        try:
            import h2  # noqa: F401
        except ImportError as e:
            raise NotAvailable("httpx HTTP/2 needs the h2 package") from e
    return httpx.AsyncClient(
        headers=target.headers(),
        http2=target.http2,
        verify=target.ssl_context() or True,
        timeout=httpx.Timeout(100.0, connect=30.0),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


def _httpx_send(client, target: Target):  # client: httpx.AsyncClient
    async def send(message_id: str, user: str | None = None) -> bool:
        r = await client.post(
            target.url(message_id, user), headers={"client-request-id": new_request_id()}
        )
        r.headers.get("request-id")
        return r.status_code == 202

    return send


async def httpx_async_runner(target: Target, loop: asyncio.AbstractEventLoop) -> AsyncSequential:
    client = _httpx_client(target, 1)
    return AsyncSequential(loop, _httpx_send(client, target), client.aclose)


async def httpx_bulk(target: Target, plan: BulkPlan, loop: asyncio.AbstractEventLoop) -> AsyncBulk:
    client = _httpx_client(target, plan.max_in_flight)
    return AsyncBulk(loop, plan, _httpx_send(client, target), client.aclose)


def _aiohttp_session(target: Target, connections: int):  # -> aiohttp.ClientSession
    import aiohttp

    if target.http2:
        raise NotAvailable("aiohttp has no HTTP/2")
    connector = aiohttp.TCPConnector(
        limit=connections, limit_per_host=0, ssl=target.ssl_context() or True
    )
    return aiohttp.ClientSession(
        headers=target.headers(),
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=100.0, connect=30.0),
    )


def _aiohttp_send(session, target: Target):  # session: aiohttp.ClientSession
    async def send(message_id: str, user: str | None = None) -> bool:
        async with session.post(
            target.url(message_id, user),
            data=b"",
            headers={"client-request-id": new_request_id()},
        ) as r:
            await r.read()
            r.headers.get("request-id")
            return r.status == 202

    return send


async def aiohttp_runner(target: Target, loop: asyncio.AbstractEventLoop) -> AsyncSequential:
    session = _aiohttp_session(target, 1)
    return AsyncSequential(loop, _aiohttp_send(session, target), session.close)


async def aiohttp_bulk(
    target: Target, plan: BulkPlan, loop: asyncio.AbstractEventLoop
) -> AsyncBulk:
    session = _aiohttp_session(target, plan.max_in_flight)
    return AsyncBulk(loop, plan, _aiohttp_send(session, target), session.close)


# Peers at their best (issue 10): the same runners with smaller pools; S3 reports each size.
def _sized(make, pool: int):  # make: httpx_bulk or aiohttp_bulk
    async def factory(target: Target, plan: BulkPlan, loop: asyncio.AbstractEventLoop) -> AsyncBulk:
        sized = BulkPlan(plan.mailboxes, plan.per_mailbox, plan.cap)
        runner = await make(target, _PoolPlan(sized, pool), loop)
        runner._plan = plan  # the items and caps stay the scenario's
        return runner

    return factory


class _PoolPlan(BulkPlan):
    """A BulkPlan whose max_in_flight (the pool size the runners read) is `pool`."""

    def __init__(self, plan: BulkPlan, pool: int) -> None:
        object.__setattr__(self, "mailboxes", plan.mailboxes)
        object.__setattr__(self, "per_mailbox", plan.per_mailbox)
        object.__setattr__(self, "cap", plan.cap)
        object.__setattr__(self, "_pool", pool)

    @property
    def max_in_flight(self) -> int:
        return self._pool  # type: ignore[attr-defined,no-any-return]


httpx_bulk_64 = _sized(httpx_bulk, 64)
httpx_bulk_128 = _sized(httpx_bulk, 128)
aiohttp_bulk_64 = _sized(aiohttp_bulk, 64)
aiohttp_bulk_128 = _sized(aiohttp_bulk, 128)

"""Peers with a native core: curl_cffi's AsyncSession (libcurl's multi socket API on the event
loop, the closest design to graphsend's AsyncClient) and pyreqwest (a Rust core, reqwest on
tokio). One session or client per runner, reused, static headers set once."""

from __future__ import annotations

import asyncio

from ..common import BulkPlan, Target, new_request_id
from .base import AsyncBulk, AsyncSequential, NotAvailable


def _curl_cffi_session(target: Target, connections: int):  # -> curl_cffi AsyncSession
    try:
        from curl_cffi import CurlHttpVersion
        from curl_cffi.requests import AsyncSession
    except ImportError as e:
        raise NotAvailable(f"curl_cffi not installed ({e})") from e
    return AsyncSession(
        max_clients=connections,
        headers=target.headers(),
        verify=target.cafile or True,
        timeout=100.0,
        http_version=CurlHttpVersion.V2TLS if target.http2 else CurlHttpVersion.V1_1,
    )


def _curl_cffi_send(session, target: Target):
    async def send(message_id: str, user: str | None = None) -> bool:
        r = await session.post(
            target.url(message_id, user), headers={"client-request-id": new_request_id()}
        )
        r.headers.get("request-id")
        return r.status_code == 202  # type: ignore[no-any-return]

    return send


async def curl_cffi_runner(target: Target, loop: asyncio.AbstractEventLoop) -> AsyncSequential:
    session = _curl_cffi_session(target, 1)
    return AsyncSequential(loop, _curl_cffi_send(session, target), session.close)


def curl_cffi_bulk(pool: int | None = None):  # -> factory
    async def factory(target: Target, plan: BulkPlan, loop: asyncio.AbstractEventLoop) -> AsyncBulk:
        session = _curl_cffi_session(target, pool or plan.max_in_flight)
        return AsyncBulk(loop, plan, _curl_cffi_send(session, target), session.close)

    return factory


def _pyreqwest_client(target: Target, connections: int):  # -> pyreqwest Client
    try:
        from pyreqwest.client import ClientBuilder
    except ImportError as e:
        raise NotAvailable(f"pyreqwest not installed ({e})") from e
    builder = ClientBuilder().default_headers(target.headers()).max_connections(connections)
    if target.cafile:
        with open(target.cafile, "rb") as f:
            builder = builder.add_root_certificate_pem(f.read())
    builder = builder.http2(True) if target.http2 else builder.http1_only()
    return builder.build()


def _pyreqwest_send(client, target: Target):
    async def send(message_id: str, user: str | None = None) -> bool:
        request = (
            client.post(target.url(message_id, user))
            .header("client-request-id", new_request_id())
            .build()
        )
        r = await request.send()
        await r.bytes()
        r.headers.get("request-id")
        return r.status == 202  # type: ignore[no-any-return]

    return send


async def pyreqwest_runner(target: Target, loop: asyncio.AbstractEventLoop) -> AsyncSequential:
    client = _pyreqwest_client(target, 1)
    return AsyncSequential(loop, _pyreqwest_send(client, target), client.close)


def pyreqwest_bulk(pool: int | None = None):  # -> factory
    async def factory(target: Target, plan: BulkPlan, loop: asyncio.AbstractEventLoop) -> AsyncBulk:
        client = _pyreqwest_client(target, pool or plan.max_in_flight)
        return AsyncBulk(loop, plan, _pyreqwest_send(client, target), client.close)

    return factory


curl_cffi_bulk_64 = curl_cffi_bulk(64)
curl_cffi_bulk_128 = curl_cffi_bulk(128)
curl_cffi_bulk_400 = curl_cffi_bulk()
pyreqwest_bulk_64 = pyreqwest_bulk(64)
pyreqwest_bulk_128 = pyreqwest_bulk(128)
pyreqwest_bulk_400 = pyreqwest_bulk()

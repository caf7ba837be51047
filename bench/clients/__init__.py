"""Runners: one object per client library that performs sends the way that library is meant to be
used. Every family lives in its own module and is imported only inside the worker process that
runs it, so one library's import or threads never touch another's numbers.

`SEQUENTIAL`, `BULK` and `THREADED` map a client's display name to "module:factory". A factory
takes a Target (and a BulkPlan or thread count) and returns a Runner; async factories are
coroutines, run on the worker's event loop.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

# S1: sequential sends on one connection.
SEQUENTIAL: dict[str, str] = {
    "graphsend send_message": "graphsend_runners:send_message",
    "graphsend Client.send": "graphsend_runners:client_send",
    "graphsend AsyncClient.send": "graphsend_runners:async_client_send",
    "pycurl": "sync_peers:pycurl_runner",
    "requests.Session": "sync_peers:requests_runner",
    "httpx.Client": "sync_peers:httpx_runner",
    "urllib3.PoolManager": "sync_peers:urllib3_runner",
    "httpx.AsyncClient": "async_peers:httpx_async_runner",
    "aiohttp": "async_peers:aiohttp_runner",
    "msgraph-sdk": "msgraph_peer:sequential_runner",
    "curl_cffi AsyncSession": "native_peers:curl_cffi_runner",
    "pyreqwest": "native_peers:pyreqwest_runner",
}

# S3: bulk sends over many mailboxes with a per-mailbox cap.
BULK: dict[str, str] = {
    "graphsend send_many": "graphsend_runners:send_many",
    "graphsend send_many (portable wait)": "graphsend_runners:send_many_portable",
    "graphsend AsyncClient.send_many": "graphsend_runners:async_send_many",
    "graphsend AsyncClient.send + gather": "graphsend_runners:async_gather",
    "threads + requests": "sync_peers:requests_bulk",
    "asyncio + httpx": "async_peers:httpx_bulk",
    "asyncio + aiohttp": "async_peers:aiohttp_bulk",
    "msgraph-sdk + gather": "msgraph_peer:bulk_runner",
    # Peers at their best: each with a few pool sizes (the rows above use 400, the scenario's
    # allowed concurrency); the report names the best per peer.
    "threads + requests (64 threads)": "sync_peers:requests_bulk_64",
    "threads + requests (128 threads)": "sync_peers:requests_bulk_128",
    "asyncio + httpx (pool 64)": "async_peers:httpx_bulk_64",
    "asyncio + httpx (pool 128)": "async_peers:httpx_bulk_128",
    "asyncio + aiohttp (pool 64)": "async_peers:aiohttp_bulk_64",
    "asyncio + aiohttp (pool 128)": "async_peers:aiohttp_bulk_128",
    "curl_cffi AsyncSession + gather (pool 64)": "native_peers:curl_cffi_bulk_64",
    "curl_cffi AsyncSession + gather (pool 128)": "native_peers:curl_cffi_bulk_128",
    "curl_cffi AsyncSession + gather (pool 400)": "native_peers:curl_cffi_bulk_400",
    "pyreqwest + gather (pool 64)": "native_peers:pyreqwest_bulk_64",
    "pyreqwest + gather (pool 128)": "native_peers:pyreqwest_bulk_128",
    "pyreqwest + gather (pool 400)": "native_peers:pyreqwest_bulk_400",
}

# S2: one client shared by N threads (graphsend; peers in the full run for context).
THREADED: dict[str, str] = {
    "graphsend Client.send": "graphsend_runners:client_threads",
    "pycurl (handle per thread)": "sync_peers:pycurl_threads",
    "requests (Session per thread)": "sync_peers:requests_threads",
}


def selected(clients: dict[str, str]) -> dict[str, str]:
    """The clients whose name matches the regex in BENCH_CLIENTS (all when unset): for focused
    runs on a shared machine, e.g. BENCH_CLIENTS='graphsend' python -m bench.run --only s3."""
    import os
    import re

    pattern = os.environ.get("BENCH_CLIENTS")
    if not pattern:
        return clients
    return {name: spec for name, spec in clients.items() if re.search(pattern, name)}


def load(spec: str) -> Callable[..., Any]:
    """Import "module:factory" from this package; ImportError means the client is not built."""
    module, name = spec.split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)  # type: ignore[no-any-return]

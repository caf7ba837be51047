"""msgraph-sdk, Microsoft's own client: GraphServiceClient over a GraphRequestAdapter whose httpx
client carries the SDK's default middleware (retry, redirect, telemetry, ...), pointed at the
loopback server.

Authentication goes through the SDK's AzureIdentityAuthenticationProvider with a static-token
credential (get_token returns an azure.core AccessToken), as a ClientSecretCredential would after
its first token. The provider only attaches tokens for allowed hosts and refuses plain http
except on localhost, so 127.0.0.1 is allowed explicitly and http works on loopback.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..common import BulkPlan, Target
from .base import AsyncBulk, AsyncSequential


class StaticCredential:
    """An azure-core TokenCredential that always hands out the same token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any):  # -> azure.core.credentials.AccessToken
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(time.time()) + 3600)


def _graph_client(target: Target, connections: int):  # -> GraphServiceClient
    import httpx
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph_core import GraphClientFactory
    from msgraph_core.authentication import AzureIdentityAuthenticationProvider

    http = httpx.AsyncClient(
        http2=target.http2,
        verify=target.ssl_context() or True,
        timeout=httpx.Timeout(100.0, connect=30.0),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )
    http = GraphClientFactory.create_with_default_middleware(client=http)
    auth = AzureIdentityAuthenticationProvider(
        StaticCredential(target.token),  # type: ignore[arg-type]
        scopes=["https://graph.microsoft.com/.default"],
        allowed_hosts=["127.0.0.1"],
    )
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = f"{target.base_url}/v1.0"
    return GraphServiceClient(request_adapter=adapter), http


def _sender(client, target: Target):  # client: GraphServiceClient
    async def send(message_id: str, user: str | None = None) -> bool:
        user = target.user if user is None else user
        box = client.me if user is None else client.users.by_user_id(user)
        # Returns None on 2xx; raises an APIError otherwise.
        await box.messages.by_message_id(message_id).send.post()
        return True

    return send


async def sequential_runner(target: Target, loop: asyncio.AbstractEventLoop) -> AsyncSequential:
    client, http = _graph_client(target, 1)
    return AsyncSequential(loop, _sender(client, target), http.aclose)


async def bulk_runner(target: Target, plan: BulkPlan, loop: asyncio.AbstractEventLoop) -> AsyncBulk:
    client, http = _graph_client(target, plan.max_in_flight)
    return AsyncBulk(loop, plan, _sender(client, target), http.aclose)

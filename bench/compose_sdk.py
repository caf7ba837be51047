"""msgraph-sdk's side of bench/compose.py: the same compose requests through the SDK's own
request builders (GraphServiceClient over its default middleware), and its LargeFileUploadTask.

LargeFileUploadTask does not finish an Outlook attachment upload as shipped (msgraph-core 1.5,
also its newest source; microsoftgraph/msgraph-sdk-python-core#691). Two defects, each worked
around by the smallest override we found (``OutlookUploadTask``):

1. Outlook's upload service answers each chunk with ``nextExpectedRanges: ["{start}"]`` (Graph's
   "Attach large files to Outlook messages"). The task appends "-" and then parses an end from
   "start-", which raises ValueError (logged and swallowed mid-way, raised on the last chunk).
   Fix: the ``next_range`` setter completes an open range "start-" to "start-end" (one chunk,
   capped at the file size) before the task reads it.
2. After the chunk that completes the upload (201, empty body) the task PUTs the last range once
   more, which gets 404 (the session is gone) and raises APIError. Fix: ``last_chunk`` does
   nothing once a chunk PUT has come back without a session (the 201).

Everything else (reading the file, building each PUT, the adapter, the middleware) is the SDK's.
"""

from __future__ import annotations

import datetime
import os
import time
from typing import Any

os.environ.setdefault("OTEL_SDK_DISABLED", "true")


class StaticCredential:
    """An azure-core TokenCredential that always hands out the same token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any):  # -> azure.core.credentials.AccessToken
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(time.time()) + 3600)


def graph_client(base: str, cafile: str | None, token: str, *, auth: bool = True):
    """(GraphServiceClient, its httpx client): HTTP/1.1, one connection, the default middleware
    (with the rewrite of the builders' "/users/me-token-to-replace" to "/me")."""
    import httpx
    from kiota_abstractions.authentication.anonymous_authentication_provider import (
        AnonymousAuthenticationProvider,
    )
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.graph_request_adapter import options as sdk_options
    from msgraph_core import GraphClientFactory
    from msgraph_core.authentication import AzureIdentityAuthenticationProvider

    http = httpx.AsyncClient(verify=cafile or True, http2=False, timeout=httpx.Timeout(100.0))
    http = GraphClientFactory.create_with_default_middleware(client=http, options=sdk_options)
    provider = (
        AzureIdentityAuthenticationProvider(
            StaticCredential(token),  # type: ignore[arg-type]
            scopes=["https://graph.microsoft.com/.default"],
            allowed_hosts=["127.0.0.1"],
        )
        if auth
        else AnonymousAuthenticationProvider()
    )
    adapter = GraphRequestAdapter(provider, client=http)
    adapter.base_url = f"{base}/v1.0"
    return GraphServiceClient(request_adapter=adapter), http


def upload_task_class():
    from msgraph_core.tasks.large_file_upload import LargeFileUploadTask

    class OutlookUploadTask(LargeFileUploadTask):
        """LargeFileUploadTask with the two overrides described in the module docstring."""

        _complete = False

        @property
        def next_range(self):
            return self._next_range

        @next_range.setter
        def next_range(self, value):
            if value and value.endswith("-") and value[:-1].isdigit():
                start = int(value[:-1])
                value = f"{start}-{min(start + self.max_chunk_size, self.file_size) - 1}"
            self._next_range = value

        async def next_chunk(self, file, range_start=0, range_end=0):
            session = await super().next_chunk(file, range_start, range_end)
            if session is None:  # 201 with an empty body: the upload is complete
                self._complete = True
            return session

        async def last_chunk(self, file, *args, **kwargs):
            if self._complete:
                return None
            return await super().last_chunk(file, *args, **kwargs)

    return OutlookUploadTask


def sdk_message(subject: str, body: str, to: str):
    from msgraph.generated.models.body_type import BodyType
    from msgraph.generated.models.email_address import EmailAddress
    from msgraph.generated.models.item_body import ItemBody
    from msgraph.generated.models.message import Message
    from msgraph.generated.models.recipient import Recipient

    return Message(
        subject=subject,
        body=ItemBody(content_type=BodyType.Text, content=body),
        to_recipients=[Recipient(email_address=EmailAddress(address=to))],
    )


def prefer_immutable():
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from kiota_abstractions.headers_collection import HeadersCollection

    config: RequestConfiguration[Any] = RequestConfiguration(headers=HeadersCollection())
    config.headers.add("Prefer", 'IdType="ImmutableId"')
    return config


async def draft_and_send(client, message, config) -> None:
    """POST /me/messages, then POST /me/messages/{id}/send: the SDK's two request builders."""
    created = await client.me.messages.post(message, request_configuration=config)
    assert created is not None and created.id
    await client.me.messages.by_message_id(created.id).send.post(request_configuration=config)


async def upload(client, anonymous_adapter, message_id: str, path: str, chunk: int) -> None:
    """createUploadSession through the request builders, then OutlookUploadTask from the file.
    The task gets an adapter without authentication: in production the upload URL is another
    host (outside allowed_hosts), so the SDK sends no token there either."""
    from msgraph.generated.models.attachment_item import AttachmentItem
    from msgraph.generated.models.attachment_type import AttachmentType
    from msgraph.generated.users.item.messages.item.attachments.create_upload_session.create_upload_session_post_request_body import (  # noqa: E501
        CreateUploadSessionPostRequestBody,
    )

    size = os.path.getsize(path)
    item = AttachmentItem(attachment_type=AttachmentType.File, name="big.bin", size=size)
    body = CreateUploadSessionPostRequestBody(attachment_item=item)
    attachments = client.me.messages.by_message_id(message_id).attachments
    session = await attachments.create_upload_session.post(body)
    assert session is not None and session.upload_url
    if session.expiration_date_time is None:  # the task refuses a session without one
        session.expiration_date_time = datetime.datetime.now(
            datetime.timezone.utc
        ) + datetime.timedelta(minutes=15)
    with open(path, "rb") as f:
        task = upload_task_class()(session, anonymous_adapter, f, max_chunk_size=chunk)
        await task.upload()

"""The public API as a user writes it, with azure-identity's and MSAL's real classes.

Never run by pytest: `make lint` type-checks it with `mypy --strict` and basedpyright (pyright),
so that the README's examples and the public signatures stay usable in strict code.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, cast

import msal  # type: ignore[import-untyped]
from azure.identity import (
    CertificateCredential,
    ClientSecretCredential,
    DefaultAzureCredential,
    ManagedIdentityCredential,
)

import graphsend
from graphsend import (
    AsyncClient,
    AuthenticationError,
    Client,
    GraphError,
    Receipt,
    Retry,
    SendError,
    ThrottledError,
    TransportError,
    send_message,
)
from graphsend.testing import FakeGraph, Message, RecordedRequest


def receipt_fields(receipt: Receipt) -> tuple[int, str | None, str, str | None, float]:
    return (
        receipt.status,
        receipt.request_id,
        receipt.client_request_id,
        receipt.date,
        receipt.elapsed,
    )


def item_fields(receipt: Receipt) -> tuple[str | None, str | None, bool]:
    return (receipt.message_id, receipt.user, receipt.reconciled)


def reconciling(client: Client, draft_id: str) -> Receipt | None:
    verdict: Literal["sent", "not_sent", "unknown"] = client.reconcile(
        draft_id, user="adele@contoso.com", wait=30.0
    )
    if verdict == "unknown":
        verdict = client.reconcile(draft_id, stamp="3f1c", wait=1)
    careful = Retry(reconcile_ambiguous=True, reconcile_wait=30.0)
    receipt = send_message(draft_id, token="t", retry=careful)
    item_fields(receipt)
    return receipt if verdict == "sent" else None


async def reconciling_async(client: AsyncClient, draft_id: str) -> bool:
    verdict: Literal["sent", "not_sent", "unknown"] = await client.reconcile(draft_id, wait=5)
    many: list[Literal["sent", "not_sent", "unknown"]] = await client.reconcile_many(
        [draft_id, ("adele@contoso.com", draft_id)], wait=5
    )
    return verdict == "sent" and many[0] == "sent"


def reconciling_many(client: Client, ids: list[str]) -> int:
    verdicts = client.reconcile_many(
        [*ids, ("adele@contoso.com", ids[0])], wait=30, max_concurrency=16, max_per_mailbox=4
    )
    return verdicts.count("not_sent")


def error_fields(err: SendError) -> str:
    may: bool = err.may_have_sent
    crid: str | None = err.client_request_id
    attempts: int = err.attempts
    text = f"{may} {crid} {attempts}"
    if isinstance(err, GraphError):
        status: int = err.status
        code: str | None = err.code
        message: str | None = err.message
        inner: str | None = err.inner_code
        request_id: str | None = err.request_id
        date: str | None = err.date
        retry_after: float | None = err.retry_after
        headers: dict[str, str] = err.headers
        body: str = err.body
        text += f"{status} {code} {message} {inner} {request_id} {date} {retry_after}"
        text += f"{len(headers)} {len(body)}"
    if isinstance(err, ThrottledError) and err.retry_after is not None:
        text += f" wait {err.retry_after:.1f}s"
    if isinstance(err, TransportError):
        curl_code: int = err.curl_code
        reason: str = err.reason
        text += f"{curl_code} {reason}"
    if isinstance(err, graphsend.TimeoutError):
        text += " timed out"
    if isinstance(err, AuthenticationError) and err.status == 0:
        text += " (the token provider failed)"
    return text


def with_a_string_token(graph: FakeGraph) -> None:
    draft: str = graph.create_draft()
    receipt: Receipt = send_message(
        draft,
        token=graph.token,
        base_url=graph.base_url,
        timeout=30.0,
        connect_timeout=5,
        ca_bundle=Path("ca.pem"),
    )
    receipt_fields(receipt)
    with Client(graph.token, base_url=graph.base_url, ca_bundle=graph.ca_bundle) as client:
        client.send(draft, user="adele@contoso.com", client_request_id="my-id")


def with_providers(tenant: str, client_id: str, secret: str) -> list[Client]:
    scope = "https://graph.microsoft.com/.default"
    app = msal.ConfidentialClientApplication(
        client_id, authority=f"https://login.microsoftonline.com/{tenant}", client_credential=secret
    )

    def msal_token() -> dict[str, Any]:
        # MSAL is untyped: its result dict goes to graphsend as is.
        acquire: Callable[..., object] = app.acquire_token_for_client  # pyright: ignore
        result = acquire(scopes=[scope])
        assert isinstance(result, dict)
        return cast("dict[str, Any]", result)

    def plain_token() -> str:
        return os.environ["GRAPH_TOKEN"]

    return [
        Client(ClientSecretCredential(tenant, client_id, secret)),
        Client(CertificateCredential(tenant, client_id, "cert.pem"), cloud="usgov"),
        Client(DefaultAzureCredential()),
        Client(ManagedIdentityCredential(), proxy=False),
        Client(msal_token, retry=Retry(max_attempts=1)),
        Client(plain_token, proxy="http://proxy.example:3128", http2=False),
        Client(plain_token, proxy="https://proxy.corp:443", proxy_ca_bundle=Path("corp-ca.pem")),
        Client("a-token", user_agent="my-app/1.0", ca_bundle=Path("ca.pem")),
        Client(plain_token, immutable_ids=False),
    ]


def composing(client: Client, report: Path) -> Receipt:
    """Compose: a Message with attachments, a draft, attach, sendMail."""
    logo = graphsend.Attachment(
        b"\x89PNG...", name="logo.png", content_type="image/png", inline=True, content_id="logo"
    )
    message = graphsend.Message(
        "Quarterly report",
        '<p>See attached.</p><img src="cid:logo">',
        body_type="html",
        to=["adele@contoso.com", ("Megan Bowen", "megan@contoso.com")],
        cc="lee@contoso.com",
        attachments=[report, logo],
    )
    try:
        draft_id: str = client.create_draft(message, user="adele@contoso.com")
    except SendError as exc:
        left: object = getattr(exc, "draft_id", None)  # a draft made before the failure
        print(left)
        raise

    def progress(done: int, total: int) -> None:
        print(f"{done}/{total}")

    attachment_id: str = client.attach(draft_id, report, name="report.pdf", progress=progress)
    client.attach(draft_id, graphsend.Attachment(Path("notes.txt")))
    print(attachment_id)
    client.send(draft_id, user="adele@contoso.com")
    quick = graphsend.Message("Lunch?", "12:30?", to="megan@contoso.com")
    return client.send_mail(quick, save_to_sent_items=False)


def in_bulk(client: Client, ids: list[str]) -> int:
    retry = Retry(
        max_attempts=4,
        max_total_wait=60.0,
        backoff_base=0.5,
        backoff_max=10.0,
        retry_ambiguous=False,
    )
    assert retry.max_attempts == 4
    items: list[str | tuple[str | None, str]] = [*ids, ("adele@contoso.com", ids[0])]
    try:
        results = client.send_many(
            items, max_concurrency=16, max_per_mailbox=4, progress=False, stop_on_error=False
        )
    except KeyboardInterrupt as exc:
        partial: list[Receipt | SendError] | None = graphsend.interrupted_results(exc)
        print(len(partial or []))
        raise
    journaled: list[Receipt | SendError] = client.send_many(
        items, journal=Path("run.db")
    ) + client.send_many(items, journal="run.db")
    sent = 0
    for result in [*results, *journaled]:
        if isinstance(result, Receipt):
            sent += 1
        else:
            print(error_fields(result))
    return sent


async def asynchronously(graph: FakeGraph) -> list[Receipt | SendError]:
    async with AsyncClient(graph.token, base_url=graph.base_url, max_per_mailbox=4) as client:
        receipt: Receipt = await client.send(graph.create_draft(), user=None)
        receipt_fields(receipt)
        draft_id: str = await client.create_draft(graphsend.Message("s", "b", to="a@b.c"))
        attachment_id: str = await client.attach(draft_id, b"x", name="x.txt")
        reply_id: str = await client.create_reply(draft_id, comment="c", reply_all=True)
        forward_id: str = await client.create_forward(draft_id, to=["a@b.c"], comment="c")
        print(attachment_id, reply_id, forward_id)
        mailed: Receipt = await client.send_mail(graphsend.Message("m", to="a@b.c"))
        mimed: Receipt = await client.send_mime(b"Subject: x\r\n\r\nb", user="a@b.c")
        receipt_fields(mailed)
        receipt_fields(mimed)
        mixed: list[
            str | tuple[str | None, str] | graphsend.Message | tuple[str | None, graphsend.Message]
        ] = [
            graph.create_draft(),
            graphsend.Message("n", to="a@b.c"),
            ("adele@contoso.com", graphsend.Message("o", to="a@b.c")),
        ]
        await client.send_many([graph.create_draft()], journal=Path("run.db"))
        return await client.send_many(mixed, max_concurrency=8)


def with_fake_graph() -> None:
    with FakeGraph(https=True) as graph:
        graph.fail_next(429, retry_after=1)
        graph.fail_next(500, body="{}")
        graph.reset_next()
        with_a_string_token(graph)
        asyncio.run(asynchronously(graph))
        sent: list[Message] = graph.sent_items()
        seen: list[RecordedRequest] = graph.requests
        print(len(sent), len(seen), graph.connections)


def on_many_workers(graph: FakeGraph, redis_url: str) -> list[Receipt | SendError]:
    shared = graphsend.LocalLimiter(per_mailbox=4, messages_per_minute=30)
    fleet = graphsend.RedisLimiter(
        redis_url,
        per_mailbox=4,
        messages_per_minute=30,
        lease=30.0,
        fallback=graphsend.LocalLimiter(per_mailbox=1),
    )
    client = Client(graph.token, base_url=graph.base_url, limiter=fleet)
    local = Client(graph.token, base_url=graph.base_url, limiter=shared)
    slots, wait = shared.acquire("adele@contoso.com", 2, sends=True)
    shared.release(slots, used=False)
    assert wait >= 0.0
    try:
        local.send("AAMkAD...")
    except graphsend.LimiterError as exc:
        assert not exc.may_have_sent
    async_client = graphsend.AsyncClient(graph.token, base_url=graph.base_url, limiter=fleet)
    del async_client
    return client.send_many(["AAMkAD..."])

"""Issue 11, AsyncClient side: the compose coroutines run the same Operations as Client, on the
event loop's LoopEngine (FakeGraph and small independent servers). Names: test_i11_async_<what>."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from compose_servers import Answer, MiniGraph, Recorder, error

import graphsend
from graphsend import AsyncClient, Attachment, Message
from graphsend.testing import FakeGraph

PREFER = 'IdType="ImmutableId"'
NO_RETRY_WAIT = graphsend.Retry(backoff_base=0.01, backoff_max=0.02)
SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))


def aclient(base_url: str, token: object = "tok", **kw: object) -> AsyncClient:
    return AsyncClient(token, base_url=base_url, http2=False, retry=NO_RETRY_WAIT, **kw)  # type: ignore[arg-type]


def blob(tmp_path: Path, size: int, name: str = "report.pdf") -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


class Script(list[Answer]):
    rec: Recorder


@pytest.fixture
def scripted() -> Iterator[Script]:
    answers = Script()
    answers.rec = Recorder(lambda r: answers.pop(0))
    yield answers
    answers.rec.close()


# --- every coroutine against FakeGraph --------------------------------------------------------


def test_i11_async_accepts_immutable_ids_like_client(graph: FakeGraph) -> None:
    async def main() -> str:
        async with aclient(graph.base_url, graph.token, immutable_ids=False) as c:
            assert c.immutable_ids is False
            draft_id = await c.create_draft(Message("s", "b", to="a@b.com"))
            await c.send(draft_id)
            await c.send_mail(Message("m", "b", to="a@b.com"))
            return draft_id

    draft_id = asyncio.run(main())
    assert len(graph.requests) == 3 and all("prefer" not in r.headers for r in graph.requests)
    assert graph.sent_items()[0].sent_id != draft_id  # Graph gives a new id without the header


def test_i11_async_create_draft_every_size_uploads_unsigned(
    graph: FakeGraph, tmp_path: Path
) -> None:
    small, small_data = blob(tmp_path, 1000, "a.txt")
    big, big_data = blob(tmp_path, 5_000_000, "d.bin")

    async def main() -> str:
        async with aclient(graph.base_url, graph.token) as c:
            return await c.create_draft(
                Message("mix", "<p>b</p>", body_type="html", to="x@y.z", attachments=[small, big])
            )

    draft_id = asyncio.run(main())
    got = {a.name: a.content_bytes for a in graph.message(draft_id).attachments}
    assert got == {"a.txt": small_data, "d.bin": big_data}
    assert graph.message(draft_id).subject == "mix"
    puts = [r for r in graph.requests if r.method == "PUT"]
    assert len(puts) == 2 and all("authorization" not in r.headers for r in puts)
    posts = [r for r in graph.requests if r.method == "POST"]
    assert all(r.headers.get("authorization") == f"Bearer {graph.token}" for r in posts)
    assert all(r.headers.get("prefer") == PREFER for r in graph.requests)
    assert all(len(r.body) <= 4 * 1024 * 1024 for r in graph.requests)


def test_i11_async_reply_reply_all_forward(graph: FakeGraph) -> None:
    original = graph.add_received(subject="Lunch?", to=["me@contoso.com"])
    original_id = original.id if hasattr(original, "id") else original

    async def main() -> tuple[str, str, str]:
        async with aclient(graph.base_url, graph.token) as c:
            return await asyncio.gather(
                c.create_reply(original_id, comment="Yes"),
                c.create_reply(original_id, reply_all=True),
                c.create_forward(original_id, to=["Zoe <zoe@contoso.com>"], comment="FYI"),
            )

    reply, reply_all, forward = asyncio.run(main())
    assert graph.message(reply).kind == "reply" and graph.message(reply).comment == "Yes"
    assert graph.message(reply_all).kind in ("replyAll", "reply_all", "reply")
    fw = graph.message(forward)
    assert fw.kind == "forward" and fw.comment == "FYI"
    assert [(r.name, r.address) for r in fw.to] == [("Zoe", "zoe@contoso.com")]
    assert all(r.headers.get("prefer") == PREFER for r in graph.requests)


def test_i11_async_attach_small_large_and_progress(graph: FakeGraph, tmp_path: Path) -> None:
    path, data = blob(tmp_path, 9_500_000)
    seen: list[tuple[int, int]] = []

    async def main() -> tuple[str, str, str]:
        async with aclient(graph.base_url, graph.token) as c:
            draft_id = await c.create_draft(Message("big", "b", to="a@b.com"))
            small_id = await c.attach(draft_id, b"hello", name="h.txt")
            big_id = await c.attach(draft_id, path, progress=lambda d, t: seen.append((d, t)))
            return draft_id, small_id, big_id

    draft_id, small_id, big_id = asyncio.run(main())
    atts = {a.name: a for a in graph.message(draft_id).attachments}
    assert atts["h.txt"].content_bytes == b"hello" and atts["h.txt"].id == small_id
    assert atts["report.pdf"].content_bytes == data and atts["report.pdf"].id == big_id
    puts = [r for r in graph.requests if r.method == "PUT"]
    assert len(puts) == 3 and all("authorization" not in r.headers for r in puts)
    assert seen[-1] == (len(data), len(data)) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_i11_async_attach_bytes_upload(graph: FakeGraph) -> None:
    data = os.urandom(4_000_000)

    async def main() -> str:
        async with aclient(graph.base_url, graph.token) as c:
            draft_id = await c.create_draft(Message("s", "b", to="a@b.com"))
            await c.attach(draft_id, data, name="mem.bin")
            return draft_id

    draft_id = asyncio.run(main())
    (att,) = graph.message(draft_id).attachments
    assert att.content_bytes == data
    assert any(r.method == "PUT" for r in graph.requests)


def test_i11_async_send_mail_and_send_mime(graph: FakeGraph) -> None:
    mime = EmailMessage()
    mime["Subject"] = "mime hello"
    mime["To"] = "b@c.com"
    mime.set_content("plain body")

    async def main() -> None:
        async with aclient(graph.base_url, graph.token) as c:
            r1 = await c.send_mail(
                Message("json", "b", to="a@b.com", attachments=[Attachment(b"x", name="x.txt")]),
                user="adele@contoso.com",
            )
            r2 = await c.send_mail(Message("quiet", "b", to="a@b.com"), save_to_sent_items=False)
            r3 = await c.send_mime(mime)
            assert r1.status == r2.status == r3.status == 202
            assert r1.client_request_id == graph.requests[0].headers["client-request-id"]

    asyncio.run(main())
    assert [m.subject for m in graph.delivered()] == ["json", "quiet", "mime hello"]
    assert [m.subject for m in graph.sent_items()] == ["json", "mime hello"]
    assert graph.delivered()[0].attachments[0].content_bytes == b"x"
    mime_req = graph.requests[2]
    assert mime_req.headers["content-type"].startswith("text/plain")
    assert b"mime hello" in base64.b64decode(mime_req.body)


def test_i11_async_checks_input_before_any_request(graph: FakeGraph) -> None:
    big = Attachment(os.urandom(3_500_000), name="big.bin")

    async def main() -> None:
        async with aclient(graph.base_url, graph.token) as c:
            with pytest.raises(ValueError, match="over 3 MB"):
                await c.send_mail(Message("s", to="a@b.c", attachments=[big]))
            with pytest.raises(TypeError):
                await c.send_mail("not a message")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="Sent Items"):
                await c.send_mime(b"Subject: x\r\n\r\nb", save_to_sent_items=False)
            with pytest.raises(ValueError, match="recipient"):
                await c.create_forward("id", to=[])

    asyncio.run(main())
    assert graph.requests == []


def test_i11_async_upload_resends_failed_chunk_and_restarts_expired(
    graph: FakeGraph, tmp_path: Path
) -> None:
    path, data = blob(tmp_path, 9_000_000)
    graph.fail_upload_chunk(2, 503)

    async def main() -> str:
        async with aclient(graph.base_url, graph.token) as c:
            draft_id = await c.create_draft(Message("s", "b", to="a@b.com"))
            expired: list[int] = []

            def progress(done: int, total: int) -> None:
                if not expired and done < total:
                    expired.append(graph.expire_upload_sessions())

            await c.attach(draft_id, path, progress=progress)
            assert expired == [1]
            return draft_id

    draft_id = asyncio.run(main())
    (att,) = graph.message(draft_id).attachments
    assert att.content_bytes == data
    sessions = [r for r in graph.requests if r.path.endswith("createUploadSession")]
    assert len(sessions) == 2


def test_i11_async_upload_gives_up_with_may_have_sent_false(
    graph: FakeGraph, tmp_path: Path
) -> None:
    path, _ = blob(tmp_path, 5_000_000)
    for n in range(1, 12):
        graph.fail_upload_chunk(n, 500)

    async def main() -> None:
        async with aclient(graph.base_url, graph.token) as c:
            draft_id = await c.create_draft(Message("s", "b", to="a@b.com"))
            with pytest.raises(graphsend.SendError) as info:
                await c.attach(draft_id, path)
            assert info.value.may_have_sent is False

    asyncio.run(main())


def test_i11_async_upload_never_carries_the_token_independent_server(tmp_path: Path) -> None:
    path, data = blob(tmp_path, 7_000_000)
    mini = MiniGraph()
    try:

        async def main() -> str:
            async with aclient(mini.base_url) as c:
                draft_id = await c.create_draft(Message("s", "b", to="a@b.com"))
                await c.attach(draft_id, path)
                return draft_id

        draft_id = asyncio.run(main())
        uploads = [r for r in mini.requests if r.method == "PUT"]
        assert uploads and all("authorization" not in r.headers for r in uploads)
        assert all(
            r.headers.get("authorization") == "Bearer tok"
            for r in mini.requests
            if r.method == "POST"
        )
        assert draft_id
        del data
    finally:
        mini.close()


# --- errors: the same retry and may_have_sent rules as the sync driver ---------------------


def test_i11_async_draft_errors_never_may_have_sent(scripted: Script) -> None:
    rec = scripted.rec

    async def main() -> None:
        async with aclient(rec.base_url) as c:
            scripted.append(error(500, "InternalServerError"))
            with pytest.raises(graphsend.ServerError) as info:
                await c.create_draft(Message("s", to="a@b.c"))
            assert info.value.may_have_sent is False and "createDraft" in str(info.value)
            scripted.append(Answer(action="close"))
            with pytest.raises(graphsend.TransportError) as tinfo:
                await c.create_reply("m1")
            assert tinfo.value.may_have_sent is False
            scripted.append(Answer(201, b"<html>"))
            with pytest.raises(graphsend.GraphError, match="could not be read") as rinfo:
                await c.create_forward("m1", to="a@b.c")
            assert rinfo.value.may_have_sent is False

    asyncio.run(main())


def test_i11_async_send_mail_is_as_careful_as_send(scripted: Script) -> None:
    rec = scripted.rec

    async def main() -> None:
        async with aclient(rec.base_url) as c:
            scripted.append(error(500, "InternalServerError"))
            with pytest.raises(graphsend.ServerError) as info:
                await c.send_mail(Message("s", to="a@b.c"))
            assert info.value.may_have_sent is True
            assert len(rec.requests) == 1  # an ambiguous sendMail is never repeated
            scripted.append(Answer(action="close"))
            with pytest.raises(graphsend.TransportError) as tinfo:
                await c.send_mime(b"Subject: x\r\n\r\nbody")
            assert tinfo.value.may_have_sent is True and len(rec.requests) == 2
            scripted.extend([error(503, "ServiceUnavailable"), Answer(202)])
            assert (await c.send_mail(Message("s", to="a@b.c"))).status == 202
            assert rec.requests[-1].headers["retry-attempt"] == "1"
            assert "retry-attempt" not in rec.requests[-2].headers
            scripted.append(error(400, "ErrorInvalidRecipients"))
            with pytest.raises(graphsend.BadRequestError) as binfo:
                await c.send_mail(Message("s", to="a@b.c"))
            assert binfo.value.may_have_sent is False

    asyncio.run(main())


def test_i11_async_send_mail_429_waits_retry_after(scripted: Script) -> None:
    rec = scripted.rec
    scripted.extend([error(429, "TooManyRequests") for _ in range(1)])
    scripted[0].headers = (*scripted[0].headers, ("Retry-After", "1"))
    scripted.append(Answer(202))

    async def main() -> float:
        async with aclient(rec.base_url) as c:
            start = time.monotonic()
            await c.send_mail(Message("s", to="a@b.c"))
            return time.monotonic() - start

    took = asyncio.run(main())
    assert len(rec.requests) == 2 and 0.9 <= took < 5 * SCALE


def test_i11_async_compose_with_an_async_token_provider(graph: FakeGraph) -> None:
    calls = 0

    async def token() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return graph.token

    async def main() -> None:
        async with aclient(graph.base_url, token) as c:
            draft_id = await c.create_draft(Message("s", "b", to="a@b.com"))
            await c.send(draft_id)

    asyncio.run(main())
    assert calls >= 1 and [m.subject for m in graph.sent_items()] == ["s"]


def test_i11_async_upload_logged_without_the_upload_url(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import json
    import logging

    from compose_servers import Request

    size = 5_000_000
    path, _ = blob(tmp_path, size)
    answers = iter([Answer(503, b"{}")])
    holder: list[Recorder] = []

    def reply(r: Request) -> Answer:
        if r.method == "POST":
            url = holder[0].base_url + "/up?authtoken=SECRETTOKEN"
            return Answer(201, json.dumps({"uploadUrl": url}).encode())
        first = next(answers, None)
        if first is not None:
            return first
        end = int(r.headers["content-range"].split("-")[1].split("/")[0])
        if end == size - 1:
            return Answer(201, b"", (("Location", "https://x/Attachments('ATT1')"),))
        return Answer(200, json.dumps({"nextExpectedRanges": [f"{end + 1}-"]}).encode())

    rec = Recorder(reply)
    holder.append(rec)
    caplog.set_level(logging.DEBUG, logger="graphsend")

    async def main() -> str:
        async with aclient(rec.base_url) as c:
            return await c.attach("AAA", path)

    try:
        assert asyncio.run(main()) == "ATT1"
    finally:
        rec.close()
    puts = [r for r in rec.requests if r.method == "PUT"]
    assert all("authorization" not in r.headers for r in puts)
    records = [r for r in caplog.records if r.name == "graphsend"]
    put_debug = [r for r in records if r.levelno == logging.DEBUG and "PUT" in r.getMessage()]
    assert len(put_debug) == len(puts) == 3
    assert any(r.levelno == logging.WARNING and "PUT" in r.getMessage() for r in records)
    for r in records:
        assert "authtoken" not in r.getMessage() and "SECRETTOKEN" not in r.getMessage()

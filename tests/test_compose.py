"""Issue 11, client side: compose, attach and send against FakeGraph and small independent
servers (tests/compose_servers.py). Test names: test_i11_<what>."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from compose_servers import Answer, MiniGraph, Recorder, error

import graphsend
from graphsend import Attachment, Client, Message
from graphsend.testing import FakeGraph

PREFER = 'IdType="ImmutableId"'
NO_RETRY_WAIT = graphsend.Retry(backoff_base=0.01, backoff_max=0.02)


@pytest.fixture
def client(graph: FakeGraph) -> Iterator[Client]:
    with Client(graph.token, base_url=graph.base_url, http2=False, retry=NO_RETRY_WAIT) as c:
        yield c


@pytest.fixture
def mini() -> Iterator[MiniGraph]:
    g = MiniGraph()
    yield g
    g.close()


@pytest.fixture
def mini_client(mini: MiniGraph) -> Iterator[Client]:
    with Client("tok", base_url=mini.base_url, http2=False, retry=NO_RETRY_WAIT) as c:
        yield c


def blob(tmp_path: Path, size: int, name: str = "report.pdf") -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


# --- operations against FakeGraph ------------------------------------------------------------


def test_i11_create_draft_stores_every_field(graph: FakeGraph, client: Client) -> None:
    msg = Message(
        "Quarterly report",
        "<p>Numbers attached</p>",
        body_type="html",
        to=["adele@contoso.com", "Bob Ray <bob@contoso.com>"],
        cc=[("Carol", "carol@contoso.com")],
        bcc="dan@contoso.com",
        reply_to=["replies@contoso.com"],
        importance="high",
        headers={"X-Campaign": "q3"},
        attachments=[
            Attachment(b"a,b\n1,2\n", name="q3.csv"),
            Attachment(b"\x89PNG", name="l.png", inline=True, content_id="logo"),
        ],
    )
    draft_id = client.create_draft(msg)
    got = graph.message(draft_id)
    assert (got.subject, got.body, got.body_type, got.importance) == (
        "Quarterly report",
        "<p>Numbers attached</p>",
        "html",
        "high",
    )
    assert [(r.name, r.address) for r in got.to] == [
        ("", "adele@contoso.com"),
        ("Bob Ray", "bob@contoso.com"),
    ]
    assert [(r.name, r.address) for r in got.cc] == [("Carol", "carol@contoso.com")]
    assert [r.address for r in got.bcc] == ["dan@contoso.com"]
    assert [r.address for r in got.reply_to] == ["replies@contoso.com"]
    assert ("X-Campaign", "q3") in got.headers
    atts = {a.name: a for a in got.attachments}
    assert (
        atts["q3.csv"].content_bytes == b"a,b\n1,2\n" and atts["q3.csv"].content_type == "text/csv"
    )
    assert atts["l.png"].inline and atts["l.png"].content_id == "logo"


def test_i11_every_request_carries_prefer_immutable_id(
    graph: FakeGraph, client: Client, tmp_path: Path
) -> None:
    path, _ = blob(tmp_path, 4_000_000)
    draft_id = client.create_draft(Message("s", "b", to="a@b.com", attachments=[path]))
    client.send(draft_id)
    client.send_mail(Message("s2", "b", to="a@b.com"))
    assert len(graph.requests) >= 5
    sends = [r for r in graph.requests if r.path.endswith("/send")]
    assert len(sends) == 1 and "prefer" not in sends[0].headers  # /send returns no id
    assert all(r.headers.get("prefer") == PREFER for r in graph.requests if r not in sends)
    # ... and so the draft keeps its id in Sent Items.
    sent = graph.sent_items()[0]
    assert sent.subject == "s" and sent.sent_id == draft_id
    assert graph.message(draft_id).subject == "s"


def test_i11_immutable_ids_opt_out(graph: FakeGraph) -> None:
    with Client(graph.token, base_url=graph.base_url, immutable_ids=False) as c:
        draft_id = c.create_draft(Message("s", "b", to="a@b.com"))
        c.send(draft_id)
    assert all("prefer" not in r.headers for r in graph.requests)
    (sent,) = graph.sent_items()
    assert sent.sent_id != draft_id  # a new id in Sent Items, as Graph does without the header


def test_i11_large_attachment_streams_through_an_upload_session(
    graph: FakeGraph, client: Client, tmp_path: Path
) -> None:
    path, data = blob(tmp_path, 9_500_000)
    seen: list[tuple[int, int]] = []
    draft_id = client.create_draft(Message("big", "b", to="a@b.com"))
    att_id = client.attach(draft_id, path, progress=lambda d, t: seen.append((d, t)))
    (att,) = graph.message(draft_id).attachments
    assert att.content_bytes == data and att.name == "report.pdf" and att.id == att_id
    puts = [r for r in graph.requests if r.method == "PUT"]
    assert len(puts) == 3  # 3.75 MiB chunks
    assert all("authorization" not in r.headers for r in puts)
    assert all(len(r.body) <= 4 * 1024 * 1024 for r in puts)
    assert seen[-1] == (len(data), len(data)) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_i11_create_draft_picks_the_way_for_each_size(
    graph: FakeGraph, client: Client, tmp_path: Path
) -> None:
    small, small_data = blob(tmp_path, 1000, "a.txt")
    mid, mid_data = blob(tmp_path, 2_500_000, "b.bin")
    mid2, mid2_data = blob(tmp_path, 2_500_000, "c.bin")
    big, big_data = blob(tmp_path, 5_000_000, "d.bin")
    draft_id = client.create_draft(
        Message("mix", "b", to="x@y.z", attachments=[small, mid, mid2, big])
    )
    got = {a.name: a.content_bytes for a in graph.message(draft_id).attachments}
    assert got == {"a.txt": small_data, "b.bin": mid_data, "c.bin": mid2_data, "d.bin": big_data}
    kinds = [(r.method, r.path.rsplit("/", 1)[-1]) for r in graph.requests]
    assert kinds[0] == ("POST", "messages")  # small ones inside, while under 4 MB
    assert ("POST", "attachments") in kinds  # one 2.5 MB file did not fit beside the other
    assert ("POST", "createUploadSession") in kinds
    assert all(len(r.body) <= 4 * 1024 * 1024 for r in graph.requests)


def test_i11_create_reply_reply_all_and_forward(graph: FakeGraph, client: Client) -> None:
    original = graph.add_received(subject="Lunch?", to=["me@contoso.com"])
    original_id = original.id if hasattr(original, "id") else original
    reply = client.create_reply(original_id, comment="Yes")
    reply_all = client.create_reply(original_id, reply_all=True)
    forward = client.create_forward(original_id, to=["Zoe <zoe@contoso.com>"], comment="FYI")
    assert graph.message(reply).kind == "reply" and graph.message(reply).comment == "Yes"
    assert graph.message(reply_all).kind in ("replyAll", "reply_all", "reply")
    fw = graph.message(forward)
    assert fw.kind == "forward" and fw.comment == "FYI"
    assert [(r.name, r.address) for r in fw.to] == [("Zoe", "zoe@contoso.com")]
    paths = [r.path.rsplit("/", 1)[-1] for r in graph.requests]
    assert paths == ["createReply", "createReplyAll", "createForward"]


def test_i11_send_mail_in_one_request(graph: FakeGraph, client: Client) -> None:
    receipt = client.send_mail(
        Message(
            "Hello", "Hi there", to="a@b.com", attachments=[Attachment(b"x" * 100, name="x.txt")]
        ),
        user="adele@contoso.com",
    )
    assert receipt.status == 202
    (req,) = graph.requests
    assert req.path == "/v1.0/users/adele@contoso.com/sendMail"
    doc = json.loads(req.body)
    assert doc["saveToSentItems"] is True and doc["message"]["subject"] == "Hello"
    (sent,) = graph.delivered("adele@contoso.com")
    assert sent.attachments[0].content_bytes == b"x" * 100
    client.send_mail(Message("Quiet", "b", to="a@b.com"), save_to_sent_items=False)
    assert [m.subject for m in graph.sent_items()] == ["Hello"]
    assert [m.subject for m in graph.delivered()] == ["Hello", "Quiet"]


def test_i11_send_mime_bytes_and_email_message(graph: FakeGraph, client: Client) -> None:
    em = EmailMessage()
    em["To"] = "a@b.com"
    em["Subject"] = "From the stdlib"
    em.set_content("plain body")
    client.send_mime(em)
    raw = b"To: c@d.com\r\nSubject: Raw bytes\r\n\r\nhello\r\n"
    client.send_mime(raw)
    reqs = graph.requests
    assert [r.headers.get("content-type") for r in reqs] == ["text/plain", "text/plain"]
    assert base64.b64decode(reqs[1].body) == raw
    assert [m.subject for m in graph.delivered()] == ["From the stdlib", "Raw bytes"]
    with pytest.raises(ValueError, match="Sent Items"):
        client.send_mime(raw, save_to_sent_items=False)


def test_i11_send_mail_over_4mb_names_the_draft_path(
    graph: FakeGraph, client: Client, tmp_path: Path
) -> None:
    a, _ = blob(tmp_path, 2_000_000, "a.bin")
    b, _ = blob(tmp_path, 2_000_000, "b.bin")
    big, _ = blob(tmp_path, 3_500_000, "c.bin")
    for atts in ([a, b], [big]):
        with pytest.raises(ValueError, match=r"create_draft"):
            client.send_mail(Message("s", "b", to="x@y.z", attachments=atts))
    assert graph.requests == []


# --- bad input raises before any request -----------------------------------------------------


def _bad_inputs(tmp_path: Path) -> list[tuple[str, object]]:
    sparse = tmp_path / "huge.bin"
    with open(sparse, "wb") as f:
        f.truncate(200 * 1024 * 1024)  # sparse: no disk used
    many = [f"u{i}@contoso.com" for i in range(501)]
    return [
        ("address without @", lambda: Message("s", to=["adele.contoso.com"])),
        ("name address without @", lambda: Message("s", to=["Adele <adele>"])),
        ("missing path", lambda: Message("s", to="a@b.c", attachments=[tmp_path / "nope.pdf"])),
        ("directory", lambda: Message("s", to="a@b.c", attachments=[tmp_path])),
        ("200 MB file", lambda: Message("s", to="a@b.c", attachments=[sparse])),
        ("unknown body_type", lambda: Message("s", body_type="markdown")),
        ("header not X-", lambda: Message("s", headers={"Subject": "x"})),
        ("501 recipients", lambda: Message("s", to=many[:300], cc=many[300:])),
        ("control char in subject", lambda: Message("a\r\nBcc: evil@x.com")),
        ("control char in address", lambda: Message("s", to=["a@b.c\n"])),
        ("control char in name", lambda: Message("s", to=[("A\x00", "a@b.c")])),
        ("control char in header value", lambda: Message("s", headers={"X-A": "1\r\nX-B: 2"})),
        ("control char in body", lambda: Message("s", "ok\x1bno")),
        ("control char in attachment name", lambda: Attachment(b"x", name="a\nb.txt")),
        (
            "control char in content type",
            lambda: Attachment(b"x", name="a", content_type="text/\nplain"),
        ),
        ("bad content type", lambda: Attachment(b"x", name="a", content_type="text")),
        ("bytes without a name", lambda: Attachment(b"x")),
        ("unknown importance", lambda: Message("s", importance="urgent")),
    ]


def test_i11_bad_input_raises_before_any_request(
    graph: FakeGraph, client: Client, tmp_path: Path
) -> None:
    for what, make in _bad_inputs(tmp_path):
        with pytest.raises((ValueError, TypeError, FileNotFoundError)):
            make()  # type: ignore[operator]
            pytest.fail(f"{what}: accepted")
    draft = "AAMkAD"
    with pytest.raises(ValueError):
        client.create_forward(draft, to=[])
    with pytest.raises(ValueError):
        client.create_forward(draft, to=["a@b.c"], comment="x\x00")
    with pytest.raises(ValueError):
        client.create_reply("bad\nid")
    with pytest.raises(FileNotFoundError):
        client.attach(draft, tmp_path / "missing")
    with pytest.raises(ValueError):
        client.attach(draft, tmp_path)
    with pytest.raises(TypeError):
        client.create_draft("not a message")  # type: ignore[arg-type]
    assert graph.requests == []


def test_i11_messages_and_attachments_accept_paths_and_one_bare_recipient(tmp_path: Path) -> None:
    path, _ = blob(tmp_path, 10, "n.txt")
    m = Message("s", to=("Adele", "adele@contoso.com"), attachments=str(path))
    assert m.to == [{"emailAddress": {"address": "adele@contoso.com", "name": "Adele"}}]
    assert m.attachments[0].name == "n.txt" and m.attachments[0].content_type == "text/plain"
    m = Message("s", to=["a@b.c", "d@e.f"])
    assert len(m.to) == 2


# --- errors: may_have_sent exact per operation -----------------------------------------------


class Script(list[Answer]):
    """Answers popped in order by a Recorder (`rec`)."""

    rec: Recorder


@pytest.fixture
def scripted() -> Iterator[Script]:
    answers = Script()
    answers.rec = Recorder(lambda r: answers.pop(0))
    yield answers
    answers.rec.close()


def _client_for(rec: Recorder) -> Client:
    return Client("tok", base_url=rec.base_url, http2=False, retry=NO_RETRY_WAIT)


def test_i11_creating_a_draft_never_may_have_sent(scripted: Script) -> None:
    rec = scripted.rec
    scripted += [error(500, "InternalServerError")]
    with _client_for(rec) as c, pytest.raises(graphsend.ServerError) as info:
        c.create_draft(Message("s", to="a@b.c"))
    assert info.value.may_have_sent is False and "createDraft" in str(info.value)
    scripted += [Answer(action="close")]
    with _client_for(rec) as c, pytest.raises(graphsend.TransportError) as tinfo:
        c.create_draft(Message("s", to="a@b.c"))
    assert tinfo.value.may_have_sent is False


def test_i11_send_mail_is_as_non_idempotent_as_send(scripted: Script) -> None:
    rec = scripted.rec
    scripted += [error(500, "InternalServerError")]
    with _client_for(rec) as c, pytest.raises(graphsend.ServerError) as info:
        c.send_mail(Message("s", to="a@b.c"))
    assert info.value.may_have_sent is True
    assert len(rec.requests) == 1  # an ambiguous sendMail is never repeated
    scripted += [Answer(action="close")]
    with _client_for(rec) as c, pytest.raises(graphsend.TransportError) as tinfo:
        c.send_mail(Message("s", to="a@b.c"))
    assert tinfo.value.may_have_sent is True and len(rec.requests) == 2
    # What proves nothing was sent is retried: 503, then 202.
    scripted += [error(503, "ServiceUnavailable"), Answer(202)]
    with _client_for(rec) as c:
        assert c.send_mail(Message("s", to="a@b.c")).status == 202
    assert rec.requests[-1].headers["retry-attempt"] == "1"
    scripted += [error(400, "ErrorInvalidRecipients")]
    with _client_for(rec) as c, pytest.raises(graphsend.BadRequestError) as binfo:
        c.send_mail(Message("s", to="a@b.c"))
    assert binfo.value.may_have_sent is False and binfo.value.code == "ErrorInvalidRecipients"


def test_i11_a_success_without_an_id_is_an_error_not_a_crash(scripted: Script) -> None:
    rec = scripted.rec
    scripted += [Answer(201, b"<html>")]
    with (
        _client_for(rec) as c,
        pytest.raises(graphsend.GraphError, match="could not be read") as info,
    ):
        c.create_draft(Message("s", to="a@b.c"))
    assert info.value.may_have_sent is False


# --- uploads: faults on FakeGraph ---------------------------------------------------------------


def test_i11_upload_resends_a_failed_chunk(
    graph: FakeGraph, client: Client, tmp_path: Path
) -> None:
    path, data = blob(tmp_path, 9_000_000)
    draft_id = client.create_draft(Message("s", to="a@b.c"))
    graph.fail_upload_chunk(2, 503)
    graph.reset_upload_chunk(3)
    client.attach(draft_id, path)
    assert graph.message(draft_id).attachments[0].content_bytes == data


def test_i11_upload_starts_over_on_an_expired_session(
    graph: FakeGraph, client: Client, tmp_path: Path
) -> None:
    path, data = blob(tmp_path, 9_000_000)
    draft_id = client.create_draft(Message("s", to="a@b.c"))
    expired: list[int] = []

    def progress(done: int, total: int) -> None:
        if not expired:
            expired.append(graph.expire_upload_sessions())

    client.attach(draft_id, path, progress=progress)
    assert expired == [1]
    assert graph.message(draft_id).attachments[0].content_bytes == data
    sessions = [r for r in graph.requests if r.path.endswith("createUploadSession")]
    assert len(sessions) == 2


def test_i11_upload_gives_up_with_may_have_sent_false(
    graph: FakeGraph, client: Client, tmp_path: Path
) -> None:
    path, _ = blob(tmp_path, 5_000_000)
    draft_id = client.create_draft(Message("s", to="a@b.c"))
    for n in range(1, 6):
        graph.fail_upload_chunk(n, 500)
    with pytest.raises(graphsend.ServerError) as info:
        client.attach(draft_id, path)
    assert info.value.may_have_sent is False and "report.pdf" in str(info.value)


def test_i11_failed_attachment_names_the_created_draft(
    graph: FakeGraph, client: Client, tmp_path: Path
) -> None:
    path, _ = blob(tmp_path, 5_000_000)
    for n in range(1, 6):
        graph.fail_upload_chunk(n, 500)
    with pytest.raises(graphsend.SendError) as info:
        client.create_draft(Message("s", to="a@b.c", attachments=[path]))
    draft_id = info.value.draft_id  # type: ignore[attr-defined]
    assert draft_id in str(info.value) and graph.message(draft_id).subject == "s"


# --- uploads against an independent server ----------------------------------------------------


def test_i11_upload_content_range_arithmetic_and_no_token_independent_server(
    mini: MiniGraph, mini_client: Client, tmp_path: Path
) -> None:
    for size in (3_000_001, 3_932_160, 3_932_161, 12 * 320 * 1024 * 2 + 7):
        path, data = blob(tmp_path, size, f"f{size}.bin")
        draft_id = mini_client.create_draft(Message("s", to="a@b.c"))
        att_id = mini_client.attach(draft_id, path)
        (stored,) = mini.attachments[draft_id]
        assert stored["bytes"] == data and stored["id"] == att_id
    assert mini.violations == []
    puts = [r for r in mini.requests if r.method == "PUT"]
    assert puts and all("authorization" not in r.headers for r in puts)
    assert all(
        int(r.headers["content-length"]) % (320 * 1024) == 0
        or r.headers["content-range"].split("-")[1].split("/")[0]
        == str(int(r.headers["content-range"].split("/")[1]) - 1)
        for r in puts
    )


def test_i11_upload_resumes_from_next_expected_ranges_independent_server(
    mini: MiniGraph, mini_client: Client, tmp_path: Path
) -> None:
    path, data = blob(tmp_path, 10_000_000)
    draft_id = mini_client.create_draft(Message("s", to="a@b.c"))
    mini.fail_chunk[2] = Answer(action="close")  # the connection drops mid-upload
    mini.fail_chunk[3] = error(503, "ServiceUnavailable")
    mini_client.attach(draft_id, path)
    assert mini.attachments[draft_id][0]["bytes"] == data and mini.violations == []


def test_i11_upload_from_bytes(mini: MiniGraph, mini_client: Client) -> None:
    data = os.urandom(5_000_000)
    draft_id = mini_client.create_draft(Message("s", to="a@b.c"))
    mini_client.attach(draft_id, data, name="mem.bin")
    assert mini.attachments[draft_id][0]["bytes"] == data and mini.violations == []


def test_i11_upload_url_must_be_https_or_loopback_http(scripted: Script, tmp_path: Path) -> None:
    rec = scripted.rec
    path, _ = blob(tmp_path, 4_000_000)
    scripted += [Answer(201, json.dumps({"uploadUrl": "http://evil.example/upload"}).encode())]
    with _client_for(rec) as c, pytest.raises(graphsend.GraphError, match="uploadUrl") as info:
        c.attach("AAMkAD", path)
    assert info.value.may_have_sent is False and len(rec.requests) == 1


def test_i11_compose_over_https(graph_https: FakeGraph, tmp_path: Path) -> None:
    path, data = blob(tmp_path, 5_000_000)
    g = graph_https
    with Client(g.token, base_url=g.base_url, ca_bundle=g.ca_bundle) as c:
        draft_id = c.create_draft(Message("tls", "b", to="a@b.c", attachments=[path]))
        c.send(draft_id)
    sent = g.sent_items()[0]
    assert sent.attachments[0].content_bytes == data and sent.sent_id == draft_id

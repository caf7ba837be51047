"""FakeGraph's compose operations (issue 11), driven with plain http.client: drafts with every
field, createReply/createReplyAll/createForward, attachments, sendMail (JSON and MIME),
GET with $select, immutable ids, and Graph's errors for each violation."""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from graphsend.testing import FakeGraph, Recipient

IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}
MB = 1024 * 1024


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def error(self) -> dict[str, Any]:
        assert self.headers["content-type"] == "application/json", self.body[:200]
        return self.json()["error"]


class Api:
    """Graph's REST API as any client sees it: one http.client request per call."""

    def __init__(self, graph: FakeGraph, user: str | None = None) -> None:
        self.graph = graph
        self.root = "/v1.0/me" if user is None else f"/v1.0/users/{quote(user, safe='@')}"

    def url(self, *segments: str) -> str:
        return "/".join([self.root, *(quote(s, safe="") for s in segments)])

    def call(
        self,
        method: str,
        target: str,
        payload: object = None,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Reply:
        all_headers = {"Authorization": f"Bearer {self.graph.token}"} if auth else {}
        if payload is not None:
            body = json.dumps(payload).encode()
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        parts = urlsplit(target)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if self.graph.scheme == "https":
            context = self.graph.client_ssl_context()
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.graph.host, self.graph.port, timeout=30, context=context
            )
        else:
            conn = http.client.HTTPConnection(self.graph.host, self.graph.port, timeout=30)
        try:
            if body is None and method in ("POST", "PUT", "PATCH"):
                body = b""
            conn.request(method, path, body=body, headers=all_headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)

    def post(self, segments: tuple[str, ...], payload: object = None, **kw: Any) -> Reply:
        return self.call("POST", self.url(*segments), payload, **kw)

    def create(self, message: dict[str, Any], **kw: Any) -> dict[str, Any]:
        reply = self.post(("messages",), message, **kw)
        assert reply.status == 201, reply.body
        return reply.json()


def address(addr: str, name: str = "") -> dict[str, Any]:
    return {"emailAddress": {"address": addr, "name": name}}


def file_attachment(name: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": name,
        "contentType": "text/plain",
        "contentBytes": base64.b64encode(data).decode(),
        **extra,
    }


FULL_MESSAGE: dict[str, Any] = {
    "subject": "Quarterly report",
    "body": {"contentType": "HTML", "content": "<p>Hello</p>"},
    "toRecipients": [address("bob@fabrikam.com", "Bob")],
    "ccRecipients": [address("carol@fabrikam.com")],
    "bccRecipients": [address("dan@fabrikam.com", "Dan")],
    "replyTo": [address("replies@contoso.com")],
    "importance": "High",
    "internetMessageHeaders": [{"name": "X-Campaign", "value": "q3"}],
    "singleValueExtendedProperties": [
        {"id": "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name Tag", "value": "t-1"}
    ],
    "attachments": [
        file_attachment("a.txt", b"alpha"),
        file_attachment("logo.png", b"\x89PNG", isInline=True, contentId="logo"),
    ],
}


def assert_full_fields(message: Any) -> None:
    assert message.subject == "Quarterly report"
    assert (message.body_type, message.body) == ("html", "<p>Hello</p>")
    assert message.to == (Recipient("bob@fabrikam.com", "Bob"),)
    assert message.cc == (Recipient("carol@fabrikam.com"),)
    assert [str(r) for r in message.bcc] == ["Dan <dan@fabrikam.com>"]
    assert message.reply_to == (Recipient("replies@contoso.com"),)
    assert message.importance == "high"
    assert message.headers == (("X-Campaign", "q3"),)
    assert dict(message.extended_properties) == {
        "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name Tag": "t-1"
    }
    a, logo = message.attachments
    assert (a.name, a.content_type, a.content_bytes, a.inline) == (
        "a.txt",
        "text/plain",
        b"alpha",
        False,
    )
    assert (logo.content_bytes, logo.inline, logo.content_id) == (b"\x89PNG", True, "logo")


@pytest.fixture
def api(graph: FakeGraph) -> Api:
    return Api(graph)


class H2Client:
    """Requests over one HTTP/2 connection (the h2 package's state machine on an ssl socket),
    since the standard library speaks only HTTP/1.1."""

    def __init__(self, graph: FakeGraph) -> None:
        import h2.config
        import h2.connection

        self.graph = graph
        context = graph.client_ssl_context()
        context.set_alpn_protocols(["h2"])
        raw = socket.create_connection((graph.host, graph.port), timeout=30)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = context.wrap_socket(raw, server_hostname=graph.host)
        assert self.sock.selected_alpn_protocol() == "h2"
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.sock.sendall(self.h2.data_to_send())

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def request(
        self,
        method: str,
        target: str,
        payload: object = None,
        headers: dict[str, str] | None = None,
        *,
        body: bytes = b"",
        auth: bool = True,
    ) -> Reply:
        import h2.events

        if payload is not None:
            body = json.dumps(payload).encode()
        parts = urlsplit(target)
        fields = [
            (":method", method),
            (":path", parts.path + (f"?{parts.query}" if parts.query else "")),
            (":scheme", "https"),
            (":authority", f"{self.graph.host}:{self.graph.port}"),
            ("content-length", str(len(body))),
            ("content-type", "application/json"),
        ]
        if auth:
            fields.append(("authorization", f"Bearer {self.graph.token}"))
        fields += [(k.lower(), v) for k, v in (headers or {}).items()]
        stream = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream, fields, end_stream=not body)
        view = memoryview(body)
        status, got, data = 0, {}, bytearray()
        while True:
            while view:
                room = min(self.h2.local_flow_control_window(stream), 16384)
                if room <= 0:
                    break
                chunk, view = view[:room], view[room:]
                self.h2.send_data(stream, chunk.tobytes(), end_stream=not view)
            self.sock.sendall(self.h2.data_to_send())
            for event in self.h2.receive_data(self.sock.recv(65536)):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                    got = {k.decode(): v.decode() for k, v in event.headers}
                    status = int(got[":status"])
                elif isinstance(event, h2.events.DataReceived):
                    data += event.data
                    self.h2.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                    self.sock.sendall(self.h2.data_to_send())
                    return Reply(status, got, bytes(data))
                elif isinstance(event, h2.events.StreamReset):
                    raise ConnectionResetError("stream reset")


# Drafts -----------------------------------------------------------------------------------------


def test_post_message_stores_every_field_and_answers_201_with_the_draft(
    graph: FakeGraph, api: Api
) -> None:
    created = api.create(FULL_MESSAGE)
    assert created["isDraft"] is True
    assert created["parentFolderId"] == graph_folder(api, "drafts")
    assert created["toRecipients"] == [address("bob@fabrikam.com", "Bob")]
    assert created["hasAttachments"] is True
    (draft,) = graph.drafts()
    assert draft.id == created["id"] and draft.kind == "new"
    assert draft.sender == Recipient(graph.default_user)
    assert_full_fields(draft)


def graph_folder(api: Api, folder: str) -> str:
    """A folder's id, from a message Graph lists in it."""
    listing = api.call("GET", api.url("mailFolders", folder, "messages")).json()["value"]
    return listing[0]["parentFolderId"]


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"subjct": "typo"}, 400, "RequestBodyRead"),
        ({"body": {"contentType": "markdown", "content": ""}}, 400, "RequestBodyRead"),
        ({"importance": "urgent"}, 400, "RequestBodyRead"),
        ({"toRecipients": ["bob@fabrikam.com"]}, 400, "RequestBodyRead"),
        ({"internetMessageHeaders": [{"name": "Campaign", "value": "q3"}]}, 400,
         "InvalidInternetMessageHeader"),
        ({"attachments": [{"name": "a", "contentBytes": "YQ=="}]}, 400, "RequestBodyRead"),
        ({"attachments": [file_attachment("a", b"a") | {"contentBytes": "%%%"}]}, 400,
         "RequestBodyRead"),
    ],
)  # fmt: skip
def test_post_message_refuses_what_graph_refuses(
    graph: FakeGraph, api: Api, payload: dict[str, Any], status: int, code: str
) -> None:
    reply = api.post(("messages",), payload)
    assert (reply.status, reply.error()["code"]) == (status, code)
    assert graph.drafts() == []


def test_patch_and_delete_a_draft(graph: FakeGraph, api: Api) -> None:
    draft = api.create({"subject": "one"})["id"]
    reply = api.call("PATCH", api.url("messages", draft), {"subject": "two", "importance": "low"})
    assert reply.status == 200 and reply.json()["subject"] == "two"
    assert (graph.message(draft).subject, graph.message(draft).importance) == ("two", "low")
    assert api.call("DELETE", api.url("messages", draft)).status == 204
    assert graph.drafts() == []
    assert api.call("GET", api.url("messages", draft)).error()["code"] == "ErrorItemNotFound"


# Sending delivers every field -------------------------------------------------------------------


def test_send_delivers_every_field_and_attachment(graph: FakeGraph, api: Api) -> None:
    draft = api.create(FULL_MESSAGE)["id"]
    extra = file_attachment("b.csv", b"x,y\n1,2\n", contentType="text/csv")
    reply = api.post(("messages", draft, "attachments"), extra)
    assert reply.status == 201
    meta = reply.json()
    assert (meta["name"], meta["size"], meta["contentType"]) == ("b.csv", 8, "text/csv")
    assert "contentBytes" not in meta and meta["id"]
    assert api.post(("messages", draft, "send")).status == 202
    (sent,) = graph.delivered()
    assert graph.sent_items() == [sent] and graph.drafts() == []
    assert_full_fields(dataclasses.replace(sent, attachments=sent.attachments[:2]))
    assert sent.attachment("b.csv").content_bytes == b"x,y\n1,2\n"
    assert sent.attachment("b.csv").id == meta["id"]


def test_attachments_can_be_listed_with_their_bytes(graph: FakeGraph, api: Api) -> None:
    draft = api.create({"subject": "s"})["id"]
    api.post(("messages", draft, "attachments"), file_attachment("a.bin", bytes(range(256))))
    (item,) = api.call("GET", api.url("messages", draft, "attachments")).json()["value"]
    assert base64.b64decode(item["contentBytes"]) == bytes(range(256))
    one = api.call("GET", api.url("messages", draft, "attachments", item["id"]))
    assert one.json()["name"] == "a.bin"


@pytest.mark.parametrize(
    ("recipients", "code"),
    [
        ([address("no-at-sign")], "ErrorInvalidRecipients"),
        ([address(f"u{i}@fabrikam.com") for i in range(501)], "ErrorTooManyRecipients"),
    ],
)
def test_send_refuses_bad_recipients_and_keeps_the_draft(
    graph: FakeGraph, api: Api, recipients: list[dict[str, Any]], code: str
) -> None:
    draft = api.create({"subject": "s", "toRecipients": recipients})["id"]
    reply = api.post(("messages", draft, "send"))
    assert (reply.status, reply.error()["code"]) == (400, code)
    assert [m.id for m in graph.drafts()] == [draft] and graph.delivered() == []


def test_500_recipients_are_allowed(graph: FakeGraph, api: Api) -> None:
    to = [address(f"u{i}@fabrikam.com") for i in range(300)]
    cc = [address(f"c{i}@fabrikam.com") for i in range(200)]
    draft = api.create({"subject": "s", "toRecipients": to, "ccRecipients": cc})["id"]
    assert api.post(("messages", draft, "send")).status == 202
    assert len(graph.delivered()[0].recipients) == 500


# Caps ---------------------------------------------------------------------------------------------


def test_request_over_4mb_gets_413_in_graphs_shape_and_is_recorded(
    graph: FakeGraph, api: Api
) -> None:
    body = json.dumps({"subject": "big", "body": {"content": "x" * (4 * MB)}}).encode()
    assert len(body) > 4 * MB
    reply = api.post(("messages",), body=body, headers={"Content-Type": "application/json"})
    assert reply.status == 413
    error = reply.error()
    assert error["code"] == "RequestEntityTooLarge"
    assert error["innerError"]["request-id"] == reply.headers["request-id"]
    (record,) = graph.requests
    assert (record.status, record.body_size) == (413, len(body))
    assert graph.drafts() == []


def test_a_body_of_exactly_4mb_is_read_and_served(graph: FakeGraph, api: Api) -> None:
    head = json.dumps({"subject": "edge", "body": {"content": ""}}).encode()
    body = head[:-3] + b"x" * (4 * MB - len(head)) + head[-3:]
    assert len(body) == 4 * MB
    reply = api.post(("messages",), body=body, headers={"Content-Type": "application/json"})
    assert reply.status == 201
    assert len(graph.drafts()[0].body) == 4 * MB - len(head)


def test_inline_attachment_of_3mb_or_more_is_refused(graph: FakeGraph, api: Api) -> None:
    # 3 MB of bytes is 4 MB of base64: Graph's two caps meet here; both answer 413.
    draft = api.create({"subject": "s"})["id"]
    big = file_attachment("big.bin", bytes(3 * MB + 1))
    reply = api.post(("messages", draft, "attachments"), big)
    assert (reply.status, reply.error()["code"]) == (413, "RequestEntityTooLarge")
    near = file_attachment("near.bin", bytes(3 * MB - 4096))
    assert api.post(("messages", draft, "attachments"), near).status == 201
    assert graph.message(draft).attachment("near.bin").size == 3 * MB - 4096


# Reading messages, immutable ids --------------------------------------------------------------


def test_get_message_with_select(graph: FakeGraph, api: Api) -> None:
    draft = api.create(FULL_MESSAGE)["id"]
    reply = api.call("GET", api.url("messages", draft) + "?$select=isDraft,parentFolderId")
    assert reply.status == 200
    assert set(reply.json()) == {"id", "isDraft", "parentFolderId"}
    assert reply.json()["isDraft"] is True
    whole = api.call("GET", api.url("messages", draft) + "?$expand=attachments").json()
    assert whole["subject"] == "Quarterly report"
    assert [a["name"] for a in whole["attachments"]] == ["a.txt", "logo.png"]


def test_immutable_ids_survive_the_move_to_sent_items(graph: FakeGraph, api: Api) -> None:
    reply = api.post(("messages",), {"subject": "kept"}, headers=IMMUTABLE)
    assert reply.headers["preference-applied"] == 'IdType="ImmutableId"'
    draft = reply.json()["id"]
    assert api.post(("messages", draft, "send"), headers=IMMUTABLE).status == 202
    after = api.call("GET", api.url("messages", draft) + "?$select=isDraft,parentFolderId")
    assert after.status == 200
    assert after.json()["isDraft"] is False
    assert after.json()["parentFolderId"] == graph_folder(api, "sentitems")
    assert graph.sent_items()[0].sent_id == draft


def test_without_immutable_ids_the_sent_copy_gets_a_new_id(graph: FakeGraph, api: Api) -> None:
    draft = api.create({"subject": "moved"})["id"]
    assert api.post(("messages", draft, "send")).status == 202
    assert api.call("GET", api.url("messages", draft)).error()["code"] == "ErrorItemNotFound"
    (sent,) = graph.sent_items()
    assert sent.id == draft and sent.sent_id not in (None, draft)
    assert api.call("GET", api.url("messages", sent.sent_id or "")).json()["isDraft"] is False


def test_create_draft_in_python_can_ask_for_an_immutable_id(graph: FakeGraph, api: Api) -> None:
    draft = graph.create_draft(immutable_id=True)
    assert api.post(("messages", draft, "send")).status == 202
    assert graph.message(draft).sent_id == draft


# Replies and forwards -----------------------------------------------------------------------------


@pytest.fixture
def original(graph: FakeGraph) -> str:
    return graph.add_received(
        subject="Lunch?",
        body="<b>Friday</b>",
        body_type="html",
        sender="Megan Bowen <megan@fabrikam.com>",
        to=[graph.default_user, "Bob <bob@fabrikam.com>"],
        cc=["carol@fabrikam.com", graph.default_user.upper()],
        attachments=[("menu.pdf", "application/pdf", b"%PDF-1.7")],
    )


def test_create_reply_addresses_the_sender(graph: FakeGraph, api: Api, original: str) -> None:
    reply = api.post(("messages", original, "createReply"), {"comment": "Yes!"})
    assert reply.status == 201
    created = reply.json()
    assert (created["subject"], created["isDraft"]) == ("RE: Lunch?", True)
    draft = graph.message(created["id"])
    assert draft.kind == "reply" and draft.comment == "Yes!"
    assert draft.to == (Recipient("megan@fabrikam.com", "Megan Bowen"),) and draft.cc == ()
    assert "Yes!" in draft.body and "<b>Friday</b>" in draft.body and draft.body_type == "html"
    assert draft.attachments == ()
    source = graph.message(original)
    assert (draft.original_id, draft.conversation_id) == (original, source.conversation_id)


def test_create_reply_all_addresses_everyone_but_the_mailbox(
    graph: FakeGraph, api: Api, original: str
) -> None:
    created = api.post(("messages", original, "createReplyAll"), {"comment": "All in"}).json()
    draft = graph.message(created["id"])
    assert draft.kind == "replyAll" and draft.subject == "RE: Lunch?"
    assert [r.address for r in draft.to] == ["megan@fabrikam.com", "bob@fabrikam.com"]
    assert [r.address for r in draft.cc] == ["carol@fabrikam.com"]


def test_create_reply_goes_to_reply_to_when_the_original_has_it(graph: FakeGraph, api: Api) -> None:
    original = graph.add_received(subject="RE: thread", reply_to=["list@fabrikam.com"])
    created = api.post(("messages", original, "createReply")).json()
    draft = graph.message(created["id"])
    assert draft.subject == "RE: thread"  # no second prefix
    assert draft.to == (Recipient("list@fabrikam.com"),)


def test_create_forward_carries_recipients_comment_and_attachments(
    graph: FakeGraph, api: Api, original: str
) -> None:
    payload = {"comment": "FYI", "toRecipients": [address("erin@fabrikam.com", "Erin")]}
    created = api.post(("messages", original, "createForward"), payload, headers=IMMUTABLE)
    assert created.status == 201
    draft_id = created.json()["id"]
    draft = graph.message(draft_id)
    assert (draft.kind, draft.subject, draft.comment) == ("forward", "FW: Lunch?", "FYI")
    assert draft.to == (Recipient("erin@fabrikam.com", "Erin"),)
    assert draft.attachment("menu.pdf").content_bytes == b"%PDF-1.7"
    assert api.post(("messages", draft_id, "send")).status == 202
    (sent,) = graph.delivered()
    assert (sent.id, sent.sent_id, sent.kind) == (draft_id, draft_id, "forward")
    assert sent.attachment("menu.pdf").content_bytes == b"%PDF-1.7"


def test_reply_message_parameter_sets_fields(graph: FakeGraph, api: Api, original: str) -> None:
    payload = {"message": {"ccRecipients": [address("boss@contoso.com")]}, "comment": "c"}
    created = api.post(("messages", original, "createReply"), payload).json()
    assert graph.message(created["id"]).cc == (Recipient("boss@contoso.com"),)


def test_replies_to_sent_items_and_errors(graph: FakeGraph, api: Api, original: str) -> None:
    reply = api.post(("messages", original, "createReply"), {"toRecipients": []})
    assert (reply.status, reply.error()["code"]) == (400, "RequestBodyRead")
    missing = graph.create_draft()
    api.post(("messages", missing, "send"))
    reply = api.post(("messages", missing, "createForward"), {"comment": "gone"})
    assert (reply.status, reply.error()["code"]) == (404, "ErrorItemNotFound")
    sent_id = graph.sent_items()[0].sent_id or ""
    assert api.post(("messages", sent_id, "createReplyAll")).status == 201
    assert api.post(("messages", original, "createReply"), auth=False).status == 401


# sendMail -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("save", [True, False])
def test_send_mail_json_delivers_every_field(graph: FakeGraph, api: Api, save: bool) -> None:
    reply = api.post(("sendMail",), {"message": FULL_MESSAGE, "saveToSentItems": save})
    assert (reply.status, reply.body) == (202, b"")
    (sent,) = graph.delivered()
    assert_full_fields(sent)
    assert sent.saved_to_sent_items is save and sent.sent_at is not None
    assert graph.sent_items() == ([sent] if save else [])
    assert graph.drafts() == []


def test_send_mail_for_another_user_and_unknown_mailbox(graph: FakeGraph) -> None:
    graph.add_mailbox("alice@contoso.com")
    payload = {"message": {"subject": "hi", "toRecipients": [address("bob@fabrikam.com")]}}
    assert Api(graph, "Alice@contoso.com").post(("sendMail",), payload).status == 202
    assert graph.delivered("alice@contoso.com")[0].user == "alice@contoso.com"
    reply = Api(graph, "nobody@contoso.com").post(("sendMail",), payload)
    assert (reply.status, reply.error()["code"]) == (404, "ErrorInvalidUser")


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({}, 400, "ErrorInvalidParameter"),
        ({"message": {"subject": "s"}, "saveToSentItems": "no"}, 400, "RequestBodyRead"),
        ({"message": {"subject": "s"}, "save": True}, 400, "RequestBodyRead"),
        ({"message": {"toRecipients": [address("bad")]}}, 400, "ErrorInvalidRecipients"),
        ({"message": {"toRecipients": [address(f"{i}@f.com") for i in range(501)]}}, 400,
         "ErrorTooManyRecipients"),
    ],
)  # fmt: skip
def test_send_mail_refuses_what_graph_refuses(
    graph: FakeGraph, api: Api, payload: dict[str, Any], status: int, code: str
) -> None:
    reply = api.post(("sendMail",), payload)
    assert (reply.status, reply.error()["code"]) == (status, code)
    assert graph.delivered() == []


def test_send_mail_over_4mb_is_413(graph: FakeGraph, api: Api) -> None:
    message = {"subject": "s", "attachments": [file_attachment("a", bytes(3 * MB + 100))]}
    reply = api.post(("sendMail",), {"message": message})
    assert (reply.status, reply.error()["code"]) == (413, "RequestEntityTooLarge")
    assert graph.delivered() == []


def mime_message() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Adele Vance <adele@contoso.com>"
    message["To"] = "Bob <bob@fabrikam.com>, carol@fabrikam.com"
    message["Cc"] = "dan@fabrikam.com"
    message["Bcc"] = "erin@fabrikam.com"
    message["Subject"] = "MIME report ü"
    message["X-Campaign"] = "q3"
    message["Importance"] = "High"
    message.set_content("plain text")
    message.add_alternative("<p>html <img src='cid:logo'></p>", subtype="html")
    html_part = message.get_payload()[1]
    html_part.add_related(
        b"\x89PNG", "image", "png", cid="<logo>", filename="logo.png", disposition="inline"
    )
    message.add_attachment(b"a,b\n", maintype="text", subtype="csv", filename="data.csv")
    return message


def test_send_mail_mime_parses_and_delivers_every_part(graph: FakeGraph, api: Api) -> None:
    raw = mime_message().as_bytes()
    body = base64.encodebytes(raw)  # with line breaks, as many clients write it
    reply = api.post(("sendMail",), body=body, headers={"Content-Type": "text/plain"})
    assert (reply.status, reply.body) == (202, b"")
    (sent,) = graph.delivered()
    assert sent.mime == raw and sent.saved_to_sent_items
    assert sent.subject == "MIME report ü"
    assert [str(r) for r in sent.to] == ["Bob <bob@fabrikam.com>", "carol@fabrikam.com"]
    assert [r.address for r in sent.cc + sent.bcc] == ["dan@fabrikam.com", "erin@fabrikam.com"]
    assert sent.sender == Recipient("adele@contoso.com", "Adele Vance")
    assert (sent.body_type, sent.importance) == ("html", "high")
    assert "html" in sent.body and sent.headers == (("X-Campaign", "q3"),)
    logo, data = sent.attachments
    assert (logo.name, logo.content_bytes, logo.inline, logo.content_id) == (
        "logo.png", b"\x89PNG", True, "logo"
    )  # fmt: skip
    assert (data.name, data.content_type, data.content_bytes) == ("data.csv", "text/csv", b"a,b\n")


def test_send_mail_mime_errors(graph: FakeGraph, api: Api) -> None:
    plain = {"Content-Type": "text/plain"}
    reply = api.post(("sendMail",), body=b"not base64!!", headers=plain)
    assert (reply.status, reply.error()["code"]) == (400, "ErrorMimeContentInvalidBase64String")
    no_one = base64.b64encode(b"Subject: x\r\n\r\nbody\r\n")
    reply = api.post(("sendMail",), body=no_one, headers=plain)
    assert (reply.status, reply.error()["code"]) == (400, "ErrorInvalidRecipients")
    assert graph.delivered() == []


def test_a_draft_can_be_made_from_mime(graph: FakeGraph, api: Api) -> None:
    body = base64.b64encode(mime_message().as_bytes())
    reply = api.post(("messages",), body=body, headers={"Content-Type": "text/plain"})
    assert reply.status == 201 and reply.json()["subject"] == "MIME report ü"
    assert len(graph.drafts()[0].attachments) == 2


# Both protocols -----------------------------------------------------------------------------------


@pytest.fixture
def graph_h2() -> Iterator[FakeGraph]:
    pytest.importorskip("cryptography")
    pytest.importorskip("h2")
    with FakeGraph(https=True, http2=True) as g:
        yield g


def test_compose_over_https_http1(graph_https: FakeGraph) -> None:
    api = Api(graph_https)
    draft = api.create(FULL_MESSAGE)["id"]
    assert api.post(("messages", draft, "send")).status == 202
    assert_full_fields(graph_https.delivered()[0])


def test_compose_over_http2(graph_h2: FakeGraph) -> None:
    with H2Client(graph_h2) as client:
        created = client.request("POST", "/v1.0/me/messages", FULL_MESSAGE, IMMUTABLE)
        assert created.status == 201
        draft = json.loads(created.body)["id"]
        attach = file_attachment("c.txt", b"over h2")
        path = f"/v1.0/me/messages/{quote(draft, safe='')}"
        assert client.request("POST", f"{path}/attachments", attach).status == 201
        assert client.request("POST", f"{path}/send").status == 202
        mail = {"message": FULL_MESSAGE, "saveToSentItems": False}
        assert client.request("POST", "/v1.0/me/sendMail", mail).status == 202
    assert {r.http_version for r in graph_h2.requests} == {"HTTP/2"}
    first, second = graph_h2.delivered()
    assert first.attachment("c.txt").content_bytes == b"over h2"
    assert_full_fields(second)


def test_action_parameters_match_without_regard_to_case(graph: FakeGraph, api: Api) -> None:
    # Graph's metadata spells them "Comment", "Message", "SaveToSentItems", "AttachmentItem",
    # and msgraph-sdk sends them so (make conformance found it); its docs use camelCase.
    original = graph.add_received(subject="case")
    reply = api.post(("messages", original, "createReply"), {"Comment": "upper"})
    assert reply.status == 201 and graph.message(reply.json()["id"]).comment == "upper"
    payload = {"Message": {"subject": "m", "toRecipients": [address("b@f.com")]}}
    assert api.post(("sendMail",), {**payload, "SaveToSentItems": False}).status == 202
    assert graph.delivered()[0].saved_to_sent_items is False
    item = {"attachmentItem": {"attachmentType": "file", "name": "a", "size": 1}}
    draft = graph.create_draft()
    assert api.post(("messages", draft, "attachments", "createUploadSession"), item).status == 201
    twice = {"comment": "a", "Comment": "b"}
    assert api.post(("messages", original, "createReply"), twice).status == 400

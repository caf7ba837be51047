"""Small independent HTTP/1.1 servers for the compose tests (not FakeGraph).

`Recorder` answers every request with a scripted reply and records method, path, headers and the
body it read (by Content-Length). `MiniGraph` is a deliberately small, separately written model
of Graph's draft, attachment and upload-session endpoints that checks what the client sends:
Content-Range arithmetic on every chunk, the 4 MB cap, and that no request to an upload URL
carries an Authorization header.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names; the last of repeated names
    body: bytes
    header_lines: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    action: str = "answer"  # answer | close (drop the connection without an answer)


def _json(status: int, doc: object, *headers: tuple[str, str]) -> Answer:
    return Answer(
        status, json.dumps(doc).encode(), (("Content-Type", "application/json"), *headers)
    )


def error(status: int, code: str, message: str = "", **extra: object) -> Answer:
    return _json(status, {"error": {"code": code, "message": message or code, **extra}})


class Recorder:
    """ThreadingHTTPServer on loopback; `reply(request)` decides each answer."""

    def __init__(self, reply: Callable[[Request], Answer] | None = None) -> None:
        self.reply = reply or (lambda r: Answer(202))
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                lines = [(k, v) for k, v in self.headers.items()]
                req = Request(
                    self.command, self.path, {k.lower(): v for k, v in lines}, body, lines
                )
                with outer.lock:
                    outer.requests.append(req)
                answer = outer.reply(req)
                if answer.action == "close":
                    self.close_connection = True
                    return
                self.send_response(answer.status)
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        class Quiet(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that hung up mid-request (tests do that on purpose)

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


REQUEST_CAP = 4 * 1024 * 1024
_SESSION = re.compile(r"^/upload/([0-9a-f]+)$")
_MESSAGE = re.compile(r"^/v1\.0/(?:me|users/[^/]+)/messages/([^/]+)(/.*)?$")


@dataclass
class Session:
    message_id: str
    name: str
    size: int
    data: bytearray
    received: int = 0
    expired: bool = False


class MiniGraph(Recorder):
    """Drafts, small attachments, upload sessions, send and sendMail; strict about uploads.

    `violations` lists every rule the client broke (a test asserts it stays empty);
    `fail_chunk` maps a chunk number (1-based, counted over all PUTs) to an Answer to give
    instead (or "close"); `deleted` lists the upload sessions cancelled by a DELETE.
    """

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.messages: dict[str, dict] = {}
        self.attachments: dict[str, list[dict]] = {}
        self.sessions: dict[str, Session] = {}
        self.sent: list[dict] = []
        self.fail_chunk: dict[int, Answer] = {}
        self.puts = 0
        self.deleted: list[str] = []  # upload sessions cancelled by a DELETE
        super().__init__(self._route)

    def _route(self, r: Request) -> Answer:
        if len(r.body) > REQUEST_CAP:
            self.violations.append(f"{r.method} {r.path}: body of {len(r.body)} bytes")
            return error(413, "RequestEntityTooLarge")
        m = _SESSION.match(r.path)
        if m:
            return self._upload(r, m.group(1))
        if "authorization" not in r.headers:
            return error(401, "InvalidAuthenticationToken")
        if r.method == "POST" and re.fullmatch(r"/v1\.0/(me|users/[^/]+)/messages", r.path):
            msg = json.loads(r.body)
            mid = "AAMk" + uuid.uuid4().hex
            msg.update(id=mid, isDraft=True)
            for a in msg.pop("attachments", []):
                self._store(mid, a)
            self.messages[mid] = msg
            return _json(201, msg)
        if r.method == "POST" and re.fullmatch(r"/v1\.0/(me|users/[^/]+)/sendMail", r.path):
            if r.headers.get("content-type", "").startswith("text/plain"):
                self.sent.append({"mime": base64.b64decode(r.body)})
            else:
                self.sent.append(json.loads(r.body))
            return Answer(202, headers=())
        m = _MESSAGE.match(r.path)
        if not m or m.group(1) not in self.messages:
            return error(404, "ErrorItemNotFound")
        mid, rest = m.group(1), m.group(2) or ""
        if r.method == "POST" and rest == "/attachments":
            return _json(201, self._store(mid, json.loads(r.body)))
        if r.method == "POST" and rest == "/attachments/createUploadSession":
            item = json.loads(r.body)["AttachmentItem"]
            sid = uuid.uuid4().hex
            self.sessions[sid] = Session(mid, item["name"], item["size"], bytearray(item["size"]))
            return _json(
                201,
                {
                    "uploadUrl": f"{self.base_url}/upload/{sid}",
                    "expirationDateTime": "2099-01-01T00:00:00Z",
                    "nextExpectedRanges": ["0-"],
                },
            )
        if r.method == "POST" and rest in ("/createReply", "/createReplyAll", "/createForward"):
            new = "AAMk" + uuid.uuid4().hex
            self.messages[new] = {
                "id": new,
                "isDraft": True,
                "kind": rest[1:],
                **json.loads(r.body or b"{}"),
            }
            return _json(201, self.messages[new])
        if r.method == "POST" and rest == "/send":
            self.sent.append(self.messages.pop(mid))
            return Answer(202, headers=())
        return error(400, "BadRequest", f"unknown {r.method} {rest}")

    def _store(self, mid: str, a: dict) -> dict:
        aid = "AAMkATT" + uuid.uuid4().hex
        raw = base64.b64decode(a["contentBytes"])
        rec = {k: v for k, v in a.items() if k != "contentBytes"}
        rec.update(id=aid, size=len(raw), bytes=raw)
        self.attachments.setdefault(mid, []).append(rec)
        return {k: v for k, v in rec.items() if k != "bytes"}

    def _upload(self, r: Request, sid: str) -> Answer:
        if "authorization" in r.headers:
            self.violations.append(f"{r.method} {r.path} carried Authorization")
            return error(400, "InvalidAuthenticationTokenForUpload")
        s = self.sessions.get(sid)
        if s is None or s.expired:
            return error(404, "ErrorItemNotFound")
        if r.method == "GET":
            return _json(200, {"nextExpectedRanges": [f"{s.received}-"]})
        if r.method == "DELETE":
            del self.sessions[sid]
            self.deleted.append(sid)
            return Answer(204, headers=())
        self.puts += 1
        planned = self.fail_chunk.pop(self.puts, None)
        if planned is not None:
            return planned
        m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", r.headers.get("content-range", ""))
        if not m:
            self.violations.append(f"bad Content-Range {r.headers.get('content-range')!r}")
            return error(400, "InvalidContentRange")
        a, b, total = map(int, m.groups())
        if total != s.size or b < a or b - a + 1 != len(r.body) or b >= total:
            self.violations.append(f"Content-Range {a}-{b}/{total} with {len(r.body)} bytes")
            return error(416, "InvalidRange", nextExpectedRanges=[f"{s.received}-"])
        if int(r.headers.get("content-length", -1)) != len(r.body):
            self.violations.append("Content-Length does not match the body")
        if a != s.received:
            return error(416, "InvalidRange", nextExpectedRanges=[f"{s.received}-"])
        s.data[a : b + 1] = r.body
        s.received = b + 1
        if s.received < s.size:
            # As Outlook's upload service writes it (FakeGraph writes "nextExpectedRanges").
            return _json(
                200,
                {
                    "ExpirationDateTime": "2099-01-01T00:00:00Z",
                    "NextExpectedRanges": [str(s.received)],
                },
            )
        aid = "AAMkATT" + uuid.uuid4().hex
        self.attachments.setdefault(s.message_id, []).append(
            {"id": aid, "name": s.name, "size": s.size, "bytes": bytes(s.data)}
        )
        del self.sessions[sid]
        loc = f"{self.base_url}/v1.0/me/messages('{s.message_id}')/Attachments('{aid}')"
        return Answer(201, b"", (("Location", loc),))

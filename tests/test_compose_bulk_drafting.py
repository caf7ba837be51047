"""Issue 11: send_many drafts the Messages too large for one sendMail side by side (at most
max_per_mailbox per mailbox), not one after another before the batch. A small independent
server (compose_servers.Recorder) answers createDraft after a delay and counts the drafts in
flight per mailbox. Names: test_i11_bulk_drafts_<what>."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
import uuid

import pytest
from compose_servers import Answer, Recorder, Request

import graphsend
from graphsend import AsyncClient, Attachment, Client, Message

DELAY = 0.3
# Two attachments of 2.2 MB: each fits one request, together (base64) they do not fit sendMail.
PART = b"y" * 2_200_000


class SlowDrafts(Recorder):
    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.peak_all = 0
        self.count = threading.Lock()
        self.on_create: list[object] = []  # callables run (once) at the first createDraft
        super().__init__(self._reply)

    def _reply(self, r: Request) -> Answer:
        m = re.fullmatch(r"/v1\.0/users/([^/]+)/messages", r.path)
        if r.method == "POST" and m:
            user = m.group(1)
            with self.count:
                self.in_flight[user] = self.in_flight.get(user, 0) + 1
                self.peak[user] = max(self.peak.get(user, 0), self.in_flight[user])
                self.peak_all = max(self.peak_all, sum(self.in_flight.values()))
            while self.on_create:
                self.on_create.pop()()  # type: ignore[operator]
            time.sleep(DELAY)
            with self.count:
                self.in_flight[user] -= 1
            return Answer(201, json.dumps({"id": "AAMk" + uuid.uuid4().hex}).encode())
        if r.method == "POST" and r.path.endswith("/attachments"):
            return Answer(201, json.dumps({"id": "ATT" + uuid.uuid4().hex}).encode())
        if r.method == "POST" and r.path.endswith("/send"):
            return Answer(202, headers=())
        return Answer(404, b"{}")

    def sends(self) -> int:
        return sum(1 for r in self.requests if r.path.endswith("/send"))


def large_items(mailboxes: int, each: int) -> list[tuple[str, Message]]:
    def big(i: int) -> Message:
        parts = [Attachment(PART, name=f"p{k}.bin") for k in range(2)]
        return Message(f"m{i}", "b", to="a@b.com", attachments=parts)

    return [
        (f"user{m}@contoso.com", big(m * each + k)) for k in range(each) for m in range(mailboxes)
    ]


@pytest.mark.parametrize("cap", [4, 2])
def test_i11_bulk_drafts_side_by_side_within_the_mailbox_cap(cap: int) -> None:
    server = SlowDrafts()
    try:
        items = large_items(3, 4)
        with Client("tok", base_url=server.base_url, http2=False) as client:
            results = client.send_many(items, max_per_mailbox=cap)
        assert all(isinstance(r, graphsend.Receipt) for r in results), results
        assert server.sends() == 12
        assert max(server.peak.values()) <= cap  # Graph's per-mailbox limit counts drafts too
        # Side by side: each createDraft takes DELAY, so drafts made one after another never
        # overlap (peak 1); the time saved is in bench/, not here (it depends on the load).
        assert server.peak_all >= 3
    finally:
        server.close()


def test_i11_bulk_drafts_side_by_side_async() -> None:
    server = SlowDrafts()

    async def main() -> list[graphsend.Receipt | graphsend.SendError]:
        async with AsyncClient("tok", base_url=server.base_url, http2=False) as client:
            return await client.send_many(large_items(3, 4))

    try:
        results = asyncio.run(main())
        assert all(isinstance(r, graphsend.Receipt) for r in results), results
        assert server.sends() == 12
        assert max(server.peak.values()) <= 4 and server.peak_all >= 3
    finally:
        server.close()


def test_i11_bulk_drafts_one_failure_is_that_item_only() -> None:
    server = SlowDrafts()
    original = server.reply

    def reply(r: Request) -> Answer:
        if r.path.startswith("/v1.0/users/user1@") and r.path.endswith("/messages"):
            return Answer(403, b'{"error":{"code":"ErrorAccessDenied","message":"no"}}')
        return original(r)

    server.reply = reply
    try:
        items = large_items(3, 2)
        with Client("tok", base_url=server.base_url, http2=False) as client:
            results = client.send_many(items)
        for (user, _), result in zip(items, results, strict=True):
            if user.startswith("user1@"):
                assert isinstance(result, graphsend.SendError)
                assert result.may_have_sent is False and result.code == "ErrorAccessDenied"
            else:
                assert isinstance(result, graphsend.Receipt)
        assert server.sends() == 4
    finally:
        server.close()


def test_i11_bulk_drafts_ctrl_c_stops_the_drafting_and_keeps_the_record() -> None:
    import signal

    server = SlowDrafts()
    try:
        items = large_items(3, 2)
        with Client("tok", base_url=server.base_url, http2=False) as client:
            # Once the first drafts are under way, Ctrl-C (SIGINT to this process).
            server.on_create.append(lambda: os.kill(os.getpid(), signal.SIGINT))
            with pytest.raises(KeyboardInterrupt) as info:
                client.send_many(items, max_per_mailbox=1)
        results = graphsend.interrupted_results(info.value)
        assert results is not None and len(results) == 6
        assert all(isinstance(r, graphsend.SendError) and not r.may_have_sent for r in results)
        assert server.sends() == 0
        # The drafts under way finished (at most one per mailbox); no new one was started.
        assert 1 <= sum(1 for r in server.requests if r.path.endswith("/messages")) <= 3
        assert not [t for t in threading.enumerate() if t.name == "graphsend-draft"]
    finally:
        server.close()

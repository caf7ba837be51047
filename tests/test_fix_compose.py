"""Issue 11 review, defect 4: create_draft never leaves a draft behind without saying so."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from compose_servers import Answer, Recorder, Request

import graphsend
from graphsend import Client, Message
from graphsend.testing import FakeGraph

FAST = graphsend.Retry(backoff_base=0.01, backoff_max=0.02)
SIZE = 3_500_000  # over SMALL_MAX: an upload session


def big(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(SIZE))
    return path


def draft_host(on_put=None, put: Answer | None = None) -> Recorder:
    holder: list[Recorder] = []

    def reply(r: Request) -> Answer:
        if r.method == "POST" and r.path.endswith("/createUploadSession"):
            return Answer(201, json.dumps({"uploadUrl": holder[0].base_url + "/up"}).encode())
        if r.method == "POST":
            return Answer(201, json.dumps({"id": "DRAFT1"}).encode())
        if on_put is not None:
            on_put(r)
        if put is not None:
            return put
        return Answer(201, b"", (("Location", "https://x/Attachments('A1')"),))

    rec = Recorder(reply)
    holder.append(rec)
    return rec


def test_r11_4_missing_file_found_before_any_draft(tmp_path: Path) -> None:
    path = big(tmp_path, "big.bin")
    message = Message("s", "b", to="a@b.com", attachments=[path])
    path.unlink()
    with FakeGraph() as graph, Client(graph.token, base_url=graph.base_url, retry=FAST) as c:
        with pytest.raises(FileNotFoundError):
            c.create_draft(message)
        assert graph.requests == []  # no draft left behind


def test_r11_4_file_gone_after_the_draft_carries_draft_id(tmp_path: Path) -> None:
    first, second, third = (big(tmp_path, n) for n in ("a.bin", "b.bin", "c.bin"))
    message = Message("s", "b", to="a@b.com", attachments=[first, second, third])

    def on_put(r: Request) -> None:
        if second.exists():
            second.unlink()  # deleted while the first one uploads

    with draft_host(on_put) as rec, Client("t", base_url=rec.base_url, retry=FAST) as c:
        with pytest.raises(FileNotFoundError) as info:
            c.create_draft(message)
    assert getattr(info.value, "draft_id", None) == "DRAFT1"
    notes = " ".join(getattr(info.value, "__notes__", []))
    assert "DRAFT1" in notes and "the 1 after it" in notes


def test_r11_4_senderror_says_later_attachments_are_missing(tmp_path: Path) -> None:
    message = Message(
        "s", "b", to="a@b.com", attachments=[big(tmp_path, "a.bin"), big(tmp_path, "b.bin")]
    )
    with (
        draft_host(put=Answer(400, b"{}")) as rec,
        Client("t", base_url=rec.base_url, retry=FAST) as c,
    ):
        with pytest.raises(graphsend.SendError) as info:
            c.create_draft(message)
    assert getattr(info.value, "draft_id", None) == "DRAFT1"
    assert "without this attachment and the 1 after it" in str(info.value)
    assert info.value.may_have_sent is False

"""Issue 11 review, uploads: a hostile or broken upload host can neither loop the client for
ever nor make it raise anything but a SendError; permanent failures are not retried; every PUT
is logged without the upload URL. Names: test_r11_<defect number>_<what>."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest
from compose_servers import Answer, Recorder, Request

import graphsend
from graphsend import Client
from graphsend.testing import FakeGraph

FAST = graphsend.Retry(backoff_base=0.01, backoff_max=0.02)
SIZE = 5_000_000
SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))


@pytest.fixture
def big(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(SIZE))
    return path


def upload_host(put: Answer | None = None, *, put_reply=None, session_extra: str = "") -> Recorder:
    """createUploadSession gives an upload URL on the same server; PUTs get ``put``."""
    holder: list[Recorder] = []

    def reply(r: Request) -> Answer:
        if r.method == "POST":
            url = holder[0].base_url + "/up?authtoken=SECRETTOKEN" + session_extra
            return Answer(201, json.dumps({"uploadUrl": url}).encode())
        if put_reply is not None:
            return put_reply(r)
        assert put is not None
        return put

    rec = Recorder(reply)
    holder.append(rec)
    return rec


def puts(rec: Recorder) -> int:
    return sum(1 for r in rec.requests if r.method == "PUT")


def run_with_deadline(fn, seconds: float) -> BaseException | None:
    """fn() in a thread; the test fails (instead of hanging) when it takes too long."""
    box: list[BaseException | None] = []

    def target() -> None:
        try:
            fn()
            box.append(None)
        except BaseException as exc:
            box.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds * SCALE)
    assert box, f"still running after {seconds * SCALE:.0f} s"
    return box[0]


@pytest.mark.parametrize("nxt", ["0-", "999999999-", str(2**64) + "-", "1" * 5000 + "-"])
def test_r11_1_no_progress_is_a_bounded_senderror(big: Path, nxt: str) -> None:
    body = json.dumps({"nextExpectedRanges": [nxt]}).encode()
    with upload_host(Answer(200, body)) as rec, Client("t", base_url=rec.base_url, retry=FAST) as c:
        exc = run_with_deadline(lambda: c.attach("AAA", big), 10)
        assert isinstance(exc, graphsend.SendError), repr(exc)
        assert exc.may_have_sent is False
        assert 1 <= puts(rec) <= FAST.max_attempts


def test_r11_1_deeply_nested_200_is_a_senderror(big: Path) -> None:
    deep = b'{"nextExpectedRanges":' + b"[" * 30000
    with upload_host(Answer(200, deep)) as rec, Client("t", base_url=rec.base_url, retry=FAST) as c:
        exc = run_with_deadline(lambda: c.attach("AAA", big), 10)
        assert isinstance(exc, graphsend.SendError), repr(exc)
        assert exc.may_have_sent is False


def test_r11_5_untrusted_upload_certificate_fails_at_once(big: Path) -> None:
    with FakeGraph(https=True) as tls:
        session = json.dumps({"uploadUrl": tls.base_url + "/up"}).encode()
        slow = graphsend.Retry(backoff_base=2.0, backoff_max=2.0)
        with Recorder(lambda r: Answer(201, session)) as rec:
            with Client("t", base_url=rec.base_url, retry=slow) as c:
                t0 = time.monotonic()
                with pytest.raises(graphsend.TransportError) as info:
                    c.attach("AAA", big)
                took = time.monotonic() - t0
    assert info.value.may_have_sent is False
    assert "certificate" in str(info.value)
    assert took < 1.5 * SCALE  # not one backoff wait


def test_r11_5_upload_4xx_fails_at_once_5xx_is_retried(big: Path) -> None:
    with (
        upload_host(Answer(400, b"{}")) as rec,
        Client("t", base_url=rec.base_url, retry=FAST) as c,
    ):
        with pytest.raises(graphsend.GraphError):
            c.attach("AAA", big)
        assert puts(rec) == 1
    with (
        upload_host(Answer(500, b"{}")) as rec,
        Client("t", base_url=rec.base_url, retry=FAST) as c,
    ):
        with pytest.raises(graphsend.GraphError) as info:
            c.attach("AAA", big)
        assert puts(rec) == FAST.max_attempts
        assert info.value.may_have_sent is False


def test_r11_6_every_put_logged_without_the_upload_url(
    big: Path, caplog: pytest.LogCaptureFixture
) -> None:
    answers = iter([Answer(503, b"{}")])

    def put_reply(r: Request) -> Answer:
        first = next(answers, None)
        if first is not None:
            return first
        end = int(r.headers["content-range"].split("-")[1].split("/")[0])
        if end == SIZE - 1:
            return Answer(201, b"", (("Location", "https://x/Attachments('ATT1')"),))
        return Answer(200, json.dumps({"nextExpectedRanges": [f"{end + 1}-"]}).encode())

    caplog.set_level(logging.DEBUG, logger="graphsend")
    with (
        upload_host(put_reply=put_reply) as rec,
        Client("t", base_url=rec.base_url, retry=FAST) as c,
    ):
        assert c.attach("AAA", big) == "ATT1"
        n = puts(rec)
    records = [r for r in caplog.records if r.name == "graphsend"]
    put_debug = [r for r in records if r.levelno == logging.DEBUG and "PUT" in r.getMessage()]
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert len(put_debug) == n == 3
    assert len(warnings) == 1 and "PUT" in warnings[0].getMessage()
    assert "bytes 0-" in put_debug[0].getMessage()
    for r in records:
        assert "authtoken" not in r.getMessage() and "SECRETTOKEN" not in r.getMessage()


def test_r11_6_rejected_upload_url_not_in_error(big: Path) -> None:
    with upload_host(Answer(200, b"{}"), session_extra="&x=\r\n") as rec:
        with Client("t", base_url=rec.base_url, retry=FAST) as c:
            with pytest.raises(graphsend.SendError) as info:
                c.attach("AAA", big)
    text = str(info.value) + repr(info.value.args)
    assert "uploadUrl" in text
    assert "authtoken" not in text and "SECRETTOKEN" not in text
    assert "127.0.0.1" in text  # the host is named


def test_r11_9_201_without_an_id_is_a_senderror(big: Path) -> None:
    def put_reply(r: Request) -> Answer:
        end = int(r.headers["content-range"].split("-")[1].split("/")[0])
        if end == SIZE - 1:
            return Answer(201, b"")
        return Answer(200, json.dumps({"nextExpectedRanges": [f"{end + 1}-"]}).encode())

    with (
        upload_host(put_reply=put_reply) as rec,
        Client("t", base_url=rec.base_url, retry=FAST) as c,
    ):
        with pytest.raises(graphsend.GraphError) as info:
            c.attach("AAA", big)
    assert info.value.status == 201
    assert info.value.may_have_sent is False
    assert "uploaded" in str(info.value) and "id" in str(info.value)


def test_r11_8_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    with FakeGraph() as graph, Client(graph.token, base_url=graph.base_url, retry=FAST) as c:
        path = tmp_path / "big.bin"
        path.write_bytes(os.urandom(SIZE))
        att = graphsend.Attachment(path)
        path.unlink()
        os.mkfifo(path)  # nobody ever writes it: a blocking open() would wait for ever
        exc = run_with_deadline(lambda: c.attach("AAA", att), 10)
    assert isinstance(exc, ValueError) and "regular file" in str(exc)

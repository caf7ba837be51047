"""Issue 11: Engine.submit / LoopEngine.submit with method=, body= and file= (the compose
Operations on the bulk Scheduler and the AsyncClient), against a recording loopback server."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator

import pytest
from compose_servers import Answer, Recorder

from graphsend import _native as native

SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))


@pytest.fixture
def rec() -> Iterator[Recorder]:
    server = Recorder(lambda r: Answer(201, b'{"id": "x"}' * 1000))
    yield server
    server.close()


def drain(engine: native.Engine, count: int) -> dict[int, object]:
    results: dict[int, object] = {}
    deadline = time.monotonic() + 10 * SCALE
    while len(results) < count and time.monotonic() < deadline:
        for tag, result in engine.perform(0.5):
            results[tag] = result
    return results


def test_i11_engine_submit_bodies_methods_and_back_to_the_plain_send(rec: Recorder) -> None:
    engine = native.Engine(allow_http=True)
    url = rec.base_url + "/v1.0/me/x"
    body = os.urandom(300_000)
    with tempfile.TemporaryFile() as f:
        f.write(b"0123456789" * 10)
        f.flush()
        fd = f.fileno()
        engine.submit(1, url, ("X-A: 1",), None, "POST", body)
        engine.submit(2, url, (), None, "PUT", None, (fd, 10, 25))
        engine.submit(3, url, (), method="GET")
        got = drain(engine, 3)
    # The same transfers, reused: a plain send is an empty POST again, with its Receipt path.
    engine.submit(4, url, (), "crid-4")
    got.update(drain(engine, 1))
    engine.close()
    for tag in (1, 2, 3):
        result = got[tag]
        assert isinstance(result, tuple) and result[0] == 201
        assert result[2] == b'{"id": "x"}' * 1000  # the whole 2xx body, as Handle.request
    by = {(r.method, r.headers.get("x-a")): r for r in rec.requests}
    assert by[("POST", "1")].body == body  # copied at submit: the caller may drop its bytes
    assert by[("PUT", None)].body == b"0123456789012345678901234"[:25]
    assert by[("PUT", None)].headers["content-length"] == "25"
    gets = [r for r in rec.requests if r.method == "GET"]
    assert len(gets) == 1 and gets[0].body == b""
    plain = rec.requests[-1]
    assert plain.method == "POST" and plain.headers["content-length"] == "0"
    assert plain.headers["client-request-id"] == "crid-4"


def test_i11_engine_submit_checks_its_arguments() -> None:
    engine = native.Engine(allow_http=True)
    with pytest.raises(ValueError, match="method"):
        engine.submit(1, "http://127.0.0.1:1/", (), None, "PATCH")
    with pytest.raises(ValueError, match="not both"):
        engine.submit(1, "http://127.0.0.1:1/", (), None, "PUT", b"x", (0, 0, 1))
    with pytest.raises(ValueError, match="no body"):
        engine.submit(1, "http://127.0.0.1:1/", (), None, "GET", b"x")
    with pytest.raises(TypeError):
        engine.submit(1, "http://127.0.0.1:1/", (), None, "PUT", "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="file"):
        engine.submit(1, "http://127.0.0.1:1/", (), None, "PUT", None, (1, 2))  # type: ignore[arg-type]
    engine.close()
    loop_engine = native.LoopEngine(allow_http=True)
    with pytest.raises(ValueError, match="file"):
        loop_engine.submit(1, "http://127.0.0.1:1/", (), file=(-1, 0, 1))
    loop_engine.close()

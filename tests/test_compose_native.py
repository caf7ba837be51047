"""Issue 11, native core: Handle.request() (method, URL, headers, a bytes or file body) against
real loopback servers."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator

import pytest
from compose_servers import Answer, Recorder
from loopback import Reply, Seen, Server

from graphsend import _native


@pytest.fixture
def handle() -> Iterator[_native.Handle]:
    h = _native.Handle(allow_http=True)
    yield h
    h.close()


@pytest.fixture
def recorder() -> Iterator[Callable[..., Recorder]]:
    made: list[Recorder] = []

    def make(reply: Callable[..., Answer] | None = None) -> Recorder:
        made.append(Recorder(reply))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_i11_native_post_bytes_body_with_content_length(handle, recorder) -> None:
    srv = recorder(lambda r: Answer(201, b'{"id": "AAMk1"}'))
    body = b'{"subject": "hi"}'
    got = handle.request(
        "POST", srv.base_url + "/v1.0/me/messages", ("Content-Type: application/json",), body
    )
    assert got[0] == 201 and got[2] == b'{"id": "AAMk1"}' and got[4] == 0
    (req,) = srv.requests
    assert (req.method, req.path, req.body) == ("POST", "/v1.0/me/messages", body)
    assert req.headers["content-length"] == str(len(body))
    assert req.headers["content-type"] == "application/json"
    assert "expect" not in req.headers


def test_i11_native_2xx_body_kept_whole_error_body_capped(handle, recorder) -> None:
    big = b"x" * (3 * _native.body_limit)
    status = iter([201, 400])
    srv = recorder(lambda r: Answer(next(status), big))
    assert handle.request("GET", srv.base_url + "/a", ())[2] == big
    assert len(handle.request("GET", srv.base_url + "/b", ())[2]) == _native.body_limit
    assert _native.body_limit_ok >= 8 * 1024 * 1024


def test_i11_native_put_file_range_read_in_c(handle, recorder) -> None:
    loc = "https://graph.example/v1.0/me/messages('m')/Attachments('AAMkATT1')"
    srv = recorder(lambda r: Answer(201, b"", (("Location", loc),)))
    data = os.urandom(1 << 20)
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        got = handle.request(
            "PUT",
            srv.base_url + "/upload/s",
            ("Content-Range: bytes 1000-500999/1048576",),
            file=(f.fileno(), 1000, 500000),
        )
    assert got[0] == 201 and got[1]["location"] == loc
    (req,) = srv.requests
    assert req.method == "PUT" and req.body == data[1000:501000]
    assert req.headers["content-length"] == "500000"


def test_i11_native_get_and_delete_send_no_body(handle, recorder) -> None:
    srv = recorder(lambda r: Answer(200, b"{}"))
    handle.request("GET", srv.base_url + "/g", ())
    handle.request("DELETE", srv.base_url + "/d", ())
    assert [(r.method, r.body, "content-length" in r.headers) for r in srv.requests] == [
        ("GET", b"", False),
        ("DELETE", b"", False),
    ]


def test_i11_native_bad_arguments_raise_before_io(handle) -> None:
    url = "http://127.0.0.1:9/x"
    with pytest.raises(ValueError, match="method"):
        handle.request("PATCH", url, ())
    with pytest.raises(ValueError, match="no body"):
        handle.request("GET", url, (), b"x")
    with pytest.raises(ValueError, match="not both"):
        handle.request("POST", url, (), b"x", (0, 0, 1))
    with pytest.raises(TypeError, match="bytes"):
        handle.request("POST", url, (), bytearray(b"x"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fd, offset, length"):
        handle.request("PUT", url, (), file=(0, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 0"):
        handle.request("PUT", url, (), file=(0, -1, 1))
    with pytest.raises(ValueError, match="CR, LF"):
        handle.request("POST", url, ("X-A: b\r\nAuthorization: x",), b"")


def test_i11_native_short_file_fails_instead_of_sending_a_short_body(handle, recorder) -> None:
    srv = recorder(lambda r: Answer(201))
    with tempfile.TemporaryFile() as f:
        f.write(b"abc")
        f.flush()
        got = handle.request("PUT", srv.base_url + "/u", (), file=(f.fileno(), 0, 10))
    assert got[0] == 0 and got[4] != 0
    # The body was cut short with the connection: no complete request reached the server.
    assert not any(len(r.body) == 10 for r in srv.requests)


def test_i11_native_send_after_request_is_an_empty_post_again(handle, recorder) -> None:
    srv = recorder(lambda r: Answer(202))
    handle.request("PUT", srv.base_url + "/u", (), b"12345")
    handle.request("GET", srv.base_url + "/g", ())
    assert handle.send(srv.base_url + "/s", ())[0] == 202
    got = handle.send_draft(srv.base_url, None, "m1", "Authorization: Bearer t", None)
    assert got.__class__.__name__ == "Receipt"
    last = srv.requests[-2:]
    assert [(r.method, r.headers["content-length"], r.body) for r in last] == [
        ("POST", "0", b""),
        ("POST", "0", b""),
    ]
    assert "content-type" not in last[0].headers


def _dies_on_second(seen: Seen, count: list[int], third: Reply) -> Reply:
    count.append(1)
    if len(count) == 1:
        return Reply(200)
    if len(count) == 2:
        return Reply(action="close")  # read the request, then drop the connection unanswered
    return third


def test_i11_native_post_keeps_the_resend_guard(handle, serve) -> None:
    count: list[int] = []
    srv: Server = serve(lambda seen: _dies_on_second(seen, count, Reply(202)))
    handle.request("GET", srv.url("/warm"), ())
    got = handle.request("POST", srv.url("/v1.0/me/sendMail"), (), b"")
    assert got[0] == 0 and got[6] is True  # may have sent: never silently sent again
    assert len(srv.requests) == 2


def test_i11_native_put_chunk_may_be_resent_with_its_body(handle, serve) -> None:
    count: list[int] = []
    srv: Server = serve(lambda seen: _dies_on_second(seen, count, Reply(200, watch_body=0.5)))
    handle.request("GET", srv.url("/warm"), ())
    with tempfile.TemporaryFile() as f:
        f.write(b"0123456789abcdef")
        f.flush()
        got = handle.request("PUT", srv.url("/upload/s"), (), file=(f.fileno(), 4, 8))
    assert got[0] == 200
    assert len(srv.requests) == 3 and srv.requests[2].extra == b"456789ab"


def test_r11_8_file_offset_plus_length_past_llong_max_is_refused(
    handle: _native.Handle, recorder: Callable[..., Recorder]
) -> None:
    # offset + position would overflow a long long in the read callback: refused up front.
    srv = recorder()
    with tempfile.TemporaryFile() as f:
        f.write(b"x" * 100)
        f.flush()
        with pytest.raises(ValueError, match="too large"):
            handle.request("PUT", srv.base_url + "/u", (), file=(f.fileno(), 2**63 - 10, 100))
    assert srv.requests == []

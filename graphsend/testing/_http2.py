"""HTTP/2 on a TLS connection whose client chose ``h2`` by ALPN (FakeGraph(http2=True)).

One task reads frames and feeds them to the ``h2`` state machine; each request (a stream that
ended) is served by its own task through the same rules as HTTP/1.1 (``_rules``), so concurrent
streams on one connection are answered concurrently, each after its own latency.

The HTTP/1.1 notions map as follows: a reset (reset_next) resets the TCP connection, as in
HTTP/1.1, so every stream on it fails (with ``stream_only``, RST_STREAM(INTERNAL_ERROR) on that
stream alone); a stall waits until the client resets the stream or drops the connection;
"close after this answer" (max_requests_per_connection, a fault with its own framing) is a
GOAWAY, after which the connection ends once its streams are answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Final

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame

from ._http import MAX_BODY, Reply, Request, reset
from ._replies import Replies
from ._rules import serve_request

if TYPE_CHECKING:
    from ._fakegraph import FakeGraph

VERSION: Final = "HTTP/2"
_READ_SIZE: Final = 65536
_WINDOW: Final = 8 * 1024 * 1024
# Headers that only mean something on an HTTP/1.1 connection; HTTP/2 forbids them (RFC 9113 8.2.2).
_CONNECTION_SPECIFIC: Final = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)


async def serve_http2_connection(
    graph: FakeGraph, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await _Connection(graph, reader, writer).run()


class _Stream:
    """A request arriving on one stream: its head and body so far, and whether the client left."""

    def __init__(self, stream_id: int, headers: list[tuple[str, str]]) -> None:
        self.id = stream_id
        self.headers = headers
        self.body = bytearray()
        self.too_large = False
        self.received_at = 0.0  # set when the request is complete, like HTTP/1.1's head time
        self.gone = asyncio.Event()  # the client reset the stream, or the connection ended


class _Connection:
    def __init__(
        self, graph: FakeGraph, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.graph, self.reader, self.writer = graph, reader, writer
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(config=config)
        self.streams: dict[int, _Stream] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.number = 0  # the connection's number in FakeGraph's records
        self.served = 0
        self.going_away = False  # GOAWAY sent: no new streams, end once the open ones are done
        self.dead = False  # the transport is gone: nothing more can be written
        self._window = asyncio.Event()  # replaced each time a WINDOW_UPDATE arrives

    # ---------------------------------------------------------------- reading

    async def run(self) -> None:
        self.number = self.graph._traffic.connection_opened()
        try:
            self.h2.initiate_connection()
            # Upload chunks are up to 4 MB: windows that large let a client send one without
            # waiting for WINDOW_UPDATEs (the default 64 KiB would cost a round trip per 64 KiB).
            self.h2.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW})
            self.h2.increment_flow_control_window(_WINDOW)
            self.flush()
            while await self._read_once():
                pass
        except (ConnectionError, OSError):
            pass  # the client went away
        finally:
            self.dead = True
            for stream in self.streams.values():
                stream.gone.set()
            self._wake_writers()
            try:
                # Requests still being served settle their records (as "disconnected").
                if self.tasks:
                    await asyncio.wait(set(self.tasks))
            finally:
                for task in self.tasks:
                    task.cancel()
                self.graph._traffic.connection_closed()
                self.writer.close()

    async def _read_once(self) -> bool:
        """Read and handle one chunk of frames; False once the connection is over."""
        idle = self.graph.idle_timeout if not self.streams else None
        try:
            read = self.reader.read(_READ_SIZE)
            data = await (asyncio.wait_for(read, idle) if idle is not None else read)
        except asyncio.TimeoutError:
            self.h2.close_connection()
            self.flush()
            return False
        if not data:
            return False
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.flush()  # h2 has queued the GOAWAY that says why
            return False
        for event in events:
            self._handle(event)
        self.flush()
        return not (self.going_away and not self.streams)

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            if self.going_away:
                self.h2.reset_stream(event.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                return
            headers = [(str(n), str(v)) for n, v in event.headers or []]
            self.streams[event.stream_id] = _Stream(event.stream_id, headers)
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if stream is not None and not stream.too_large:
                stream.body += event.data or b""
                if len(stream.body) > MAX_BODY:
                    stream.too_large, stream.body = True, bytearray()
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.received_at = time.monotonic()
                task = asyncio.get_running_loop().create_task(self._serve(stream))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.gone.set()
                if stream.received_at == 0.0:  # never complete: no task will remove it
                    del self.streams[stream.id]
        elif isinstance(event, h2.events.WindowUpdated):
            self._wake_writers()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.going_away = True  # the client's GOAWAY: it opens no more streams

    # ---------------------------------------------------------------- serving

    async def _serve(self, stream: _Stream) -> None:
        self.served += 1
        channel = Http2Channel(self, stream)
        try:
            if stream.too_large:
                replies = Replies(https=True, request_headers={})
                reply = replies.error(
                    413, "RequestEntityTooLarge", "The request body is too large."
                )
                with contextlib.suppress(ConnectionError, OSError):
                    await channel.write(reply, close=False, head_only=False)
                return
            keep = await serve_request(
                self.graph, _request(stream), self.number, self.served, channel
            )
            if not keep:
                self.go_away()
        finally:
            self.streams.pop(stream.id, None)
            if self.going_away and not self.streams and not self.dead:
                self.writer.close()  # ends the read loop too

    def go_away(self) -> None:
        """GOAWAY: the HTTP/2 way to say "Connection: close" after the streams open now.

        Written as a raw frame: h2's close_connection() would also forbid answering the streams
        still open, which a graceful GOAWAY lets finish."""
        if self.going_away or self.dead:
            return
        self.going_away = True
        self.flush()
        last = max(self.streams, default=0)
        self.writer.write(GoAwayFrame(0, last_stream_id=last, error_code=0).serialize())

    # ---------------------------------------------------------------- writing

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.dead:
            self.writer.write(data)

    async def wait_for_window(self) -> None:
        await self._window.wait()

    def _wake_writers(self) -> None:
        woken, self._window = self._window, asyncio.Event()
        woken.set()


def _request(stream: _Stream) -> Request:
    """The stream's request in the shape the rules read (as HTTP/1.1's parser gives it)."""
    pseudo = {n: v for n, v in stream.headers if n.startswith(":")}
    headers: dict[str, str] = {}
    for name, value in stream.headers:
        if not name.startswith(":"):
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if ":authority" in pseudo:
        headers.setdefault("host", pseudo[":authority"])
    length = headers.get("content-length", "").strip()
    # A stream's end frames its body, but Graph still wants the length said (rule 1 applies).
    content_length = int(length) if length.isdigit() else None
    return Request(
        method=pseudo.get(":method", ""),
        target=pseudo.get(":path", ""),
        version=VERSION,
        headers=headers,
        body=bytes(stream.body),
        content_length=content_length,
        keep_alive=True,
        received_at=stream.received_at,
    )


class Http2Channel:
    """The answer to one stream's request goes on that stream; a reset resets only the stream."""

    def __init__(self, connection: _Connection, stream: _Stream) -> None:
        self._connection, self._stream = connection, stream

    def client_gone(self) -> bool:
        return self._stream.gone.is_set()

    async def write(self, reply: Reply, *, close: bool, head_only: bool) -> None:
        connection, stream_id = self._connection, self._stream.id
        self._check_open()
        headers = [(":status", str(reply.status))]
        headers += [
            (n.lower(), v) for n, v in reply.headers if n.lower() not in _CONNECTION_SPECIFIC
        ]
        if not reply.raw_framing:
            headers.append(("content-length", str(len(reply.body))))
        body = b"" if head_only else reply.body
        if close:
            # GOAWAY ahead of the answer, so that the client never starts another stream here.
            connection.go_away()
        try:
            connection.h2.send_headers(stream_id, headers, end_stream=not body)
            connection.flush()
            view = memoryview(body)
            while view:
                self._check_open()
                room = min(
                    connection.h2.local_flow_control_window(stream_id),
                    connection.h2.max_outbound_frame_size,
                )
                if room <= 0:
                    await connection.wait_for_window()
                    continue
                chunk, view = view[:room], view[room:]
                connection.h2.send_data(stream_id, chunk.tobytes(), end_stream=not view)
                connection.flush()
                await connection.writer.drain()
            await connection.writer.drain()
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError) as exc:
            raise ConnectionResetError("the client reset the stream") from exc

    def _check_open(self) -> None:
        if self._stream.gone.is_set() or self._connection.dead:
            raise ConnectionResetError("the client reset the stream or closed the connection")

    async def wait_gone(self) -> None:
        await self._stream.gone.wait()

    def reset(self, *, stream_only: bool) -> None:
        if self._connection.dead:
            return
        if not stream_only:
            self._connection.dead = True
            reset(self._connection.writer)
            return
        if self._stream.gone.is_set():
            return
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self._connection.h2.reset_stream(self._stream.id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            self._connection.flush()

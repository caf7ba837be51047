"""One client connection: read requests one after another and serve each, until a side closes.

A TLS connection whose client chose ``h2`` by ALPN is handed to ``_http2`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from ._http import BadRequest, Reply, read_request, reset, write_reply
from ._replies import Replies
from ._rules import serve_request

if TYPE_CHECKING:
    from ._fakegraph import FakeGraph


async def serve_connection(
    graph: FakeGraph, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
        from ._http2 import serve_http2_connection  # h2 is needed only in HTTP/2 mode

        await serve_http2_connection(graph, reader, writer)
        return
    number = graph._traffic.connection_opened()
    served = 0
    try:
        while True:
            try:
                request = await read_request(reader, writer, graph.idle_timeout)
            except BadRequest as bad:
                # Nothing can be trusted after an unparsable request: answer and close.
                replies = Replies(https=graph.scheme == "https", request_headers={})
                reply = replies.error(bad.status, bad.code, bad.message)
                await write_reply(writer, reply, close=True, head_only=False)
                break
            if request is None:
                break
            served += 1
            channel = Http1Channel(reader, writer)
            if not await serve_request(graph, request, number, served, channel):
                break
    except (ConnectionError, OSError):
        pass  # the client went away
    finally:
        graph._traffic.connection_closed()
        writer.close()  # flushes what is buffered, then FIN (a reset has already aborted)


class Http1Channel:
    """The answer to an HTTP/1.1 request goes on its connection; a reset resets the connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    def client_gone(self) -> bool:
        return self._reader.at_eof()

    async def write(self, reply: Reply, *, close: bool, head_only: bool) -> None:
        await write_reply(self._writer, reply, close=close, head_only=head_only)

    async def wait_gone(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while await self._reader.read(65536):
                pass

    def reset(self, *, stream_only: bool) -> None:
        reset(self._writer)  # HTTP/1.1 has no streams: the connection it is

"""One client connection: read requests one after another and serve each, until a side closes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ._http import BadRequest, read_request, write_reply
from ._replies import Replies
from ._rules import serve_request

if TYPE_CHECKING:
    from ._fakegraph import FakeGraph


async def serve_connection(
    graph: FakeGraph, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
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
            if not await serve_request(graph, request, number, served, reader, writer):
                break
    except (ConnectionError, OSError):
        pass  # the client went away
    finally:
        graph._traffic.connection_closed()
        writer.close()  # flushes what is buffered, then FIN (a reset has already aborted)

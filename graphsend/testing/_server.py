"""The server thread: one asyncio event loop in a daemon thread, so that hundreds of concurrent
keep-alive connections and per-request latency cost no thread each."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import threading
from collections.abc import Awaitable, Callable, Coroutine

from ._http import MAX_HEAD

ConnectionHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class ServerThread:
    """Accepts connections on a background thread and hands each to a handler coroutine."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # open connections, for stop()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        handler: ConnectionHandler,
    ) -> int:
        """Listen and serve; return the port (the one picked when ``port`` is 0). Raises what
        listening raised."""
        loop = asyncio.new_event_loop()
        # Created here, run in the server thread: the socket belongs to that thread's loop.
        listening = asyncio.start_server(
            functools.partial(self._track, handler),
            host,
            port,
            ssl=ssl_context,
            backlog=1024,
            limit=MAX_HEAD,
        )
        ready = threading.Event()
        failure: list[BaseException] = []
        thread = threading.Thread(
            target=self._run,
            args=(loop, listening, ready, failure),
            name="FakeGraph",
            daemon=True,
        )
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            raise failure[0]
        assert self._server is not None
        self._loop, self._thread = loop, thread
        return int(self._server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        """Close every connection, stop the loop and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = None

    def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        listening: Coroutine[object, object, asyncio.AbstractServer],
        ready: threading.Event,
        failure: list[BaseException],
    ) -> None:
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(_quiet_exception_handler)
        try:
            self._server = loop.run_until_complete(listening)
        except BaseException as exc:
            failure.append(exc)
            loop.close()
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _track(
        self,
        handler: ConnectionHandler,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await handler(reader, writer)
        except asyncio.CancelledError:
            # stop() cancels connections. End quietly: the stream callback of some Python
            # versions reports a cancelled connection task as an unhandled error.
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        self._server = None


def _quiet_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """Clients that vanish mid-handshake or mid-write are normal here; report anything else."""
    exc = context.get("exception")
    if isinstance(exc, (ConnectionError, ssl.SSLError, OSError)):
        return
    loop.default_exception_handler(context)

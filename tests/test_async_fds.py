"""AsyncClient keeps a kept-alive connection's socket registered with the loop between sends
(issue 10: add_reader/remove_reader per send cost a system call each), and that must never leave
a stale registration: a connection the server closes while idle is unregistered without spinning,
a socket libcurl closes is unregistered, and a new socket under a reused fd number is watched.
Under the default selector loop and uvloop, against real servers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

import graphsend

SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))
TOKEN = "t" * 40
ANSWER = b"HTTP/1.1 202 Accepted\r\nrequest-id: r\r\nContent-Length: 0\r\n\r\n"


class KeepAliveServer:
    """HTTP/1.1 202s with keep-alive. close_after: None keeps every connection open; a number
    closes a connection that long after its last answer unless another request came (an idle
    timeout, as nginx's keepalive_timeout); 0 closes it right after the answer without saying
    so (no "Connection: close"), so the client finds out only when it looks again; announce:
    every answer says "Connection: close" (libcurl closes the connection when it ends)."""

    def __init__(self, close_after: float | None, announce: bool = False) -> None:
        self.close_after = close_after
        self.answer = ANSWER.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
        if not announce:
            self.answer = ANSWER
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.requests = 0
        self.connections = 0
        self.closed_by_server = 0
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            buf = b""
            while not self.stopped.is_set():
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                _, _, buf = buf.partition(b"\r\n\r\n")
                with self.lock:
                    self.requests += 1
                conn.sendall(self.answer)
                if self.close_after is None:
                    continue
                if self.close_after > 0 and not buf:
                    conn.settimeout(self.close_after)
                    with contextlib.suppress(TimeoutError, socket.timeout):
                        data = conn.recv(65536)
                        if data:
                            buf += data
                            conn.settimeout(None)
                            continue
                with self.lock:
                    self.closed_by_server += 1
                return

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()


@pytest.fixture
def server_factory() -> Iterator[Callable[..., KeepAliveServer]]:
    servers: list[KeepAliveServer] = []

    def make(close_after: float | None, announce: bool = False) -> KeepAliveServer:
        servers.append(KeepAliveServer(close_after, announce))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def _runners() -> list[Any]:
    params = [pytest.param("asyncio", id="selector")]
    params.append(pytest.param("uvloop", id="uvloop"))
    return params


def run(kind: str, coro: Coroutine[Any, Any, Any]) -> Any:
    if kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.run(coro)
    return asyncio.run(coro)


class Probe:
    """Counts what the driver asks of the loop and how often libcurl is driven (no stand-in:
    every call goes through to the real loop and LoopEngine)."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.add_reader = 0
        self.remove_reader = 0
        self.drives = 0
        loop, engine = driver.loop, driver.engine
        probe = self

        class Loop:  # the driver reaches the loop only through these
            def add_reader(self, *args: Any) -> None:
                probe.add_reader += 1
                loop.add_reader(*args)

            def remove_reader(self, fd: int) -> bool:
                probe.remove_reader += 1
                return bool(loop.remove_reader(fd))

            def __getattr__(self, name: str) -> Any:
                return getattr(loop, name)

        class Engine:
            def drive(self, *args: Any) -> Any:
                probe.drives += 1
                return engine.drive(*args)

            def __getattr__(self, name: str) -> Any:
                return getattr(engine, name)

        driver.loop = Loop()
        driver.engine = driver.scheduler.engine = Engine()
        self.restore = lambda: setattr(driver, "loop", loop)  # aclose() looks for the real one


def registered_ok(driver: Any, port: int) -> None:
    """Every fd the driver has registered is an open socket connected to the server: never a
    closed fd, nor an fd number now used by something else. For the selector loop, the
    selector's own map says the same."""
    for fd in driver.fds:
        mode = os.fstat(fd).st_mode  # OSError (EBADF): registered after its close
        assert stat.S_ISSOCK(mode), fd
        sock = socket.socket(fileno=os.dup(fd))
        try:
            assert sock.getpeername()[1] == port, (fd, sock)
        finally:
            sock.close()
    selector = getattr(driver.loop, "_selector", None)
    if selector is not None:
        ours = {fd for fd in selector.get_map() if fd in driver.fds or fd in driver.idle}
        assert ours == set(driver.fds)


async def _driver_of(client: graphsend.AsyncClient) -> Any:
    return client._driver(asyncio.get_running_loop())


@pytest.mark.parametrize("kind", _runners())
def test_i10_a_kept_alive_connection_is_registered_once_for_many_sends(
    kind: str, server_factory: Callable[..., KeepAliveServer]
) -> None:
    server = server_factory(None)

    async def main() -> tuple[Probe, list[graphsend.Receipt]]:
        async with graphsend.AsyncClient(TOKEN, base_url=server.base_url) as client:
            probe = Probe(await _driver_of(client))
            receipts = [await client.send("m=", user="u") for _ in range(200)]
            registered_ok(probe.driver, server.port)
            assert len(probe.driver.fds) == 1
            probe.restore()
            return probe, receipts

    probe, receipts = run(kind, main())
    assert [r.status for r in receipts] == [202] * 200
    assert server.requests == 200 and server.connections == 1
    # Registered for the first send, kept for the other 199 (was: one add and remove each).
    assert probe.add_reader == 1, probe.add_reader
    assert probe.remove_reader <= 1


@pytest.mark.parametrize("kind", _runners())
def test_i10_a_connection_the_server_closes_while_idle_is_let_go_without_spinning(
    kind: str, server_factory: Callable[..., KeepAliveServer]
) -> None:
    server = server_factory(0.05 * SCALE)
    rounds = 5

    async def main() -> tuple[Probe, list[graphsend.Receipt], list[int]]:
        async with graphsend.AsyncClient(TOKEN, base_url=server.base_url) as client:
            probe = Probe(await _driver_of(client))
            receipts = []
            idle_drives = []
            for _ in range(rounds):
                receipts.append(await asyncio.wait_for(client.send("m=", user="u"), 10 * SCALE))
                drives = probe.drives
                await asyncio.sleep(0.3 * SCALE)  # the server closes it meanwhile
                idle_drives.append(probe.drives - drives)
                assert not probe.driver.fds, probe.driver.fds  # readable while idle: let go
                registered_ok(probe.driver, server.port)
            probe.restore()
            return probe, receipts, idle_drives

    probe, receipts, idle_drives = run(kind, main())
    assert [r.status for r in receipts] == [202] * rounds
    assert server.closed_by_server == rounds and server.connections == rounds
    # A readable idle socket that stayed registered would call back on every loop iteration.
    # Its EOF is seen once and unregistered, and libcurl is not even driven for it.
    assert idle_drives == [0] * rounds, idle_drives
    assert probe.remove_reader == rounds


@pytest.mark.parametrize("announce", [False, True], ids=["silent", "connection-close"])
@pytest.mark.parametrize("kind", _runners())
def test_i10_sockets_libcurl_closes_are_unregistered_and_reused_fd_numbers_watched(
    kind: str, announce: bool, server_factory: Callable[..., KeepAliveServer]
) -> None:
    # The server drops every connection right after its answer. Silently: before the next send
    # the client either sleeps in the loop (which sees the EOF of the idle socket) or blocks the
    # loop (libcurl finds the connection dead, closes it and opens a new socket, under the same
    # fd number, while the old one is still registered). Announced: libcurl closes it as the
    # transfer ends. A registration left from an old socket would leave a new one under the
    # same number unwatched: a send that hangs.
    server = server_factory(0, announce)
    sends = 150

    async def main() -> tuple[Probe, list[graphsend.Receipt], set[int]]:
        async with graphsend.AsyncClient(TOKEN, base_url=server.base_url) as client:
            probe = Probe(await _driver_of(client))
            receipts = []
            numbers: set[int] = set()
            for i in range(sends):
                # The FIN must be in before the next request goes out on that connection, or the
                # send fails (may_have_sent, never resent: the resend guard).
                if i % 2:
                    await asyncio.sleep(0.005)
                else:
                    time.sleep(0.005)
                receipts.append(await asyncio.wait_for(client.send("m=", user="u"), 10 * SCALE))
                numbers.update(probe.driver.fds)
                registered_ok(probe.driver, server.port)
            probe.restore()
            return probe, receipts, numbers

    _, receipts, numbers = run(kind, main())
    assert [r.status for r in receipts] == [202] * sends
    assert server.connections == sends
    assert len(numbers) < sends / 2  # fd numbers were reused (the point of this test)


@pytest.mark.parametrize("kind", _runners())
def test_i10_closing_the_client_leaves_nothing_registered(
    kind: str, server_factory: Callable[..., KeepAliveServer]
) -> None:
    server = server_factory(None)

    async def main() -> tuple[set[int], set[int], set[int]]:
        client = graphsend.AsyncClient(TOKEN, base_url=server.base_url)
        driver = await _driver_of(client)
        await asyncio.gather(*(client.send("m=", user=f"u{i}") for i in range(40)))
        kept = set(driver.fds)
        selector = getattr(asyncio.get_running_loop(), "_selector", None)
        await client.aclose()
        left = set(driver.fds) | set(driver.idle)
        in_selector = set() if selector is None else set(selector.get_map()) & kept
        return kept, left, in_selector

    kept, left, in_selector = run(kind, main())
    assert kept  # idle connections were registered
    assert not left and not in_selector
    time.sleep(0.05)


@pytest.mark.parametrize("kind", _runners())
def test_i10_a_close_that_could_not_be_recorded_makes_every_registration_afresh(
    kind: str, server_factory: Callable[..., KeepAliveServer]
) -> None:
    # LoopEngine reports (-1, closed) when it ran out of memory recording a close: any idle
    # registration may then be a closed fd or a reused number. The driver drops every idle one
    # and registers again what libcurl waits on; sends go on.
    server = server_factory(None)

    async def main() -> tuple[int, int, list[graphsend.Receipt]]:
        async with graphsend.AsyncClient(TOKEN, base_url=server.base_url) as client:
            driver = await _driver_of(client)
            receipts = list(
                await asyncio.gather(*(client.send("m=", user=f"u{i}") for i in range(8)))
            )
            idle_before = len(driver.idle)
            driver._watch([(-1, 8)])
            idle_after = len(driver.idle)
            registered_ok(driver, server.port)
            receipts += await asyncio.gather(*(client.send("m=", user=f"u{i}") for i in range(8)))
            registered_ok(driver, server.port)
            return idle_before, idle_after, receipts

    idle_before, idle_after, receipts = run(kind, main())
    assert idle_before > 0 and idle_after == 0
    assert [r.status for r in receipts] == [202] * 16


def test_i10_a_large_gather_starts_in_slices_and_other_tasks_run_between(
    server_factory: Callable[..., KeepAliveServer],
) -> None:
    # Starting a transfer writes its request: a gather of hundreds started in one loop callback
    # holds the loop for tens of milliseconds. It starts 64 at a time instead.
    server = server_factory(None)

    async def main() -> tuple[list[int], list[int], list[graphsend.Receipt]]:
        async with graphsend.AsyncClient(TOKEN, base_url=server.base_url) as client:
            driver = await _driver_of(client)
            engine = driver.engine
            per_drive: list[int] = []
            submitted = [0]
            seen_by_other_task: list[int] = []

            class Engine:
                def submit(self, *args: Any) -> None:
                    submitted[0] += 1
                    engine.submit(*args)

                def drive(self, *args: Any) -> Any:
                    if submitted[0]:
                        per_drive.append(submitted[0])
                        submitted[0] = 0
                    return engine.drive(*args)

                def __getattr__(self, name: str) -> Any:
                    return getattr(engine, name)

            driver.engine = driver.scheduler.engine = Engine()

            async def other() -> None:
                for _ in range(3):
                    seen_by_other_task.append(len(driver.scheduler.in_flight))
                    await asyncio.sleep(0)

            sends = [client.send("m=", user=f"u{i % 50}") for i in range(200)]
            receipts = await asyncio.gather(*sends, other())
            driver.engine = driver.scheduler.engine = engine
            return per_drive, seen_by_other_task, receipts[:-1]

    per_drive, seen, receipts = run("asyncio", main())
    assert [r.status for r in receipts] == [202] * 200
    assert sum(per_drive) == 200 and max(per_drive) <= 64, per_drive
    assert len(per_drive) >= 4
    assert 0 < min(seen) < 200, seen  # the other task ran while the batch was being started

"""What FakeGraph observes: the requests it received, its connections, requests in flight."""

from __future__ import annotations

import threading
import time

from ._records import RecordedRequest


class Traffic:
    """Counts and records shared by the server thread (which updates them) and tests (which
    read them); one lock guards them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._request_arrived = threading.Condition(self._lock)
        self._requests: list[RecordedRequest] = []
        self._connections = 0  # accepted since start or reset_stats
        self._open_connections = 0
        self._connection_serial = 0  # numbers connections for RecordedRequest; never reset
        self._in_flight: dict[str, int] = {}
        self._in_flight_total = 0
        self._peak: dict[str, int] = {}
        self._peak_total = 0
        # Sends holding one of their mailbox's concurrency slots. Only the server thread uses
        # this, so it needs no lock.
        self._admitted: dict[str, int] = {}
        # Per mailbox: when each accepted send arrived (monotonic), and the 429s of the
        # concurrency limit: what "N sends in any window" and "no 429" are checked against.
        self._sent_at: dict[str, list[float]] = {}
        self._throttled: dict[str, int] = {}

    # ---------------------------------------------------------------- requests

    def record(self, record: RecordedRequest) -> None:
        with self._request_arrived:
            self._requests.append(record)
            self._request_arrived.notify_all()

    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def wait_for_requests(self, count: int, timeout: float) -> list[RecordedRequest]:
        deadline = time.monotonic() + timeout
        with self._request_arrived:
            while len(self._requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"FakeGraph received {len(self._requests)} requests, not {count}, "
                        f"within {timeout} s"
                    )
                self._request_arrived.wait(left)
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # ---------------------------------------------------------------- connections

    def connection_opened(self) -> int:
        """Count a new connection; return its number (1 for the first one)."""
        with self._lock:
            self._connections += 1
            self._open_connections += 1
            self._connection_serial += 1
            return self._connection_serial

    def connection_closed(self) -> None:
        with self._lock:
            self._open_connections -= 1

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    @property
    def open_connections(self) -> int:
        with self._lock:
            return self._open_connections

    # ---------------------------------------------------------------- in flight

    def flight(self, user: str | None) -> Flight:
        """Count a request in flight (for ``user``'s mailbox too, if any) until released."""
        return Flight(self, user)

    def in_flight(self, user: str | None) -> int:
        """Requests in flight for ``user``'s mailbox, or for the whole server with None."""
        with self._lock:
            return self._in_flight_total if user is None else self._in_flight.get(user, 0)

    def peak_in_flight(self, user: str | None) -> int:
        with self._lock:
            return self._peak_total if user is None else self._peak.get(user, 0)

    def admitted(self, user: str) -> int:
        """Sends for ``user`` holding a concurrency slot (server thread only)."""
        return self._admitted.get(user, 0)

    def accepted_send(self, user: str, received_at: float) -> None:
        with self._lock:
            self._sent_at.setdefault(user, []).append(received_at)

    def throttled(self, user: str) -> None:
        with self._lock:
            self._throttled[user] = self._throttled.get(user, 0) + 1

    def send_times(self, user: str | None) -> dict[str, list[float]]:
        with self._lock:
            if user is not None:
                return {user: sorted(self._sent_at.get(user, []))}
            return {k: sorted(v) for k, v in self._sent_at.items()}

    def throttle_count(self, user: str | None) -> int:
        with self._lock:
            if user is not None:
                return self._throttled.get(user, 0)
            return sum(self._throttled.values())

    def reset_stats(self) -> None:
        """Zero the connection count; peaks restart from what is in flight now."""
        with self._lock:
            self._sent_at.clear()
            self._throttled.clear()
            self._connections = 0
            self._peak_total = self._in_flight_total
            self._peak = {k: v for k, v in self._in_flight.items() if v}

    def _enter(self, user: str | None) -> None:
        with self._lock:
            self._in_flight_total += 1
            self._peak_total = max(self._peak_total, self._in_flight_total)
            if user is not None:
                n = self._in_flight.get(user, 0) + 1
                self._in_flight[user] = n
                self._peak[user] = max(self._peak.get(user, 0), n)

    def _leave(self, user: str | None) -> None:
        with self._lock:
            self._in_flight_total -= 1
            if user is not None:
                self._in_flight[user] -= 1


class Flight:
    """One request's place in the in-flight counts, released once, when its answer is ready
    (before it is written, so a test that has its response never sees a stale count)."""

    __slots__ = ("_admitted", "_released", "_traffic", "_user")

    def __init__(self, traffic: Traffic, user: str | None) -> None:
        self._traffic, self._user = traffic, user
        self._admitted = self._released = False
        traffic._enter(user)

    def admit(self) -> None:
        """Take one of the mailbox's concurrency slots (server thread only, so no lock)."""
        assert self._user is not None
        admitted = self._traffic._admitted
        admitted[self._user] = admitted.get(self._user, 0) + 1
        self._admitted = True

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._admitted:
            assert self._user is not None
            self._traffic._admitted[self._user] -= 1
        self._traffic._leave(self._user)

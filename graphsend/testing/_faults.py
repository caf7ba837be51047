"""Injected faults: what fail_next, reset_next and stall_next queue, and the answers they give."""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from ._http import Reply
from ._replies import Replies


@dataclass
class Fault:
    kind: Literal["status", "reset", "stall"]
    remaining: int  # requests it still applies to
    user: str | None  # the only mailbox it applies to; None: any
    status: int = 0
    code: str | None = None
    message: str | None = None
    retry_after: str | None = None
    body: bytes | None = None
    headers: tuple[tuple[str, str | None], ...] = ()  # None removes a header
    stream_only: bool = False  # a reset over HTTP/2: RST_STREAM instead of the connection
    deliver: bool = False  # the send goes through first; only its answer is lost


#: The kinds FakeGraph.random_faults draws from: the answer is lost before the send was done
#: (``lost-*``: nothing delivered) or after it (``delivered-*``: the mail went out).
RANDOM_FAULT_KINDS = (
    "lost-reset",
    "lost-stall",
    "lost-503",
    "lost-504",
    "delivered-reset",
    "delivered-stall",
    "delivered-504",
)


def random_fault(kind: str) -> Fault:
    when, _, what = kind.partition("-")
    deliver = when == "delivered"
    if what in ("reset", "stall"):
        return Fault(what, 1, None, deliver=deliver)  # type: ignore[arg-type]
    return Fault("status", 1, None, status=int(what), deliver=deliver)


class FaultQueue:
    """Faults in the order they were added, each used up by ``remaining`` send requests.

    Thread-safe: tests add faults while the server thread takes them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._random: tuple[float, tuple[str, ...], random.Random] | None = None
        self.applied: Counter[str] = Counter()  # random faults applied, by kind

    def set_random(self, rate: float, kinds: tuple[str, ...], seed: int | None) -> None:
        with self._lock:
            self._random = (rate, kinds, random.Random(seed)) if rate > 0 else None

    def add(self, fault: Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._faults.append(fault)

    def take(self, user: str) -> Fault | None:
        """The first fault that applies to a send for ``user``, counted as used once."""
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.user is None or fault.user == user:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        del self._faults[i]
                    return fault
            if self._random is not None:
                rate, kinds, rng = self._random
                if rng.random() < rate:
                    kind = rng.choice(kinds)
                    self.applied[kind] += 1
                    return random_fault(kind)
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> int:
        with self._lock:
            return sum(f.remaining for f in self._faults)


def fault_reply(fault: Fault, replies: Replies, success: Reply | None = None) -> Reply:
    """The answer for a ``fail_next`` fault. ``success`` is the normal 2xx answer when the
    fault has a 2xx status and the send went through: its empty body is kept unless the
    fault names a code, a message or a body."""
    if success is not None and fault.code is None and fault.message is None:
        return _apply(fault, success)
    return _apply(fault, replies.error(fault.status, fault.code, fault.message))


def _apply(fault: Fault, reply: Reply) -> Reply:
    """Give ``reply`` the fault's status, Retry-After, body and headers."""
    headers = list(reply.headers)
    body = reply.body
    if fault.body is not None:
        body = fault.body
        headers = [(n, v) for n, v in headers if n.lower() != "content-type"]
        content_type = _guess_content_type(body)
        if content_type is not None:
            headers.append(("Content-Type", content_type))
    if fault.retry_after is not None:
        headers.append(("Retry-After", fault.retry_after))
    raw_framing = False
    for name, value in fault.headers:
        headers = [(n, v) for n, v in headers if n.lower() != name.lower()]
        if value is not None:
            headers.append((name, value))
            # A test that sets its own framing wants it sent as is (a truncated body, say).
            raw_framing |= name.lower() in ("content-length", "transfer-encoding")
    return Reply(fault.status, headers, body, raw_framing)


def _guess_content_type(body: bytes) -> str | None:
    start = body.lstrip()[:1]
    if not start:
        return None
    if start == b"<":
        return "text/html; charset=utf-8"
    if start in (b"{", b"["):
        return "application/json"
    return "text/plain; charset=utf-8"

"""Mailbox limiters: what a Client consults before each request to a mailbox.

Graph counts its limits per app and mailbox across every process the app runs (4 concurrent
requests; Exchange Online adds 30 messages a minute). A limiter hands out *slots*: one per request
in flight to a mailbox, taken before the request is written and given back when its answer is in.
``LocalLimiter`` holds them in this process; ``graphsend.RedisLimiter`` holds them in Redis, for
many processes and machines.

A limiter never waits: ``acquire`` grants what it can now and says how long to wait before asking
again, so the bulk Scheduler and the AsyncClient's loop pause only that mailbox while the others
go on; the synchronous ``Client.send`` sleeps in its own thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque

from graphsend._rules.errors import LimiterError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Protocol

    class Limiter(Protocol):
        """What ``Client(limiter=...)`` accepts."""

        def acquire(
            self, mailbox: str, count: int = 1, *, sends: bool = True
        ) -> tuple[list[object], float]:
            """Up to ``count`` slots for requests to ``mailbox`` (lower-case), without waiting:
            (the slots granted, seconds to wait before asking again when fewer were granted).
            ``sends``: the requests send mail (they count against messages_per_minute).
            Raises LimiterError when it cannot tell (its store is unreachable)."""
            ...

        def release(self, slots: Sequence[object], *, used: bool = True) -> None:
            """Give slots back once their answers are in. ``used=False``: no request went out
            (its messages_per_minute use is refunded). Never raises."""
            ...

else:
    Limiter = object


def check_limits(per_mailbox: object, messages_per_minute: object, window: object) -> float:
    """Validate the shared settings; return the window in seconds."""
    if isinstance(per_mailbox, bool) or not isinstance(per_mailbox, int):
        raise TypeError("per_mailbox must be an int")
    if per_mailbox < 1:
        raise ValueError("per_mailbox must be at least 1")
    if messages_per_minute is not None:
        if isinstance(messages_per_minute, bool) or not isinstance(messages_per_minute, int):
            raise TypeError("messages_per_minute must be an int or None")
        if messages_per_minute < 1:
            raise ValueError("messages_per_minute must be at least 1")
    if isinstance(window, bool) or not isinstance(window, (int, float)):
        raise TypeError("window must be a number of seconds")
    if not 0 < window < 86400:
        raise ValueError("window must be between 0 and 86400 seconds")
    return float(window)


class _Box:
    __slots__ = ("in_flight", "recent", "sending")

    def __init__(self) -> None:
        self.in_flight = 0
        self.sending = 0  # counted sends in flight
        # messages_per_minute: when each counted send ended, oldest first; a send counts while
        # in flight and until ``window`` after its answer came back (it reached Graph at some
        # moment in between), so no window of Graph's can see more than the cap.
        self.recent: deque[float] = deque()


class _Slot:
    __slots__ = ("box", "mailbox", "sends")

    def __init__(self, mailbox: str, box: _Box, sends: bool) -> None:
        self.mailbox, self.box, self.sends = mailbox, box, sends


class LocalLimiter:
    """Per-mailbox caps held in this process, shared by every Client, thread and event loop
    given the same instance (without a limiter, a Client caps each ``send_many`` call on its
    own).

    Use one form per mailbox: caps are kept per mailbox *as written* (lower-cased), so
    ``user=None`` (``/me``, the key ``"me"``), the address and the object id of one mailbox
    are three separate caps, and sending to it in two forms lets up to twice Graph's limit
    through. graphsend cannot tell whom ``/me`` stands for without asking Graph (``GET /me``),
    which it does not do. With a delegated token, pass either always ``user=None`` or always
    the address; Clients of several signed-in users sharing a limiter should pass addresses
    (their ``/me`` are different mailboxes but one key).

    Example:
        ::

            limiter = graphsend.LocalLimiter(messages_per_minute=30)
            client = graphsend.Client(credential, limiter=limiter)

    Attributes:
        per_mailbox: Requests in flight per mailbox.
        messages_per_minute: Sends per mailbox in any ``window`` seconds (None: not counted).
        window: The seconds ``messages_per_minute`` counts over.
    """

    def __init__(
        self,
        *,
        per_mailbox: int = 4,
        messages_per_minute: int | None = None,
        window: float = 60.0,
    ) -> None:
        """Check the caps; nothing is held until the first request.

        Args:
            per_mailbox: Requests in flight per mailbox (Graph's MailboxConcurrency is 4 per
                app and mailbox).
            messages_per_minute: Sends per mailbox in any ``window`` seconds (Exchange
                Online's 30 a minute), counted from request to answer plus the window, so it
                is never exceeded; None: not counted.
            window: The seconds ``messages_per_minute`` counts over (below 86,400).

        Raises:
            TypeError: ``per_mailbox`` or ``messages_per_minute`` not an int (a bool is
                not one), ``window`` not a number.
            ValueError: ``per_mailbox`` or ``messages_per_minute`` below 1, ``window`` not
                between 0 and 86,400 seconds.
        """
        self.window: float = check_limits(per_mailbox, messages_per_minute, window)
        self.per_mailbox: int = per_mailbox
        self.messages_per_minute: int | None = messages_per_minute
        self._boxes: dict[str, _Box] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return (
            f"LocalLimiter(per_mailbox={self.per_mailbox}, "
            f"messages_per_minute={self.messages_per_minute}, window={self.window})"
        )

    def acquire(
        self, mailbox: str, count: int = 1, *, sends: bool = True
    ) -> tuple[list[object], float]:
        """Take up to ``count`` slots for requests to ``mailbox``, without waiting.

        Args:
            mailbox: The mailbox, lower-case (``"me"`` for ``/me``).
            count: How many slots are wanted.
            sends: The requests send mail (they count against ``messages_per_minute``).

        Returns:
            The slots granted, and the seconds to wait before asking again when fewer than
            ``count`` were granted.

        Raises:
            LimiterError: The limiter cannot tell (its store is unreachable, no fallback).
        """
        now = time.monotonic()
        if self._pid != os.getpid():
            # A forked child: the parent's slots and lock state are not this process's.
            self._boxes, self._lock, self._pid = {}, threading.Lock(), os.getpid()
        with self._lock:
            box = self._boxes.get(mailbox)
            if box is None:
                box = self._boxes[mailbox] = _Box()
            room = self.per_mailbox - box.in_flight
            wait = 0.0
            if room < count:
                wait = _POLL
            cap = self.messages_per_minute
            if sends and cap is not None:
                recent = box.recent
                cutoff = now - self.window
                while recent and recent[0] <= cutoff:
                    recent.popleft()
                budget = cap - len(recent) - box.sending
                if budget < min(room, count):
                    room = max(budget, 0)
                    # the oldest ended send leaves the window then; else one in flight must end
                    wait = recent[0] - cutoff if recent else _POLL
            granted = max(0, min(room, count))
            box.in_flight += granted
            slots: list[object] = [_Slot(mailbox, box, sends) for _ in range(granted)]
            if sends and cap is not None:
                box.sending += granted
            return slots, (wait if granted < count else 0.0)

    def release(self, slots: Sequence[object], *, used: bool = True) -> None:
        """Give slots back once their answers are in. Never raises.

        Args:
            slots: Slots from :meth:`acquire`.
            used: False when no request went out (its ``messages_per_minute`` use is
                refunded).
        """
        now = time.monotonic()
        with self._lock:
            for slot in slots:
                if not isinstance(slot, _Slot) or self._boxes.get(slot.mailbox) is not slot.box:
                    continue  # not ours, or made before a fork
                box = slot.box
                box.in_flight -= 1
                if slot.sends and self.messages_per_minute is not None:
                    box.sending -= 1
                    if used:
                        box.recent.append(now)
                if box.in_flight == 0 and not box.recent and self._boxes.get(slot.mailbox) is box:
                    del self._boxes[slot.mailbox]  # idle: keep no state per mailbox


#: how soon to ask again when a mailbox's slots are all taken (by this or another process)
_POLL = 0.005


def acquire_blocking(limiter: Limiter, mailbox: str, sends: bool, timeout: float) -> list[object]:
    """One slot for the synchronous Client: sleep in this thread until it is granted, at most
    ``timeout`` seconds (then LimiterError: nothing was sent)."""
    deadline = None
    while True:
        slots, wait = limiter.acquire(mailbox, 1, sends=sends)
        if slots:
            return slots
        now = time.monotonic()
        if deadline is None:
            deadline = now + timeout
        if now + wait > deadline:
            raise LimiterError(
                f"no slot for mailbox {mailbox} within {timeout:g} s (its limits are in use); "
                "nothing was sent"
            )
        time.sleep(wait)


def mailbox_of(user: str | None) -> str:
    return "me" if user is None else user.lower()

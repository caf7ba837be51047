"""RedisLimiter: Graph's per-mailbox limits held across processes and machines, in Redis.

Needs redis-py (``pip install graphsend[redis]``), imported when a RedisLimiter is made.

Per mailbox two sorted sets, changed only by Lua scripts (atomic, one round trip each):

* ``<prefix>:{<mailbox>}:slots``: one member per request in flight, scored by its lease's expiry
  (Redis server time, ms). Expired members are dropped before counting, so a process that died
  holding slots frees them after ``lease`` seconds. While a process lives, a keeper thread
  renews the leases it holds every ``lease / 3`` seconds, so a long request or a Retry-After
  sleep never outlives its lease.
* ``<prefix>:{<mailbox>}:sent`` (with ``messages_per_minute``): one member per send, scored by
  the moment until which it counts: its lease's expiry plus the window while in flight, the
  moment its answer came back plus the window once released. A send reaches Graph somewhere
  between the two, so no window of Graph's sees more than the cap (a sliding log rather than
  a token bucket: a bucket that starts full lets up to twice the cap through in one window).

Granting never waits: the script answers how many slots it granted and, when fewer than asked,
how long until asking again makes sense (the oldest send leaving the window, or a short poll when
slots are only busy). The Scheduler pauses just that mailbox meanwhile.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import uuid
import weakref

from graphsend._drivers.limiter import LocalLimiter, check_limits
from graphsend._rules import log as _log
from graphsend._rules.errors import LimiterError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

# KEYS: slots, sent. ARGV: count, per_mailbox, lease_ms, cap (0: none), window_ms, sends (0/1),
# id prefix, first id number, poll_ms. Returns {granted, wait_ms}; members are prefix..n.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local count, per, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cap, window, sends = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6] == '1'
local poll = tonumber(ARGV[9])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local room = per - redis.call('ZCARD', KEYS[1])
local wait = 0
if room < count then wait = poll end
local counted = sends and cap > 0
if counted then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local budget = cap - redis.call('ZCARD', KEYS[2])
  if budget < math.min(room, count) then
    room = budget
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    local leaves = tonumber(first[2]) - now
    if leaves <= window then wait = math.max(leaves, 1) else wait = poll end
  end
end
local n = math.min(room, count)
if n < 0 then n = 0 end
local first_id = tonumber(ARGV[8])
for i = 0, n - 1 do
  local id = ARGV[7] .. (first_id + i)
  redis.call('ZADD', KEYS[1], now + lease, id)
  if counted then redis.call('ZADD', KEYS[2], now + lease + window, id) end
end
if n > 0 then
  redis.call('PEXPIRE', KEYS[1], lease + 1000)
  if counted then redis.call('PEXPIRE', KEYS[2], lease + window + 1000) end
end
if n >= count then wait = 0 end
return {n, wait}
"""

# KEYS: slots1, sent1, slots2, sent2, ... ARGV: window_ms, then id, used (0/1) per key pair.
_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
for i = 1, #KEYS / 2 do
  local id, used = ARGV[2 * i], ARGV[2 * i + 1] == '1'
  redis.call('ZREM', KEYS[2 * i - 1], id)
  if used then
    if redis.call('ZADD', KEYS[2 * i], 'XX', 'CH', now + window, id) == 1 then
      -- it counts until now + window: the key must live that long (never shortened)
      local ttl = redis.call('PTTL', KEYS[2 * i])
      if ttl >= 0 and ttl < window + 1000 then
        redis.call('PEXPIRE', KEYS[2 * i], window + 1000)
      end
    end
  else
    redis.call('ZREM', KEYS[2 * i], id)
  end
end
return #KEYS / 2
"""

# KEYS: slots1, sent1, ... ARGV: lease_ms, window_ms, then one id per key pair. Returns how many
# leases were no longer there (expired before they could be renewed).
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local lost = 0
for i = 1, #KEYS / 2 do
  local id = ARGV[i + 2]
  if redis.call('ZADD', KEYS[2 * i - 1], 'XX', 'CH', now + lease, id) == 0 then
    lost = lost + 1
  end
  redis.call('ZADD', KEYS[2 * i], 'XX', now + lease + window, id)
  redis.call('PEXPIRE', KEYS[2 * i - 1], lease + 1000)
  -- (the window's key too: the TTL set at acquire would drop it under a long-held send)
  if redis.call('EXISTS', KEYS[2 * i]) == 1 then
    redis.call('PEXPIRE', KEYS[2 * i], lease + window + 1000)
  end
end
return lost
"""


class _Lease:
    __slots__ = ("counted", "id", "mailbox", "since")

    def __init__(self, mailbox: str, lease_id: str, counted: bool, since: float) -> None:
        self.mailbox, self.id, self.counted, self.since = mailbox, lease_id, counted, since


class RedisLimiter:
    """Per-mailbox limits shared by every process that uses the same Redis and ``prefix``.

    Needs redis-py (``pip install 'graphsend[redis]'``). Each slot is a lease in Redis that
    this process renews while it holds it, so a process that dies holding slots frees them
    after ``lease`` seconds. :meth:`close` stops the renewing and closes the connections.

    Use one form per mailbox: keys are per mailbox *as written* (lower-cased), so
    ``user=None`` (``/me``, the key ``"me"``), the address and the object id of one mailbox
    are three separate caps, and sending to it in two forms lets up to twice Graph's limit
    through. graphsend cannot tell whom ``/me`` stands for without asking Graph (``GET /me``),
    which it does not do. With a delegated token, pass either always ``user=None`` or always
    the address, in every process; workers of several signed-in users sharing one Redis
    should pass addresses (their ``/me`` are different mailboxes but one key).

    Example:
        ::

            limiter = graphsend.RedisLimiter("redis://localhost:6379/2", messages_per_minute=30)
            client = graphsend.Client(credential, limiter=limiter)

    Attributes:
        per_mailbox: Requests in flight per mailbox, across all processes.
        messages_per_minute: Sends per mailbox in any ``window`` seconds (None: not counted).
        window: The seconds ``messages_per_minute`` counts over.
        lease: Seconds a slot outlives a process that died holding it.
        prefix: The start of every key this limiter uses.
        fallback: The LocalLimiter used while Redis is unreachable, if any.
        retry_interval: Seconds after a failed Redis call before Redis is tried again.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        per_mailbox: int = 4,
        messages_per_minute: int | None = None,
        lease: float = 30.0,
        window: float = 60.0,
        prefix: str = "graphsend",
        fallback: LocalLimiter | None = None,
        socket_timeout: float = 2.0,
        retry_interval: float = 1.0,
        poll: float = 0.005,
        client: Any = None,
    ) -> None:
        """Check the settings and connect lazily: no Redis call is made until the first
        request.

        Args:
            url: A ``redis://`` (or ``rediss://``, ``unix://``) URL; or pass ``client``
                instead. It never appears in messages or the repr (it may hold a password).
            per_mailbox: Requests in flight per mailbox across all processes (Graph's
                MailboxConcurrency is 4 per app and mailbox).
            messages_per_minute: Sends per mailbox in any ``window`` seconds (Exchange
                Online: 30 a minute); None: not counted.
            lease: Seconds a slot outlives a process that died holding it (a live one renews
                its slots every ``lease / 3`` seconds); at least 0.1.
            window: The seconds ``messages_per_minute`` counts over.
            prefix: Keys are ``<prefix>:{<mailbox>}:...``; use one prefix per Entra app
                (Graph counts per app).
            fallback: When Redis cannot be reached, a :class:`LocalLimiter` to use instead
                (with caps you chose for one process, e.g. ``per_mailbox=1`` for 4 workers),
                with a WARNING. Without one, such requests fail with a
                :class:`LimiterError` and nothing is sent.
            socket_timeout: Seconds for one Redis call (and for connecting) before Redis
                counts as unreachable (used with ``url``).
            retry_interval: Seconds after a failed Redis call during which Redis is not
                asked again (requests fail, or use the fallback, at once).
            poll: Seconds before asking again when a mailbox's slots are all busy; doubled
                per miss, up to about how long this process holds a slot.
            client: A ``redis.Redis`` to use instead of ``url``.

        Raises:
            TypeError: A setting of the wrong type, ``fallback`` not a
                :class:`LocalLimiter`, or neither or both of ``url`` and ``client``.
            ValueError: A limit below 1, a number of seconds not between 0 and 86,400, or
                ``lease`` below 0.1.
            ImportError: redis-py is not installed.
        """
        self.window: float = check_limits(per_mailbox, messages_per_minute, window)
        for name, value in (
            ("lease", lease),
            ("socket_timeout", socket_timeout),
            ("retry_interval", retry_interval),
            ("poll", poll),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number of seconds")
            if not 0 < value < 86400:
                raise ValueError(f"{name} must be between 0 and 86400 seconds")
        if lease < 0.1:
            raise ValueError("lease must be at least 0.1 s (the keeper renews it every lease/3)")
        if not isinstance(prefix, str) or not prefix:
            raise TypeError("prefix must be a non-empty str")
        if fallback is not None and not isinstance(fallback, LocalLimiter):
            raise TypeError("fallback must be a graphsend.LocalLimiter or None")
        if (url is None) == (client is None):
            raise TypeError("pass either url or client=")
        try:
            import redis
        except ImportError:
            raise ImportError(
                "RedisLimiter needs redis-py: pip install 'graphsend[redis]'"
            ) from None
        self.per_mailbox: int = per_mailbox
        self.messages_per_minute: int | None = messages_per_minute
        self.lease: float = float(lease)
        self.prefix: str = prefix
        self.fallback: LocalLimiter | None = fallback
        self.retry_interval: float = float(retry_interval)
        self._poll_ms = max(1, round(poll * 1000))
        self._lease_ms = max(1, round(self.lease * 1000))
        self._window_ms = max(1, round(self.window * 1000))
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        if client is None:
            if not isinstance(url, str):
                raise TypeError("url must be a str")
            client = redis.Redis.from_url(
                url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
            )
        self._redis = client
        kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
        # Where, for messages: never the URL itself (it may hold a password).
        self._where = (
            kwargs.get("path")
            or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
        )
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)
        self._reset()

    def _reset(self) -> None:
        """At construction and in a forked child: the parent's slots are not this process's."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._token = uuid.uuid4().hex[:16] + ":"
        self._held: dict[str, _Lease] = {}
        self._down_until = 0.0  # Redis failed: fail (or fall back) at once until then
        self._warned = False
        # Waiting for a busy mailbox: ask again after poll, doubling per miss up to about how
        # long this process's slots are held (so many processes do not hammer Redis).
        self._misses: dict[str, int] = {}
        self._hold = 0.0  # moving average of a slot's hold time here (s)
        self._keeper: threading.Thread | None = None
        self._stop = threading.Event()

    def __repr__(self) -> str:
        return (
            f"RedisLimiter({self._where!r}, per_mailbox={self.per_mailbox}, "
            f"messages_per_minute={self.messages_per_minute}, lease={self.lease}, "
            f"window={self.window}, prefix={self.prefix!r})"
        )

    def _keys(self, mailbox: str) -> tuple[str, str]:
        base = f"{self.prefix}:{{{mailbox}}}:"
        return base + "slots", base + "sent"

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
        if self._pid != os.getpid():
            self._reset()
        now = time.monotonic()
        if now < self._down_until:
            return self._unreachable(mailbox, count, sends, None)
        counted = sends and self.messages_per_minute is not None
        with self._lock:
            first = next(self._ids)
            for _ in range(count - 1):
                next(self._ids)
        try:
            granted, wait_ms = self._acquire(
                keys=self._keys(mailbox),
                args=(
                    count,
                    self.per_mailbox,
                    self._lease_ms,
                    self.messages_per_minute or 0,
                    self._window_ms,
                    1 if sends else 0,
                    self._token,
                    first,
                    self._poll_ms,
                ),
            )
        except self._errors as exc:
            self._down_until = time.monotonic() + self.retry_interval
            return self._unreachable(mailbox, count, sends, exc)
        if self._warned:
            self._warned = False
            _warn(f"the mailbox limiter's Redis at {self._where} is reachable again")
        slots: list[object] = [
            _Lease(mailbox, f"{self._token}{first + i}", counted, now) for i in range(int(granted))
        ]
        if slots:
            with self._lock:
                for slot in slots:
                    self._held[slot.id] = slot  # type: ignore[attr-defined]
            if self._keeper is None:
                self._start_keeper()
        if len(slots) == count:
            self._misses.pop(mailbox, None)
            return slots, 0.0
        wait = int(wait_ms) / 1000.0
        if wait <= self._poll_ms / 1000.0:  # busy slots, not the per-window budget: back off
            misses = self._misses.get(mailbox, 0)
            self._misses[mailbox] = misses + 1
            wait = min(wait * (1 << min(misses, 6)), max(wait, self._hold))
        return slots, wait

    def _unreachable(
        self, mailbox: str, count: int, sends: bool, exc: BaseException | None
    ) -> tuple[list[object], float]:
        reason = f": {exc}" if exc is not None else " (a recent call failed)"
        if self.fallback is not None:
            if not self._warned:
                self._warned = True
                _warn(
                    f"the mailbox limiter's Redis at {self._where} is unreachable{reason}; "
                    f"falling back to this process's limits ({self.fallback!r})"
                )
            return self.fallback.acquire(mailbox, count, sends=sends)
        raise LimiterError(
            f"the mailbox limiter's Redis at {self._where} is unreachable{reason}; nothing was sent"
        ) from exc

    def release(self, slots: Sequence[object], *, used: bool = True) -> None:
        """Give slots back once their answers are in. Never raises.

        Args:
            slots: Slots from :meth:`acquire`.
            used: False when no request went out (its ``messages_per_minute`` use is
                refunded).
        """
        local = [s for s in slots if not isinstance(s, _Lease)]
        if local and self.fallback is not None:
            self.fallback.release(local, used=used)
        leases = [s for s in slots if isinstance(s, _Lease)]
        if not leases:
            return
        now = time.monotonic()
        with self._lock:
            for lease in leases:
                self._held.pop(lease.id, None)
                self._hold += (now - lease.since - self._hold) * 0.05
        if self._pid != os.getpid():
            return  # the parent's slots: the parent gives them back
        keys: list[str] = []
        args: list[object] = [self._window_ms]
        for lease in leases:
            keys.extend(self._keys(lease.mailbox))
            args.extend((lease.id, 1 if used and lease.counted else 0))
        try:
            self._release(keys=keys, args=args)
        except self._errors as exc:
            # The answers are in: their outcome stands. The leases expire by themselves.
            self._down_until = time.monotonic() + self.retry_interval
            _warn(
                f"could not give {len(leases)} slot(s) back to the mailbox limiter's Redis at "
                f"{self._where} ({exc}); they expire within {self.lease:g} s"
            )

    def close(self) -> None:
        """Stop renewing (slots still held expire after ``lease``) and close the connections."""
        self._stop.set()
        try:
            self._redis.close()
        except Exception:
            pass

    # ---- the keeper: renews this process's leases while it lives

    def _start_keeper(self) -> None:
        with self._lock:
            if self._keeper is not None:
                return
            self._keeper = threading.Thread(
                target=_keep, args=(weakref.ref(self), self._stop), daemon=True
            )
            self._keeper.name = "graphsend-redis-limiter"
            self._keeper.start()

    def _renew_held(self) -> None:
        with self._lock:
            held = list(self._held.values())
        if not held:
            return
        keys: list[str] = []
        args: list[object] = [self._lease_ms, self._window_ms]
        for lease in held:
            keys.extend(self._keys(lease.mailbox))
            args.append(lease.id)
        try:
            lost = self._renew(keys=keys, args=args)
        except self._errors:
            return  # unreachable: acquire() reports it; try again next round
        if lost:
            _warn(
                f"{lost} slot lease(s) expired before they could be renewed (was this process "
                "stalled, or Redis unreachable, longer than the lease?)"
            )


def _keep(ref: weakref.ref[RedisLimiter], stop: threading.Event) -> None:
    while True:
        limiter = ref()
        if limiter is None or limiter._pid != os.getpid():
            return
        interval = limiter.lease / 3
        del limiter
        if stop.wait(interval):
            return
        limiter = ref()
        if limiter is None:
            return
        limiter._renew_held()
        del limiter


def _warn(text: str) -> None:
    log = _log.get(create=True)
    assert log is not None
    log.warning("%s", text)

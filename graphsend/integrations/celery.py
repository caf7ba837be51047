"""Celery integration: a send task for your app, safe against Celery's redelivery.

::

    from celery import Celery
    import graphsend
    from graphsend.integrations.celery import send_task

    app = Celery("mail", broker="redis://localhost:6379/0", backend="redis://localhost:6379/1")

    def make_client() -> graphsend.Client:       # called once per worker process, after fork
        return graphsend.Client(
            credential,
            limiter=graphsend.RedisLimiter("redis://localhost:6379/2", messages_per_minute=30),
        )

    send = send_task(app, make_client)            # registers "graphsend.send"

    send.delay("AAMkAD...", user="adele@contoso.com").get()    # -> graphsend.Receipt
    send.delay(items=[["adele@contoso.com", "AAMkAD..."], ...]).get()  # -> list, input order

What the task does with each outcome:

* a Receipt is the task's result (it comes back a ``graphsend.Receipt`` through the JSON
  serializer: importing this module registers the type with kombu);
* a failure that proves nothing was sent and may pass (429, 503, a connection refused, a
  LimiterError) is retried by Celery with a countdown (Retry-After when Graph gave one);
* a failure that may have sent the mail is never resent blindly: the mailbox is asked
  (``Client.reconcile``); "sent" is a success, "not_sent" is sent again, "unknown" is the
  original error;
* anything else fails the task with graphsend's own exception, every field kept
  (``except graphsend.NotFoundError`` works on the caller's side);
* a redelivered task (``acks_late``, a worker that died, the visibility timeout) reconciles
  what its earlier run may have sent instead of resending, and waits while that run is still
  alive: each run holds a lease in Redis (``state_url``, default the broker's URL) renewed while
  it works.

The task is registered with ``acks_late=True`` and ``reject_on_worker_lost=True``, so a worker
killed mid-task gets its task redelivered rather than lost; never add ``autoretry_for`` to it.
"""

from __future__ import annotations

import json
import os
import random
import threading
import uuid

import graphsend
from graphsend._drivers import bulk as _bulk  # noqa: F401  (imported once, before the fork)
from graphsend._rules import log as _log
from graphsend._rules.errors import (
    LimiterError,
    SendError,
    ServiceUnavailableError,
    ThrottledError,
    TransportError,
)
from graphsend._rules.receipt import Receipt

redis: Any = None  # redis-py, imported by the first send_task()

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from graphsend._drivers.client import Client

RECEIPT_TYPE = "graphsend.Receipt"
ERROR_TYPE = "graphsend.SendError"


# ------------------------------------------------------------------ values through JSON


def encode(value: object) -> object:
    """A task result as kombu's JSON carries typed values: Receipts and graphsend errors
    (in a batch's list) become ``{"__type__": ..., "__value__": ...}``."""
    if isinstance(value, Receipt):
        return {"__type__": RECEIPT_TYPE, "__value__": list(value)}
    if isinstance(value, SendError):
        return {"__type__": ERROR_TYPE, "__value__": [type(value).__name__, *value.args]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    return value


def decode(value: object) -> object:
    """The inverse of encode, for values read without kombu's decoder."""
    if isinstance(value, dict) and value.keys() == {"__type__", "__value__"}:
        if value["__type__"] == RECEIPT_TYPE:
            return _receipt(value["__value__"])
        if value["__type__"] == ERROR_TYPE:
            return _error(value["__value__"])
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def _receipt(fields: list[Any]) -> Receipt:
    return Receipt(*fields)


def _error(value: list[Any]) -> SendError:
    name, *args = value
    cls = getattr(graphsend, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, SendError)):
        cls = SendError
    return cls(*args)


def _register_kombu_types() -> None:
    try:
        from kombu.utils.json import register_type
    except ImportError:  # kombu < 5.3: results stay plain JSON; decode() reads them
        return
    # Receipt is a tuple, which json encodes natively, so encode() tags it on the way out;
    # these decoders turn the tags back into objects on the way in.
    register_type(_Tagged, RECEIPT_TYPE, lambda r: r, _receipt)
    register_type(_TaggedError, ERROR_TYPE, lambda e: e, _error)


class _Tagged:  # placeholders: register_type wants a type to encode (never instantiated)
    pass


class _TaggedError:
    pass


_register_kombu_types()


# ------------------------------------------------------------------ the task


def send_task(
    app: Any,
    client: Callable[[], Client],
    *,
    name: str = "graphsend.send",
    state_url: str | None = None,
    lease: float = 30.0,
    reconcile_wait: float = 60.0,
    max_retries: int = 8,
    retry_backoff_max: float = 300.0,
    **options: Any,
) -> Any:
    """Register graphsend's send task on ``app`` and return it.

    Call it as ``send.delay(message_id, user=...)``, ``send.delay(message={...Message
    keyword arguments...}, user=...)`` or ``send.delay(items=[[user, message_id], ...])``.
    The task is registered with ``acks_late=True`` and ``reject_on_worker_lost=True`` unless
    ``options`` say otherwise.

    Args:
        app: The ``celery.Celery`` application.
        client: Makes the task's :class:`graphsend.Client`, once per worker process (after
            the fork).
        name: The task's name.
        state_url: The Redis (``redis://``, ``rediss://`` or ``unix://``) holding each run's
            lease and outcome (default: the broker's URL).
        lease: Seconds a dead run keeps a redelivery waiting (a live run renews its lease).
        reconcile_wait: The ``wait`` passed to :meth:`graphsend.Client.reconcile` (one
            message) or :meth:`graphsend.Client.reconcile_many` (a redelivered batch).
        max_retries: How many times Celery retries a send that proved nothing was sent and
            may pass later (429, 503, a refused connection, a LimiterError).
        retry_backoff_max: The most seconds between such retries when Graph gave no
            Retry-After.
        **options: Other ``app.task`` options.

    Returns:
        The registered task.

    Raises:
        ValueError: ``options`` ask for ``autoretry_for`` (a blind retry can send twice), or
            ``state_url`` (or the broker's URL) is not a Redis URL.
        ImportError: redis-py is not installed.
    """
    state = _State(state_url or str(app.conf.broker_url), lease)
    clients = _PerProcess(client)
    try:
        from celery.signals import worker_process_init
    except ImportError:
        pass
    else:
        # Each pool process makes its Client (and limiter connections) as it starts, not
        # during its first task. (A failure there is reported by the first task instead.)
        def warm(**_: object) -> None:
            try:
                clients.get()
                state.conn()
            except Exception:
                pass

        worker_process_init.connect(warm, weak=False)
    options.setdefault("acks_late", True)
    options.setdefault("reject_on_worker_lost", True)
    if options.get("autoretry_for"):
        raise ValueError("graphsend's task must not autoretry: a blind retry can send twice")

    @app.task(name=name, bind=True, max_retries=max_retries, **options)  # type: ignore[untyped-decorator]
    def send(
        self: Any,
        message_id: str | None = None,
        *,
        user: str | None = None,
        message: dict[str, Any] | None = None,
        items: list[Any] | None = None,
    ) -> Any:
        if sum(x is not None for x in (message_id, message, items)) != 1:
            raise ValueError("pass exactly one of message_id, message= or items=")
        run = state.begin(self.request.id)
        if run.done is not None:
            return run.done  # an earlier run finished: its result, not a second send
        if run.busy:
            # Another run of this task is alive (redelivered while it works): let it finish.
            raise self.retry(countdown=lease, max_retries=None)
        try:
            c = clients.get()
            if items is not None:
                got: Any = _batch(
                    c, [tuple(i) if isinstance(i, list) else i for i in items], run, reconcile_wait
                )
            else:
                got = _one(
                    self, c, message_id, message, user, run, reconcile_wait, retry_backoff_max
                )
        except BaseException:
            run.stop()
            raise
        value = encode(got)
        run.finish(value)
        return value

    return send


def _one(
    task: Any,
    client: Client,
    message_id: str | None,
    message: dict[str, Any] | None,
    user: str | None,
    run: _Run,
    reconcile_wait: float,
    backoff_max: float,
) -> Receipt:
    if message_id is None:
        assert message is not None
        # A Message becomes a draft first (once: a redelivery finds its id), so that a send
        # whose answer was lost can be reconciled by id.
        message_id = run.get("draft")
        if message_id is None:
            message_id = client.create_draft(graphsend.Message(**message), user=user)
            run.put("draft", message_id)
    if run.resumed or run.get("ambiguous"):
        verdict = client.reconcile(message_id, user=user, wait=reconcile_wait)
        if verdict == "sent":
            return _reconciled(run.get("crid"), message_id, user)
        if verdict == "unknown":
            raise SendError(
                "an earlier run of this task may have sent the message and the mailbox "
                "cannot tell (no read permission, or the draft is gone); not sent again",
                may_have_sent=True,
                client_request_id=run.get("crid"),
            )
    crid = run.get("crid") or str(uuid.uuid4())
    run.put("crid", crid)
    try:
        return client.send(message_id, user=user, client_request_id=crid)
    except SendError as exc:
        if exc.may_have_sent:
            if client.retry.reconcile_ambiguous:
                raise  # the Client has asked the mailbox already: "unknown"
            try:
                run.put("ambiguous", "1")
            except Exception:
                pass  # (best effort: the state's "started" makes any later run reconcile too)
            verdict = client.reconcile(message_id, user=user, wait=reconcile_wait)
            if verdict == "sent":
                return _reconciled(crid, message_id, user)
            if verdict == "not_sent":
                run.fresh()  # proven not sent: the next run sends, without reconciling
                raise task.retry(exc=exc, countdown=0) from None
            raise
        if _passes(exc):
            run.fresh()
            wait = getattr(exc, "retry_after", None)
            if wait is None:
                wait = min(backoff_max, 2.0**task.request.retries) * random.uniform(0.5, 1.0)
            raise task.retry(exc=exc, countdown=wait) from None
        raise


def _batch(client: Client, items: list[Any], run: _Run, reconcile_wait: float) -> list[Any]:
    """A batch: send_many; on a redelivery, what the earlier run may have sent is reconciled
    first (all items at once with ``reconcile_many``: about ``reconcile_wait`` in all, under
    the per-mailbox cap) and only what proved unsent is sent."""
    if not run.resumed:
        return client.send_many(items)
    verdicts = client.reconcile_many(items, wait=reconcile_wait)
    results: list[Any] = [None] * len(items)
    resend = [i for i, v in enumerate(verdicts) if v == "not_sent"]
    for i, v in enumerate(verdicts):
        if v == "sent":
            user, message_id = items[i] if isinstance(items[i], tuple) else (None, items[i])
            results[i] = _reconciled(None, message_id, user)
        elif v == "unknown":
            results[i] = SendError(
                "an earlier run of this task may have sent the message and the mailbox cannot "
                "tell; not sent again",
                may_have_sent=True,
            )
    for i, got in zip(resend, client.send_many([items[i] for i in resend]), strict=True):
        results[i] = got
    return results


def _reconciled(crid: str | None, message_id: str, user: str | None) -> Receipt:
    """The mailbox shows the message sent: a Receipt (``reconciled=True``) without the 202
    it never saw."""
    return Receipt(202, None, crid or "", None, 0.0, message_id, user, True)


def _passes(exc: SendError) -> bool:
    """Proves nothing was sent and may pass if tried later."""
    if exc.may_have_sent:
        return False
    if isinstance(exc, (ThrottledError, ServiceUnavailableError, LimiterError)):
        return True
    return isinstance(exc, TransportError) and exc.curl_code in (5, 6, 7, 28, 35, 52, 55, 56)


# ------------------------------------------------------------------ per-process client


class _PerProcess:
    """The user's Client, made on first use in each worker process (prefork children fork
    from the parent after import: nothing made before the fork is used after it)."""

    def __init__(self, make: Callable[[], Client]) -> None:
        self.make = make
        self.pid = -1
        self.client: Client | None = None
        self.lock = threading.Lock()

    def get(self) -> Client:
        with self.lock:
            if self.client is None or self.pid != os.getpid():
                self.client = self.make()
                self.pid = os.getpid()
            return self.client


# ------------------------------------------------------------------ each run's lease and state


# A run's lease is renewed and given up only by its owner: after a stall longer than the lease
# (a frozen process, Redis out of reach), a redelivered run may hold it, and the first run must
# neither extend nor delete that run's lease. One that lapsed with no one taking it is taken
# back (the run is alive: a redelivery must wait). KEYS: the lease. ARGV: the owner, lease ms.
# Returns 0 once another run holds it.
_RENEW_RUN = """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not owner then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""
_STOP_RUN = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class _State:
    """Per task id in Redis: ``run`` (the live run's lease, renewed while it works) and
    ``state`` (a hash: started, draft, crid, ambiguous, done)."""

    def __init__(self, url: str, lease: float) -> None:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("state_url must be a Redis URL (the broker's is not one)")
        global redis
        import redis

        self.url, self.lease = url, lease
        self.pid = -1
        self.redis: Any = None
        self.renew_run: Any = None
        self.stop_run: Any = None

    def conn(self) -> Any:
        if self.redis is None or self.pid != os.getpid():
            self.redis = redis.Redis.from_url(self.url, socket_timeout=5)
            self.renew_run = self.redis.register_script(_RENEW_RUN)
            self.stop_run = self.redis.register_script(_STOP_RUN)
            self.pid = os.getpid()
        return self.redis

    def begin(self, task_id: str) -> _Run:
        r = self.conn()
        key = f"graphsend:celery:{task_id}"
        done = r.hget(key + ":state", "done")
        if done is not None:
            return _Run(self, key, json.loads(done), busy=False, resumed=False)
        me = uuid.uuid4().hex
        if not r.set(key + ":run", me, nx=True, px=int(self.lease * 1000)):
            return _Run(self, key, None, busy=True, resumed=False)
        # A state left by an earlier run that is no longer alive: it may have sent.
        resumed = not r.hsetnx(key + ":state", "started", "1")
        r.expire(key + ":state", 7 * 86400)
        run = _Run(self, key, None, busy=False, resumed=resumed, owner=me)
        run.keep()
        return run


class _Run:
    def __init__(
        self, state: _State, key: str, done: Any, *, busy: bool, resumed: bool, owner: str = ""
    ) -> None:
        self.state, self.key, self.done = state, key, done
        self.busy, self.resumed, self.owner = busy, resumed, owner
        self.stopped = threading.Event()
        # A renewal is never under way once stop() returns (it would take the lease back).
        self.renewing = threading.Lock()

    def get(self, field: str) -> str | None:
        value = self.state.conn().hget(self.key + ":state", field)
        return value.decode() if value else None

    def put(self, field: str, value: str) -> None:
        self.state.conn().hset(self.key + ":state", field, value)

    def keep(self) -> None:
        """Renew this run's lease while it works (a thread: a send holds no GIL), as long as
        it is still this run's."""

        def renew() -> None:
            ms = int(self.state.lease * 1000)
            while not self.stopped.wait(self.state.lease / 3):
                with self.renewing:
                    if self.stopped.is_set():
                        return
                    try:
                        self.state.conn()
                        if not self.state.renew_run(
                            keys=[self.key + ":run"], args=[self.owner, ms]
                        ):
                            return  # a redelivered run holds it now: no longer ours
                    except Exception:
                        pass  # Redis away: the lease may lapse; a redelivery then reconciles

        threading.Thread(target=renew, daemon=True, name="graphsend-celery-lease").start()

    def fresh(self) -> None:
        """Nothing of this run went out: the next run (a Celery retry) starts afresh."""
        self.state.conn().hdel(self.key + ":state", "started", "ambiguous")

    def finish(self, value: Any) -> None:
        """Store the result for a redelivery, best effort: the sends are done, and a Redis
        failure here must not turn them into a task failure (a caller would send again). A
        redelivery that finds no result reconciles instead. Never raises."""
        try:
            self.state.conn().hset(self.key + ":state", "done", json.dumps(value))
        except Exception as exc:
            log = _log.get(create=True)
            assert log is not None
            log.warning(
                "graphsend celery task %s: its result could not be stored in Redis (%s); a "
                "redelivery will reconcile instead of returning it",
                self.key.rsplit(":", 1)[-1],
                type(exc).__name__,
            )
        self.stop()  # the keeper must not renew this lease for ever

    def stop(self) -> None:
        with self.renewing:
            self.stopped.set()
        try:
            self.state.conn()
            self.state.stop_run(keys=[self.key + ":run"], args=[self.owner])
        except Exception:
            pass  # the lease lapses by itself


def results(value: Any) -> Any:
    """A result read some other way than AsyncResult.get() (raw JSON): Receipts and errors
    rebuilt, as the kombu decoder does."""
    return decode(value)

"""The send_many journal: a SQLite file (WAL) that records each item before its request is
written and its outcome after, so that a run killed half-way (deploy, OOM, Ctrl-C, power) can be
run again and send every draft exactly once.

Two tables. ``run``: the run's identity, written once (format, base URL, and ``items``: a JSON
list of [user, message_id, client-request-id], the id every attempt of that item carries, in
every run), and the boot id of the machine that last opened it. ``event``: one row per commit,
``changes`` a JSON list applied in order: an int is "this item's request is about to be
written" (``in_flight``), ``[idx, state, detail]`` any other state (``sent`` with the Receipt's
fields, ``failed`` / ``unknown`` with the error text, ``reserved``, ``pending``). An item's
state is its last change; none is ``pending``. One row per commit rather than one per item
keeps the journal's cost per item to appending to a list: SQLite then writes a page or two per
wake-up, not a B-tree update per item.

States: ``pending`` (nothing written that Graph may have acted on), ``reserved`` (may be
started without a further fsync), ``in_flight`` (a request may have been written, no outcome
recorded), ``sent`` (202, or the mailbox showed the sent copy), ``failed`` (a final error that
proves nothing was sent), ``unknown`` (a final error that may have sent it, or a reconcile that
could not tell).

Durability, and why this shape. An item must be durably marked before its request is written,
or a crash makes it look never requested and the next run sends it twice. A process crash
(SIGKILL, OOM, deploy) loses nothing that was written to the WAL: the pages are in the kernel,
so ``synchronous=NORMAL`` (no fsync at commit) suffices. A power loss or OS crash loses what was
not fsynced, so that needs ``FULL``, an fsync per commit, which costs 0.3-4 ms on the bench
machine's disk: one per wake-up of the Scheduler (about 30) made S3 (2,000 sends, 100 mailboxes)
17 % slower, against 8 % for the scheme below (bench/results/journal.md).
So reservations take the fsync and starts do not: when the Scheduler starts an item that is not
reserved yet, that item and the first ``ahead`` (4x max_per_mailbox) queued items of every
mailbox are reserved (mailboxes move in step, so one such fsync serves them all for a while),
and that commit is fsynced (``SYNCHRONOUS``) before the Engine runs; a commit with starts is
written at NORMAL before the Engine runs; outcomes alone wait up to OUTCOME_LAG for the next
commit. After a crash in the same boot (the journal stores /proc/sys/kernel/random/boot_id),
every written commit survived, so a ``reserved`` item was not started and is simply sent; after
a reboot (or where the boot id is unknown) a ``reserved`` item may have been started, and it is
reconciled like ``in_flight``. A lost outcome only leaves an item in flight, which is
reconciled, never resent blindly. bench/journal.py measures this against an fsync at every
wake-up and against NORMAL only.

The Scheduler calls ``started`` just before it hands a request to the Engine, ``requeued`` and
``settled`` as answers come; those only append to a list. The driver calls ``flush`` once per
wake-up, after the Scheduler submitted and before the Engine runs (``Engine.submit`` only queues:
nothing is written on the wire before ``perform``).

Running again with the same items: ``sent`` items return their stored Receipt and are not
requested; ``in_flight`` and ``unknown`` ones are reconciled by the Scheduler while the rest is
sent (reads of the mailbox, as ``Retry(reconcile_ambiguous=True)`` settles an ambiguous send):
"sent" is a Receipt with ``reconciled=True``, "not_sent" goes out again (same
client-request-id), "unknown" is a SendError with ``may_have_sent=True`` and is never resent;
``pending``, ``reserved`` (same boot) and ``failed`` ones are sent.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time

from graphsend._rules.errors import SendError
from graphsend._rules.receipt import Receipt

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from graphsend._drivers.bulk import Batch, Job, Scheduler, _Mailbox
    from graphsend._drivers.client import Client
    from graphsend._rules.outcome import Outcome
    from graphsend._rules.request import Item

#: PRAGMA synchronous of a commit that reserves items: "FULL" (power-loss safe) or "NORMAL"
#: (process-crash safe only). Module-level so bench/journal.py can measure the
#: alternative; not an API.
SYNCHRONOUS = "FULL"
#: Items of a mailbox queue one reservation covers, per max_per_mailbox (1 would fsync at every
#: wake-up that starts something). Module-level for bench/journal.py; not an API.
AHEAD_PER_SLOT = 4
#: Seconds a flush may keep back outcomes when nothing starts (see Journal.flush).
OUTCOME_LAG = 0.05

FORMAT = "1"
PENDING, RESERVED, IN_FLIGHT = "pending", "reserved", "in_flight"
SENT, FAILED, UNKNOWN = "sent", "failed", "unknown"

_SCHEMA = (
    "CREATE TABLE run (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE event (seq INTEGER PRIMARY KEY, changes TEXT NOT NULL)",
)


def check_path(journal: object) -> str:
    """The journal argument as a path, or a clear exception before anything is sent."""
    if isinstance(journal, bytes) or not isinstance(journal, (str, os.PathLike)):
        raise TypeError(f"journal must be a str or os.PathLike path, not {type(journal).__name__}")
    path = os.fspath(journal)
    if not isinstance(path, str):
        raise TypeError("journal must be a str path")
    if not path or path == ":memory:" or path.startswith("file:"):
        raise ValueError(f"journal must be the path of a file, got {path!r}")
    if "\x00" in path:
        raise ValueError("journal path contains a NUL character")
    if os.path.isdir(path):
        raise ValueError(f"journal {path!r} is a directory; give the path of a file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"journal {path!r}: directory {parent!r} does not exist")
    return path


def item_keys(items: Sequence[Item]) -> list[tuple[str | None, str]]:
    """(user, message_id) of every item; a journal holds draft sends only."""
    keys: list[tuple[str | None, str]] = []
    for index, item in enumerate(items):
        user: object = None
        what: object = item
        if isinstance(item, tuple) and len(item) == 2:
            user, what = item
        if not isinstance(what, str) or not (user is None or isinstance(user, str)):
            raise TypeError(
                f"item {index}: with journal=, items must be draft ids or (user, draft_id) "
                f"pairs (got {type(what).__name__}); a Message has no id the mailbox can be "
                "asked about after a crash: create its draft first (client.create_draft)"
            )
        keys.append((user, what))
    return keys


class JournalBusyError(RuntimeError):
    """The journal is open in another process (or another send_many of this one)."""


class Journal:
    """One open journal: the connection, holding SQLite's exclusive lock until close()."""

    __slots__ = (
        "_changes",
        "_db",
        "_durable",
        "_held",
        "_reserved",
        "_starts",
        "ahead",
        "doubtful",
        "path",
    )

    def __init__(self, path: str, db: sqlite3.Connection, ahead: int = 16) -> None:
        self.path = path
        self._db = db
        self.ahead = ahead  # queued items per mailbox kept reserved
        self._changes: list[int | tuple[int, str, Any]] = []  # since the last flush
        self._reserved: set[int] = set()  # reserved by this run (durably, once flushed)
        self._durable = False  # the next flush must be fsynced (it holds reservations)
        self._starts = False  # the next flush holds starts: it must commit before the Engine runs
        self._held = 0.0  # when flush() first kept back outcomes only (0: it did not)
        self.doubtful: list[Job] = []  # items that may have been sent: reconcile() them

    # ---- hooks: the Scheduler's only append; the driver flushes once per wake-up

    def started(self, job: Job, mailboxes: dict[str, _Mailbox]) -> None:
        """``job`` is handed to the Engine (its request is written after the next flush)."""
        index = job.index
        if index not in self._reserved:
            self._top_up(job, mailboxes)
        self._changes.append(index)
        self._starts = True

    def _top_up(self, job: Job, mailboxes: dict[str, _Mailbox]) -> None:
        """Reserve ``job``, and the first ``ahead`` queued items of this batch in every
        mailbox: mailboxes move in step, so one fsync serves them all for a while."""
        reserved, changes = self._reserved, self._changes
        batch, ahead = job.batch, self.ahead
        reserved.add(job.index)
        changes.append((job.index, RESERVED, None))
        for box in mailboxes.values():
            seen = 0
            for other in box.queue:
                # (A read reconciling an item shares its index: never reserve that item, it
                # may have been sent, and "reserved" would say it was not.)
                if other.batch is batch and other.probe is None:
                    if other.index not in reserved:
                        reserved.add(other.index)
                        changes.append((other.index, RESERVED, None))
                    seen += 1
                    if seen >= ahead:
                        break
        self._durable = True

    def requeued(self, job: Job) -> None:
        """A retry waits. It stays reserved (its next start is not fsynced again); if an
        attempt may have sent it, it stays in flight."""
        if job.retry is not None and not job.retry.ambiguous:
            self._changes.append((job.index, RESERVED, None))

    def settled(self, job: Job, got: Outcome) -> None:
        if got.__class__ is Receipt:
            self._changes.append((job.index, SENT, got))  # JSON writes its fields as a list
        else:
            err: SendError = got  # type: ignore[assignment]
            self._changes.append((job.index, _error_state(err), f"{type(err).__name__}: {err}"))

    def flush(self) -> None:
        """Commit what happened since the last flush, in one transaction. A commit with
        reservations is fsynced (SYNCHRONOUS) before this returns; one with starts is written
        to the WAL (durable against a process crash); outcomes alone are kept back up to
        OUTCOME_LAG seconds, so a run's tail of answers costs a few commits, not one per
        wake-up (an outcome lost in a crash leaves its item in flight: reconciled, not resent).
        """
        changes = self._changes
        if not changes:
            return
        if not self._starts:
            now = time.monotonic()
            if not self._held:
                self._held = now
            if now - self._held < OUTCOME_LAG:
                return
        self._changes = []
        self._starts = False
        self._held = 0.0
        db = self._db
        if self._durable:
            self._durable = False
            db.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
            db.execute("INSERT INTO event (changes) VALUES (?)", (json.dumps(changes),))
            db.execute("PRAGMA synchronous = NORMAL")
        else:
            db.execute("INSERT INTO event (changes) VALUES (?)", (json.dumps(changes),))

    def close(self) -> None:
        """Commit what is left, and let go of the file (and of the lock) in a thread of its
        own: SQLite's close copies the WAL into the database and fsyncs both, milliseconds the
        caller need not wait for (everything is in the WAL already). Opening the same journal
        again in this process waits for it; another process may find it busy meanwhile. The
        thread is not a daemon: the interpreter finishes it before exiting."""
        try:
            self._starts = True  # commit even outcomes alone
            self.flush()
        except BaseException:
            self._db.close()
            raise
        key = os.path.realpath(self.path)
        closing = threading.Thread(target=_close, args=(self._db, key), name="graphsend-journal")
        with _closing_lock:
            _closing[key] = closing
        closing.start()


def _close(db: sqlite3.Connection, key: str) -> None:
    with contextlib.suppress(sqlite3.Error):  # (the WAL stays: the next open recovers it)
        db.close()
    with _closing_lock:
        if _closing.get(key) is threading.current_thread():
            del _closing[key]


# Journals closing in a thread (see Journal.close), by real path.
_closing: dict[str, threading.Thread] = {}
_closing_lock = threading.Lock()


def _wait_closed(path: str) -> None:
    with _closing_lock:
        closing = _closing.pop(os.path.realpath(path), None)
    if closing is not None:
        closing.join()


def _error_state(err: SendError) -> str:
    return UNKNOWN if err.may_have_sent else FAILED


def _connect(path: str) -> tuple[sqlite3.Connection, set[str]]:
    """The connection, inside BEGIN IMMEDIATE, and the tables the file already had."""
    _wait_closed(path)
    try:
        # timeout 0: another process holding the lock is an error at once, never a wait.
        db = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise ValueError(f"journal {path!r} cannot be opened: {exc}") from None
    try:
        # EXCLUSIVE: the locks taken below are held until close(), so a second process (or
        # connection) is refused; WAL then needs no shared-memory file either.
        db.execute("PRAGMA locking_mode = EXCLUSIVE")
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and tables != {"run", "event"}:
            # Someone else's database: not even switched to WAL.
            raise ValueError(f"journal {path!r} is an SQLite file but not a graphsend journal")
        # (at the default FULL: a new file's switch to WAL, its header, is fsynced, so a
        # power loss cannot leave a journal whose WAL its header disowns)
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise ValueError(f"journal {path!r}: SQLite cannot use WAL mode there ({mode})")
        # NORMAL: no fsync at commit. The run's identity needs none of its own: the first
        # reservation's commit (at SYNCHRONOUS) fsyncs the WAL, and everything before it.
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("BEGIN IMMEDIATE")  # the write lock, now
    except sqlite3.OperationalError as exc:
        db.close()
        if "locked" in str(exc) or "busy" in str(exc):
            raise JournalBusyError(
                f"journal {path!r} is in use by another process (or another send_many); "
                "one journal serves one run at a time"
            ) from None
        raise ValueError(f"journal {path!r} cannot be used: {exc}") from None
    except sqlite3.DatabaseError as exc:
        db.close()
        raise ValueError(f"journal {path!r} is not a graphsend journal: {exc}") from None
    except BaseException:
        db.close()
        raise
    return db, tables


def open_run(
    path: str, base_url: str, keys: list[tuple[str | None, str]], crids: Sequence[str]
) -> tuple[Journal, list[tuple[str, str, list[Any] | None]]]:
    """Open (or create) the journal for this run; returns it with each item's (state, crid,
    Receipt fields if sent). Refuses a journal of another run, naming the difference."""
    db, tables = _connect(path)  # inside BEGIN IMMEDIATE
    boot = boot_id()
    try:
        if not tables:
            for statement in _SCHEMA:
                db.execute(statement)
            meta = {
                "format": FORMAT,
                "base_url": base_url,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "boot": boot,
                "items": json.dumps([[u, m, c] for (u, m), c in zip(keys, crids, strict=True)]),
            }
            db.executemany("INSERT INTO run VALUES (?, ?)", meta.items())
            rows: list[tuple[str, str, list[Any] | None]] = [(PENDING, c, None) for c in crids]
        else:
            meta = dict(db.execute("SELECT key, value FROM run"))
            stored = _check_run(path, meta, base_url, keys)
            states = [PENDING] * len(stored)
            receipts: dict[int, list[Any]] = {}
            for (text,) in db.execute("SELECT changes FROM event ORDER BY seq"):
                for change in json.loads(text):
                    if change.__class__ is int:
                        states[change] = IN_FLIGHT
                    else:
                        index, states[index], detail = change
                        if states[index] == SENT:
                            receipts[index] = detail
            reserved = [i for i, state in enumerate(states) if state == RESERVED]
            if reserved:
                if boot and meta.get("boot") == boot:
                    # The same boot: every commit since the reservation survived (only a
                    # power loss or an OS crash loses written pages), so a start would show.
                    states = [PENDING if st == RESERVED else st for st in states]
                else:
                    # Maybe a power loss: a start made after the reservation may be lost.
                    # Durably in flight now, before the boot id that would hide it is stored.
                    db.execute("INSERT INTO event (changes) VALUES (?)", (json.dumps(reserved),))
                    for index in reserved:
                        states[index] = IN_FLIGHT
            db.execute("UPDATE run SET value = ? WHERE key = 'boot'", (boot,))
            rows = [(states[i], item[2], receipts.get(i)) for i, item in enumerate(stored)]
        db.execute("COMMIT")
        return Journal(path, db), rows
    except Exception as exc:
        db.close()
        if isinstance(exc, ValueError) and str(exc).startswith("journal "):
            raise
        # A row that is not what this code writes.
        raise ValueError(f"journal {path!r} is damaged: {type(exc).__name__}: {exc}") from None
    except BaseException:
        db.close()
        raise


def boot_id() -> str:
    """This boot of the machine ("" when unknown: every reservation is then doubtful)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _check_run(
    path: str, meta: dict[str, str], base_url: str, keys: list[tuple[str | None, str]]
) -> list[list[Any]]:
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"journal {path!r} has format {meta.get('format')!r}; this graphsend writes {FORMAT}"
        )
    if meta.get("base_url") != base_url:
        raise ValueError(
            f"journal {path!r} is a run against {meta.get('base_url')!r}, not {base_url!r}"
        )
    stored: list[list[Any]] = json.loads(meta["items"])
    if len(stored) != len(keys):
        raise ValueError(
            f"journal {path!r} is a run of {len(stored)} items; got {len(keys)}: "
            "run it again with the same items, or use a new journal"
        )
    for index, (old, new) in enumerate(zip(stored, keys, strict=True)):
        if (old[0], old[1]) != new:
            raise ValueError(
                f"journal {path!r}: item {index} does not match its run: the journal has "
                f"{_show(old[0], old[1])}, got {_show(*new)}; run it again with the same items "
                "in the same order, or use a new journal"
            )
    return stored


def _show(user: str | None, message_id: str) -> str:
    # Graph ids share long prefixes: keep both ends of a long one.
    shown = message_id if len(message_id) <= 60 else message_id[:24] + "..." + message_id[-24:]
    return f"{shown!r} of {user or 'me'}"


def attach(
    client: Client,
    batch: Batch,
    path: str,
    keys: list[tuple[str | None, str]],
    max_per_mailbox: int,
) -> Journal:
    """Open the journal for ``batch`` (its jobs made from ``keys``, in order): known outcomes
    preset, each job's client-request-id the journal's; the items that may have been sent are
    kept in ``journal.doubtful`` for :meth:`Journal.reconcile` once the Scheduler has them."""
    crids = [job.crid for job in batch.jobs]
    journal, rows = open_run(path, client.base_url + "/" + client.api_version, keys, crids)
    journal.ahead = max(1, AHEAD_PER_SLOT * max_per_mailbox)
    for job, (state, crid, receipt) in zip(batch.jobs, rows, strict=True):
        job.crid = crid
        if state == SENT and receipt is not None:
            batch.known[job.index] = Receipt(*receipt)
        elif state in (IN_FLIGHT, UNKNOWN):
            journal.doubtful.append(job)
    return journal


DOUBTFUL = (
    "the previous run stopped while this draft's send may have reached Graph (or it ended "
    "ambiguously), so it is not sent again blindly"
)


def reconcile(scheduler: Scheduler, journal: Journal) -> None:
    """Settle every item the journal says may have been sent by reading its mailbox, as the
    Scheduler settles an ambiguous send (``_drivers/reconciling.py``): each read a job in the
    item's mailbox queue, each pause in the Scheduler's heap, while the other items are sent.
    "sent" is a Receipt with ``reconciled=True``; "not_sent" sends it (same client-request-id,
    counted as an attempt); "unknown" is a SendError with ``may_have_sent=True``, not resent.
    Until its verdict an item's result is that error (what a Ctrl-C meanwhile reports)."""
    from graphsend._drivers import reconciling as _reconciling
    from graphsend._rules.retry import RetryState

    policy = scheduler.client.retry
    for job in journal.doubtful:
        scheduler.mailboxes[job.mailbox].queue.remove(job)  # probed, not sent
        job.retry = RetryState(policy)
        job.retry.ambiguous = True
        error = SendError(DOUBTFUL, may_have_sent=True, client_request_id=job.crid)
        _reconciling.start(scheduler, job, error)
    journal.doubtful = []

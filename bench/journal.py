"""What the send_many journal costs on the S3 scenario, side by side in one run.

  .venv/bin/python -m bench.journal [--rounds 7]     (needs `make -C bench programs`)

2,000 sends over 100 mailboxes, at most 4 in flight per mailbox, against latencyd answering
after 20 ms (S3's plan and server), from one Client: ``send_many(items)`` without a journal, with
a journal at ``synchronous=FULL`` (graphsend's setting: fsync per commit, power-loss safe) and at
``NORMAL`` (process-crash safe only), rounds interleaved, a fresh journal file (and fresh ids) each
round, under bench/.work/journal/ (the disk a user's journal would be on). Also: running a
finished journal again (every item known sent: no request at all).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time

from graphsend import Client
from graphsend._drivers import journal as _journal

from .common import WORK_DIR, BulkPlan, cpus_for
from .servers import Latencyd

PLAN = BulkPlan(mailboxes=100, per_mailbox=20, cap=4)
LATENCY = 0.020
MODES = ("no journal", "journal FULL", "journal NORMAL")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    cpus = cpus_for("client")
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    work = WORK_DIR / "journal"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    commits: dict[str, list[int]] = {mode: [] for mode in MODES}
    rerun: list[float] = []
    counted = [0]
    flush = _journal.Journal.flush

    def counting_flush(self: _journal.Journal) -> None:
        if self._changes:
            counted[0] += 1
        flush(self)

    _journal.Journal.flush = counting_flush  # type: ignore[method-assign]
    with Latencyd(LATENCY) as server, Client("bench", base_url=server.base_url) as client:
        round_no = 0

        def one(mode: str) -> float:
            nonlocal round_no
            items = PLAN.items(round_no)
            path = None
            if mode != "no journal":
                _journal.SYNCHRONOUS = mode.split()[1]
                path = work / f"run{round_no}.db"
            round_no += 1
            counted[0] = 0
            start = time.perf_counter()
            out = client.send_many(items, max_concurrency=PLAN.max_in_flight, journal=path)
            took = time.perf_counter() - start
            bad = sum(1 for r in out if getattr(r, "status", None) != 202)
            if bad:
                raise SystemExit(f"{mode}: {bad} sends failed")
            if path is not None:
                server.reset()
                start = time.perf_counter()
                again = client.send_many(items, max_concurrency=PLAN.max_in_flight, journal=path)
                rerun.append(time.perf_counter() - start)
                if again != out or server.stats()["requests"]:
                    raise SystemExit(f"{mode}: a rerun of a finished journal sent requests")
                for suffix in ("", "-wal", "-shm"):
                    (work / f"run{round_no - 1}.db{suffix}").unlink(missing_ok=True)
            return took

        for mode in MODES:  # cold connections and first-use costs, not counted
            one(mode)
        for _ in range(args.rounds):
            for mode in MODES:
                counted[0] = 0
                times[mode].append(one(mode))
                commits[mode].append(counted[0])
    base = statistics.median(times["no journal"])
    print(
        f"S3 plan: {PLAN.total} sends, {PLAN.mailboxes} mailboxes, cap {PLAN.cap}, "
        f"latency {LATENCY * 1000:.0f} ms; {args.rounds} interleaved rounds, median wall time"
    )
    for mode in MODES:
        med = statistics.median(times[mode])
        extra = "" if mode == "no journal" else f"  {100 * (med - base) / base:+.1f} %"
        per = f"  ({statistics.median(commits[mode]):.0f} commits)" if commits[mode][0] else ""
        print(
            f"  {mode:15} {med * 1000:7.1f} ms{extra}{per}  "
            f"(rounds {min(times[mode]) * 1000:.0f}-{max(times[mode]) * 1000:.0f})"
        )
    print(
        f"  rerun of a finished journal (2,000 known sent, no request): "
        f"{statistics.median(rerun) * 1000:.1f} ms"
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

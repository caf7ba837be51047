"""What the send_many journal costs on the S3 scenario, side by side in one run.

  .venv/bin/python -m bench.journal [--rounds 15]     (needs `make -C bench programs`)

2,000 sends over 100 mailboxes, at most 4 in flight per mailbox, against latencyd answering
after 20 ms (S3's plan and server), from one Client, ``send_many(items)``:

- without a journal;
- with a journal as graphsend writes it: reservations fsynced (``synchronous=FULL``), each
  reserving the next 4x max_per_mailbox items of a mailbox; starts and outcomes at NORMAL
  (power-loss safe, see graphsend/_drivers/journal.py);
- fsync at every wake-up that starts something (the naive power-loss safe journal);
- NORMAL only, never an fsync before a request (process-crash safe only).

Every round runs every mode once, in a shuffled order, each with a fresh journal file (and fresh
ids) under bench/.work/journal/ (the disk a user's journal would be on). The overhead is the
median over rounds of that round's ratio to its own no-journal run, so load that drifts between
rounds (other processes on the machine) cancels out; the fastest round of each mode, against
the fastest no-journal round, is shown too (the least disturbed figure on a busy machine).
Also: running a finished journal again (every item known sent: no request at all). Writes
bench/results/journal.md.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import time

from graphsend import Client
from graphsend._drivers import journal as _journal

from .common import RESULTS_DIR, WORK_DIR, BulkPlan, cpus_for
from .servers import Latencyd

PLAN = BulkPlan(mailboxes=100, per_mailbox=20, cap=4)
LATENCY = 0.020
RESULTS = RESULTS_DIR / "journal.md"
# label: (SYNCHRONOUS, AHEAD_PER_SLOT), None for no journal; graphsend's setting first.
MODES: dict[str, tuple[str, int] | None] = {
    "no journal": None,
    "journal (graphsend: reserve, FULL)": ("FULL", 4),
    "journal, FULL at every wake-up": ("FULL", 0),
    "journal, NORMAL only (no fsync)": ("NORMAL", 4),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args(argv)
    cpus = cpus_for("client")
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    work = WORK_DIR / "journal"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}  # this process's CPU seconds
    fsyncs: dict[str, list[int]] = {mode: [] for mode in MODES}
    rerun: list[float] = []
    counted = [0]  # fsynced commits (reservations) of the current round
    flush = _journal.Journal.flush

    def counting_flush(self: _journal.Journal) -> None:
        if self._changes and self._durable and _journal.SYNCHRONOUS == "FULL":
            counted[0] += 1
        flush(self)

    _journal.Journal.flush = counting_flush  # type: ignore[method-assign]
    used = [0.0]
    with Latencyd(LATENCY) as server, Client("bench", base_url=server.base_url) as client:
        round_no = 0

        def one(mode: str) -> float:
            nonlocal round_no
            items = PLAN.items(round_no)
            path = None
            setting = MODES[mode]
            if setting is not None:
                _journal.SYNCHRONOUS, _journal.AHEAD_PER_SLOT = setting
                path = work / f"run{round_no}.db"
            round_no += 1
            counted[0] = 0
            start, cpu_start = time.perf_counter(), time.process_time()
            out = client.send_many(items, max_concurrency=PLAN.max_in_flight, journal=path)
            took = time.perf_counter() - start
            used[0] = time.process_time() - cpu_start
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
                    (work / f"{path.name}{suffix}").unlink(missing_ok=True)
            return took

        for mode in MODES:  # cold connections and first-use costs, not counted
            one(mode)
        rng = random.Random(1)
        for _ in range(args.rounds):
            for mode in rng.sample(list(MODES), len(MODES)):
                times[mode].append(one(mode))
                fsyncs[mode].append(counted[0])
                cpu[mode].append(used[0])
    lines: list[str] = []
    out = lines.append
    out(
        f"S3 plan: {PLAN.total} sends, {PLAN.mailboxes} mailboxes, cap {PLAN.cap}, latency "
        f"{LATENCY * 1000:.0f} ms; {args.rounds} rounds. Median wall time; overhead = median of "
        "each round's ratio to that round's no-journal run; best = fastest round, against the "
        "fastest no-journal round; CPU = this process's CPU time (median), in brackets what "
        "the journal adds"
    )
    for mode, setting in MODES.items():
        ratios = [t / b for t, b in zip(times[mode], times["no journal"], strict=True)]
        best = min(times[mode])
        extra = best_extra = ""
        if setting is not None:
            extra = f"{100 * (statistics.median(ratios) - 1):+.1f} %"
            best_extra = f"{100 * (best / min(times['no journal']) - 1):+.1f} %"
        synced = f"{statistics.median(fsyncs[mode]):.0f} fsyncs" if setting else ""
        used_ms = statistics.median(cpu[mode]) * 1000
        more_cpu = used_ms - statistics.median(cpu["no journal"]) * 1000
        cpu_extra = f"(+{more_cpu:.1f})" if setting else ""
        out(
            f"  {mode:36} {statistics.median(times[mode]) * 1000:7.1f} ms {extra:>8}   "
            f"best {best * 1000:6.1f} ms {best_extra:>8}  CPU {used_ms:5.1f} ms {cpu_extra:8} "
            f"{synced:9}  (worst {max(times[mode]) * 1000:.0f})"
        )
    out(
        "  rerun of a finished journal (2,000 known sent, no request): "
        f"{statistics.median(rerun) * 1000:.1f} ms"
    )
    shutil.rmtree(work, ignore_errors=True)
    print("\n".join(lines))
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    RESULTS.write_text(
        f"# send_many journal on S3 ({stamp}, `python -m bench.journal --rounds {args.rounds}`)"
        "\n\n```\n" + "\n".join(lines) + "\n```\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""AsyncClient on the event loop, measured from inside (issue 10): how long each
LoopEngine.drive() call holds the GIL (it never releases it: short non-blocking libcurl calls),
how long each loop callback of the driver takes, and the worst gap of a 10 ms ticker task while
2,000 sends (S3's plan: 100 mailboxes, 4 in flight each, 20 ms latencyd) run.

    make -C bench programs && .venv/bin/python -m bench.loop_probe [--rounds 5] [--uvloop]

S3 runs it too (`--base-url` of its latencyd, `--json`), so results.json carries the ticker's
worst gap beside the S3 rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time

import graphsend

from .common import BulkPlan
from .servers import Latencyd

PLAN = BulkPlan(mailboxes=100, per_mailbox=20, cap=4)


class TimedEngine:
    """Stands in for a LoopEngine: times every drive() call. A drive() that starts submitted
    transfers releases the GIL for that part (`starts`); every other one holds it (`hold`)."""

    def __init__(self, engine: object, hold: list[float], starts: list[float]) -> None:
        self._engine, self._hold, self._starts = engine, hold, starts
        self._submitted = False

    def submit(self, *args: object) -> None:
        self._submitted = True
        self._engine.submit(*args)  # type: ignore[attr-defined]

    def drive(self, fd: int, flags: int = 0) -> object:
        start = time.perf_counter()
        try:
            return self._engine.drive(fd, flags)  # type: ignore[attr-defined]
        finally:
            (self._starts if self._submitted else self._hold).append(time.perf_counter() - start)
            self._submitted = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._engine, name)


async def probe(base_url: str, mode: str, rounds: int) -> dict[str, float]:
    hold: list[float] = []
    starts: list[float] = []
    gaps: list[float] = []
    walls: list[float] = []
    client = graphsend.AsyncClient("t" * 1200, base_url=base_url, max_per_mailbox=PLAN.cap)
    driver = client._driver(asyncio.get_running_loop())
    timed = TimedEngine(driver.engine, hold, starts)
    driver.engine = driver.scheduler.engine = timed  # type: ignore[assignment]
    stop = False

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0.010)
            now = time.perf_counter()
            gaps.append(now - last - 0.010)
            last = now

    for r in range(rounds + 1):  # round 0 opens the connections
        items = PLAN.items(r)
        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0.02)
        start = time.perf_counter()
        if mode == "gather":
            out = await asyncio.gather(*(client.send(m, user=u) for u, m in items))
        else:
            out = await client.send_many(items, max_concurrency=PLAN.max_in_flight)
        wall = time.perf_counter() - start
        stop = True
        await tick
        stop = False
        assert all(getattr(o, "status", None) == 202 for o in out), out[:3]
        if r == 0:
            hold.clear()
            starts.clear()
            gaps.clear()
        else:
            walls.append(wall)
    await client.aclose()
    hold.sort()
    return {
        "wall_ms": statistics.median(walls) * 1e3,
        "drive_calls_per_send": (len(hold) + len(starts)) / (rounds * PLAN.total),
        "gil_held_median_us": statistics.median(hold) * 1e6,
        "gil_held_p99_us": hold[int(len(hold) * 0.99)] * 1e6,
        "gil_held_max_us": hold[-1] * 1e6,
        "batch_start_calls": len(starts) / rounds,
        "batch_start_max_ms": max(starts) * 1e3,
        "ticker_worst_gap_ms": max(gaps) * 1e3,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--uvloop", action="store_true")
    ap.add_argument("--base-url", help="a running latencyd (20 ms) instead of starting one")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args()
    run = asyncio.run
    if args.uvloop:
        import uvloop

        run = uvloop.run
    found: dict[str, dict[str, float]] = {}
    with contextlib.ExitStack() as stack:
        base_url = args.base_url or stack.enter_context(Latencyd(0.020)).base_url
        for mode in ("gather", "send_many"):
            got = found[mode] = run(probe(base_url, mode, args.rounds))
            if not args.json:
                print(mode, " ".join(f"{k}={v:.1f}" for k, v in got.items()), flush=True)
    if args.json:
        print(json.dumps(found))


if __name__ == "__main__":
    main()

"""One client in its own process, driven over stdin/stdout by the harness (procs.py).

    python -m bench.worker '<json spec>'

It prints "ready" (or "na <reason>" when the client cannot run here), then answers commands, one
per line, until stdin closes:
    <n>            do n units of work            -> "<elapsed_ns> <ok> <cpu_ns>"
    rss            resident set size             -> "<KiB>"
    transfer       seconds spent inside libcurl so far (clients that report it), else -1
    gil <seconds>  GIL probe (see gil_probe)     -> one line of JSON
The C programs in c/ speak the same "<n>" protocol, so the harness treats both alike.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import statistics
import sys
import threading
import time
import traceback
from typing import Any

from .clients import BULK, SEQUENTIAL, THREADED, load
from .clients.base import NotAvailable, Runner
from .common import BulkPlan, Target, rss_kb


def build(spec: dict[str, Any]) -> Runner:
    kind = spec["kind"]
    table = {"sequential": SEQUENTIAL, "bulk": BULK, "threaded": THREADED}[kind]
    factory = load(table[spec["client"]])
    args: list[Any] = [Target(**spec["target"])]
    if kind == "bulk":
        args.append(BulkPlan(**spec["plan"]))
    elif kind == "threaded":
        args.append(spec["threads"])
    if inspect.iscoroutinefunction(factory):
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(factory(*args, loop=loop))  # type: ignore[no-any-return]
    return factory(*args)  # type: ignore[no-any-return]


def gil_probe(runner: Runner, seconds: float, pairs: int = 3) -> dict[str, float]:
    """How long the GIL is held per send, seen by a pure-Python counting thread.

    The counter's rate while the main thread sleeps is its full speed; while the main thread
    sends, every moment the counter is stalled is GIL held by (or handed over to) the sender.
    held-per-send = (1 - busy_rate / idle_rate) x elapsed / sends. Idle and busy phases
    alternate (idle, busy, idle, ... idle) and each busy phase is compared with the idle phases
    on either side, because the machine's other load moves the counter's speed; the median of
    the pairs is reported.
    """
    stop = [False]
    counts: list[int] = []

    def count() -> None:
        n = 0
        while not stop[0]:
            n += 1
        counts.append(n)

    def with_counter(work: Any) -> tuple[float, int, int]:
        stop[0] = False
        t = threading.Thread(target=count)
        t.start()
        t0 = time.perf_counter()
        sends = work()
        elapsed = time.perf_counter() - t0
        stop[0] = True
        t.join()
        return elapsed, counts.pop(), sends

    phase = seconds / pairs

    def idle() -> int:
        time.sleep(phase / 2)
        return 0

    def sending() -> int:
        sent, t_end = 0, time.perf_counter() + phase
        while time.perf_counter() < t_end:
            sent += runner.run(5)
        return sent

    idle_rates, held, per_send, rates = [], [], [], []
    s, n, _ = with_counter(idle)
    idle_rates.append(n / s)
    total_sends, total_busy = 0, 0.0
    for _ in range(pairs):
        busy_s, busy_n, sends = with_counter(sending)
        s, n, _ = with_counter(idle)
        idle_rates.append(n / s)
        reference = (idle_rates[-1] + idle_rates[-2]) / 2
        fraction = max(0.0, 1.0 - (busy_n / busy_s) / reference)
        held.append(fraction)
        per_send.append(fraction * busy_s / max(sends, 1) * 1e6)
        rates.append(sends / busy_s)
        total_sends += sends
        total_busy += busy_s
    return {
        "idle_rate": statistics.median(idle_rates),
        "held_fraction": statistics.median(held),
        "sends": total_sends,
        "sends_per_s": total_sends / total_busy,
        "gil_us_per_send": statistics.median(per_send),
        "gil_us_per_send_pairs": per_send,
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    out = sys.stdout
    try:
        runner = build(spec)
    except NotAvailable as e:
        print(f"na {e}", file=out, flush=True)
        return
    except Exception as e:
        traceback.print_exc()
        print(f"na setup failed: {type(e).__name__}: {e}".replace("\n", " "), file=out, flush=True)
        return
    print("ready", file=out, flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            break
        try:
            if cmd[0] == "rss":
                print(rss_kb(), file=out, flush=True)
            elif cmd[0] == "transfer":  # libcurl's own transfer time so far, or -1
                clock = getattr(runner, "clock", None)
                print(clock.seconds if clock is not None else -1, file=out, flush=True)
            elif cmd[0] == "gil":
                print(json.dumps(gil_probe(runner, float(cmd[1]))), file=out, flush=True)
            else:
                n = int(cmd[0])
                c0, t0 = time.process_time_ns(), time.perf_counter_ns()
                ok = runner.run(n)
                t1, c1 = time.perf_counter_ns(), time.process_time_ns()
                print(f"{t1 - t0} {ok} {c1 - c0}", file=out, flush=True)
        except Exception as e:
            traceback.print_exc()
            print(f"error {type(e).__name__}: {e}".replace("\n", " "), file=out, flush=True)
    runner.close()


if __name__ == "__main__":
    main()

"""One client in its own process, driven over stdin/stdout by the harness (see runner.py).

    python -m bench.worker '<json spec>'

It prints "ready" (or "na <reason>" when the client cannot run here), then answers commands, one
per line, until stdin closes:
    <n>            do n units of work            -> "<elapsed_ns> <ok> <cpu_ns>"
    rss            resident set size             -> "<KiB>"
    gil <seconds>  GIL probe (see gil_probe)     -> one line of JSON
The C programs in c/ speak the same "<n>" protocol, so the harness treats both alike.
"""

from __future__ import annotations

import asyncio
import inspect
import json
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


def gil_probe(runner: Runner, seconds: float) -> dict[str, float]:
    """How long the GIL is held per send, seen by a pure-Python counting thread.

    The counter's rate while the main thread sleeps is its full speed; while the main thread
    sends, every moment the counter is stalled is GIL held by (or handed over to) the sender.
    held-per-send = (1 - busy_rate / idle_rate) x elapsed / sends.
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

    idle_s, idle_n, _ = with_counter(lambda: time.sleep(seconds) or 0)

    def sending() -> int:
        sent, t_end = 0, time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            sent += runner.run(10)
        return sent

    busy_s, busy_n, sends = with_counter(sending)
    idle_rate, busy_rate = idle_n / idle_s, busy_n / busy_s
    held = max(0.0, 1.0 - busy_rate / idle_rate)
    return {
        "idle_rate": idle_rate,
        "busy_rate": busy_rate,
        "held_fraction": held,
        "sends": sends,
        "sends_per_s": sends / busy_s,
        "gil_us_per_send": held * busy_s / max(sends, 1) * 1e6,
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

"""S5: steadiness. Leak check: RSS after N sends minus RSS after 1,000, against nginx over
HTTP/1.1 (the fastest path, so the most sends per second). GIL: a pure-Python counting thread's
rate while the main thread sends, against its rate while the main thread sleeps (see
worker.gil_probe), against a 1 ms latencyd with the process free to use both CPUs; the same
probe for the peers. Beside it, for libcurl-based clients, the direct figure: wall time per
send minus libcurl's own transfer time.
"""

from __future__ import annotations

from typing import Any

from ..common import Target
from ..procs import python_worker
from ..servers import Latencyd, NginxEndpoints
from . import Settings

GRAPHSEND = "graphsend Client.send"
LEAK_CLIENTS = (GRAPHSEND, "graphsend send_message")
FIRST = 1_000
CHUNK = 10_000
GIL_LATENCY = 0.001
GIL_ALONE_SENDS = 300


def run(ep: NginxEndpoints, settings: Settings, log: Any = print) -> dict[str, Any]:
    target = Target(ep.http)
    leak: dict[str, Any] = {}
    for client in LEAK_CLIENTS:
        total = settings.s5_sends if client == GRAPHSEND else settings.s5_sends_other
        with python_worker(client, "sequential", target).wait_ready() as p:
            if p.na:
                leak[client] = {"na": p.na}
                continue
            ok = p.run(FIRST).ok
            first = p.rss_kb()
            done, samples = FIRST, [(FIRST, first)]
            while done < total:
                n = min(CHUNK, total - done)
                ok += p.run(n).ok
                done += n
                samples.append((done, p.rss_kb()))
            leak[client] = {
                "sends": done,
                "failed": done - ok,
                "rss_first_kb": first,
                "rss_last_kb": samples[-1][1],
                "growth_mb": (samples[-1][1] - first) / 1024,
                "samples": samples,
            }
            log(f"S5 leak {client}: {leak[client]['growth_mb']:+.2f} MB over {done} sends")
    gil: dict[str, Any] = {}
    # The GIL probe needs a CPU for the counting thread and one for the sender, so it runs
    # unpinned against latencyd (1 ms, next to no CPU) rather than nginx: otherwise the probe
    # would count CPU contention (libcurl's work, nginx's) as GIL time.
    with Latencyd(GIL_LATENCY) as lat:
        target = Target(lat.base_url)
        for client in (GRAPHSEND, *settings.s5_gil_peers):
            with python_worker(client, "sequential", target, cpus="any").wait_ready() as p:
                if p.na:
                    gil[client] = {"na": p.na}
                    continue
                p.run(100)
                before = p.transfer_seconds()
                seconds = p.run(GIL_ALONE_SENDS).seconds
                after = p.transfer_seconds()
                row = gil[client] = p.gil(settings.s5_gil_seconds)
                row["alone_sends_per_s"] = GIL_ALONE_SENDS / seconds
                if before is not None and after is not None:
                    # Direct estimate: wall time per send outside libcurl's transfer.
                    outside = seconds - (after - before)
                    row["outside_transfer_us"] = outside / GIL_ALONE_SENDS * 1e6
                log(
                    f"S5 GIL {client}: {row['gil_us_per_send']:.1f} us/send (probe), "
                    f"{row.get('outside_transfer_us', float('nan')):.1f} us outside transfer, "
                    f"{row['sends_per_s']:.0f} sends/s beside a busy thread "
                    f"({row['alone_sends_per_s']:.0f} alone)"
                )
    return {"leak": leak, "gil": gil}

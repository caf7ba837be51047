"""S5: steadiness. Leak check: RSS after N sends minus RSS after 1,000, against nginx over
HTTP/1.1 (the fastest path, so the most sends per second). GIL: a pure-Python counting thread's
rate while the main thread sends, against its rate while the main thread sleeps (see
worker.gil_probe); the same probe for the peers that run in threads.
"""

from __future__ import annotations

from typing import Any

from ..common import Target
from ..procs import python_worker
from ..servers import NginxEndpoints
from . import Settings

GRAPHSEND = "graphsend Client.send"
LEAK_CLIENTS = (GRAPHSEND, "graphsend send_message")
FIRST = 1_000
CHUNK = 10_000


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
    for client in (GRAPHSEND, *settings.s5_gil_peers):
        with python_worker(client, "sequential", target).wait_ready() as p:
            if p.na:
                gil[client] = {"na": p.na}
                continue
            p.run(500)
            before = p.transfer_seconds()
            seconds = p.run(2000).seconds
            after = p.transfer_seconds()
            gil[client] = p.gil(settings.s5_gil_seconds)
            gil[client]["alone_sends_per_s"] = 2000 / seconds
            if before is not None and after is not None:
                # Direct estimate: wall time per send outside libcurl's transfer (GIL held).
                gil[client]["outside_transfer_us"] = (seconds - (after - before)) / 2000 * 1e6
            log(
                f"S5 GIL {client}: {gil[client]['gil_us_per_send']:.1f} us/send held, "
                f"{gil[client]['sends_per_s']:.0f} sends/s beside a busy thread "
                f"({gil[client]['alone_sends_per_s']:.0f} alone)"
            )
    return {"leak": leak, "gil": gil}

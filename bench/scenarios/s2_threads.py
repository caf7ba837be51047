"""S2: one Client shared by 1/2/4/8/16 threads: sends per second and scaling over one thread.

Against the 50 ms server each thread spends its time waiting, so with the GIL released during
the transfer, 8 threads should send nearly 8x as fast as one. Against nginx the work is CPU on
two cores, which shows what the Python layer costs when the network does not hide it.
"""

from __future__ import annotations

from typing import Any

from ..clients import THREADED
from ..common import Target
from ..procs import python_worker
from ..servers import Latencyd, NginxEndpoints
from . import Settings, median

LATENCY = 0.050
GRAPHSEND = "graphsend Client.send"


def run(ep: NginxEndpoints, settings: Settings, log: Any = print) -> dict[str, Any]:
    out: dict[str, Any] = {"latency_ms": LATENCY * 1000, "servers": {}}
    clients = list(THREADED) if settings.s2_peers else [GRAPHSEND]
    with Latencyd(LATENCY) as lat:
        servers = {"latency 50 ms": Target(lat.base_url), "nginx HTTP/1.1": Target(ep.http)}
        for server, target in servers.items():
            by_client: dict[str, Any] = {}
            for client in clients:
                by_client[client] = _client_rows(client, target, server, settings)
                rows = by_client[client]
                log(
                    f"S2 {server} {client}: "
                    + ", ".join(
                        f"{t}T {r['median_rps']:.0f}/s" if "median_rps" in r else f"{t}T n/a"
                        for t, r in rows.items()
                    )
                )
            out["servers"][server] = by_client
    return out


def _client_rows(client: str, target: Target, server: str, settings: Settings) -> dict[int, Any]:
    rows: dict[int, Any] = {}
    latency_bound = server.startswith("latency")
    for threads in settings.s2_threads:
        with python_worker(client, "threaded", target, threads=threads).wait_ready() as p:
            if p.na:
                rows[threads] = {"na": p.na}
                continue
            if latency_bound:
                p.run(1)
                n = settings.s2_latency_sends
            else:
                p.run(20)
                rate = threads * 50 / p.run(50).seconds
                n = max(20, round(settings.s2_round_seconds * rate / threads))
            rates, failed = [], 0
            for _ in range(settings.s2_rounds):
                got = p.run(n)
                rates.append(threads * n / got.seconds)
                failed += threads * n - got.ok
            rows[threads] = {"median_rps": median(rates), "rounds_rps": rates, "n": n}
            rows[threads]["failed"] = failed
    one = rows.get(1, {}).get("median_rps")
    for row in rows.values():
        if one and "median_rps" in row:
            row["scaling"] = row["median_rps"] / one
    return rows

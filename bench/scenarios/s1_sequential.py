"""S1: sequential sends on one kept-alive connection, per protocol: microseconds per send.

All clients of a protocol run in their own processes, started together and warmed up; then
rounds are interleaved (each client in turn, a fresh order every round) so drift hits all alike.
Each round is sized from a calibration pass to take about the same time for every client.
"""

from __future__ import annotations

import random
from typing import Any

from ..clients import SEQUENTIAL, selected
from ..common import Target
from ..procs import Proc, c_program, python_worker, start_all
from ..servers import NginxEndpoints
from . import Settings, median, shuffled

C_CLIENT = "C libcurl (easy handle)"
WARMUP_SENDS = 200
CALIBRATION_SENDS = 100


def protocols(ep: NginxEndpoints) -> dict[str, Target]:
    return {
        "HTTP/1.1": Target(ep.http),
        "HTTPS/1.1": Target(ep.https, cafile=ep.cafile),
        "HTTP/2": Target(ep.h2, cafile=ep.cafile, http2=True),
    }


def run(ep: NginxEndpoints, settings: Settings, log: Any = print) -> dict[str, Any]:
    # nginx shares the clients' CPU here: a send is then the client's work plus nginx's on one
    # core, with no cross-CPU wake-ups, whose latency on a VM is large and erratic and would
    # sit in every figure alike (the other CPU keeps the harness and the machine's other load).
    if ep.server is not None:
        ep.server.move_to("client")
    try:
        return _run(ep, settings, log)
    finally:
        if ep.server is not None:
            ep.server.move_to("server")


def _run(ep: NginxEndpoints, settings: Settings, log: Any) -> dict[str, Any]:
    rng = random.Random(settings.seed)
    out: dict[str, Any] = {}
    for proto, target in protocols(ep).items():
        procs: dict[str, Proc] = {C_CLIENT: c_program(C_CLIENT, "sendloop", target)}
        for name in selected(SEQUENTIAL):
            procs[name] = python_worker(name, "sequential", target)
        start_all(procs)
        rows: dict[str, Any] = {}
        sizes: dict[str, int] = {}
        try:
            for name, p in procs.items():
                if p.na:
                    rows[name] = {"na": p.na}
                    continue
                try:
                    p.run(WARMUP_SENDS)
                    seconds = p.run(CALIBRATION_SENDS).seconds
                except RuntimeError as e:
                    rows[name] = {"na": f"error: {e}"}
                    continue
                per_send = seconds / CALIBRATION_SENDS
                sizes[name] = max(20, min(50_000, round(settings.s1_round_seconds / per_send)))
                rows[name] = {"rounds_us": [], "cpu_us": [], "n": sizes[name], "failed": 0}
            for _ in range(settings.s1_rounds):
                for name in shuffled(list(sizes), rng):
                    if "na" in rows[name]:
                        continue
                    try:
                        got = procs[name].run(sizes[name])
                    except RuntimeError as e:
                        rows[name] = {"na": f"error: {e}"}
                        continue
                    rows[name]["rounds_us"].append(got.seconds / sizes[name] * 1e6)
                    rows[name]["cpu_us"].append(got.cpu / sizes[name] * 1e6)
                    rows[name]["failed"] += sizes[name] - got.ok
        finally:
            for p in procs.values():
                p.close()
        for row in rows.values():
            if row.get("rounds_us"):
                row["median_us"] = median(row["rounds_us"])
                row["median_cpu_us"] = median(row["cpu_us"])
        c_row = rows.get(C_CLIENT, {})
        for row in rows.values():
            if c_row.get("median_us") and "median_us" in row:
                row["ratio_to_c"] = row["median_us"] / c_row["median_us"]
                row["cpu_over_c_us"] = row["median_cpu_us"] - c_row["median_cpu_us"]
                row["cpu_ratio_to_c"] = row["median_cpu_us"] / c_row["median_cpu_us"]
        out[proto] = rows
        log(f"S1 {proto}: " + ", ".join(_short(n, r) for n, r in rows.items()))
    return out


def _short(name: str, row: dict[str, Any]) -> str:
    return f"{name} {row['median_us']:.1f}us" if "median_us" in row else f"{name} n/a"

"""S3: bulk sends, 2,000 over 100 mailboxes, at most 4 in flight per mailbox, against a server
that answers after 20 ms. Ideal wall time: ceil(20 / 4) = 5 rounds per mailbox x 20 ms = 100 ms.

Every client gets one cold round (fresh connections), then warm rounds interleaved with the other
clients. latencyd counts requests and the peak in flight per mailbox for every round, so a client
that broke the cap (or lost sends) shows up in the table instead of looking fast.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from typing import Any

from ..clients import BULK, selected
from ..common import REPO_DIR, BulkPlan, Target, pin_to
from ..procs import Proc, RoundTimeout, c_program, python_worker, start_all
from ..servers import Latencyd
from . import Settings, median, shuffled

LATENCY = 0.020
PLAN = BulkPlan(mailboxes=100, per_mailbox=20, cap=4)
C_POLL = "C libcurl multi (poll)"
C_SOCKET = "C libcurl multi (socket_action, as Engine)"
PROBE = "graphsend AsyncClient (loop probe)"  # BENCH_CLIENTS selects it by this name


def run(settings: Settings, log: Any = print) -> dict[str, Any]:
    rng = random.Random(settings.seed)
    plan_args = [
        "--mailboxes", str(PLAN.mailboxes), "--per-mailbox", str(PLAN.per_mailbox),
        "--cap", str(PLAN.cap),
    ]  # fmt: skip
    rows: dict[str, Any] = {}
    with Latencyd(LATENCY) as server:
        target = Target(server.base_url)
        procs: dict[str, Proc] = {
            C_POLL: c_program(C_POLL, "sendmulti", target, [*plan_args, "--api", "poll"]),
            C_SOCKET: c_program(C_SOCKET, "sendmulti", target, [*plan_args, "--api", "socket"]),
        }
        for name in selected(BULK):
            procs[name] = python_worker(name, "bulk", target, plan=PLAN)
        start_all(procs)
        try:
            live = []
            limit = settings.s3_round_timeout
            for name, p in procs.items():
                if p.na:
                    rows[name] = {"na": p.na}
                    continue
                rows[name] = {"warm_ms": [], "failed": 0, "peak_per_mailbox": 0, "requests": 0}
                try:
                    cold = rows[name]["cold_ms"] = _round(server, p, rows[name], limit)
                except RoundTimeout:
                    rows[name]["timeout_ms"] = limit * 1000
                    continue
                except RuntimeError as e:
                    rows[name] = {"na": f"error: {e}"}
                    continue
                live.append(name)
                # Very slow peers get fewer warm rounds (at least one) to keep the run bounded.
                budget = settings.s3_client_budget * 1000
                rows[name]["rounds"] = max(1, min(settings.s3_rounds, int(budget // cold)))
            for r in range(settings.s3_rounds):
                for name in shuffled(live, rng):
                    row = rows[name]
                    if "na" in row or "timeout_ms" in row or r >= row["rounds"]:
                        continue
                    try:
                        row["warm_ms"].append(_round(server, procs[name], row, limit))
                    except RoundTimeout:
                        row["timeout_ms"] = limit * 1000
                    except RuntimeError as e:
                        rows[name] = {"na": f"error: {e}"}
        finally:
            for p in procs.values():
                p.close()
        probe = _loop_probe(server, settings, log) if selected({PROBE: ""}) else None
    ideal_ms = PLAN.ideal_seconds(LATENCY) * 1000
    for row in rows.values():
        if row.get("warm_ms"):
            row["median_ms"] = median(row["warm_ms"])
            row["median_cpu_ms"] = median(row["cpu_ms"][1:] or row["cpu_ms"])  # warm rounds
            row["ratio_to_ideal"] = row["median_ms"] / ideal_ms
    # Every peer row counts, each pool size tried (the report names the best per peer).
    peers = [
        r["median_ms"]
        for n, r in rows.items()
        if "median_ms" in r and not n.startswith(("graphsend", "C libcurl"))
    ]
    fastest_peer = min(peers) if peers else None
    log(
        "S3: "
        + ", ".join(
            f"{n} {r['median_ms']:.0f}ms" if "median_ms" in r else f"{n} n/a"
            for n, r in rows.items()
        )
    )
    return {
        "plan": {
            "mailboxes": PLAN.mailboxes,
            "per_mailbox": PLAN.per_mailbox,
            "cap": PLAN.cap,
            "latency_ms": LATENCY * 1000,
            "total": PLAN.total,
        },
        "ideal_ms": ideal_ms,
        "fastest_peer_ms": fastest_peer,
        "rows": rows,
        **({"loop_probe": probe} if probe is not None else {}),
    }


def _loop_probe(server: Latencyd, settings: Settings, log: Any) -> dict[str, Any]:
    """bench/loop_probe.py against this latencyd, on the clients' CPU: the worst gap of a 10 ms
    ticker task (and the GIL hold of each drive()) while AsyncClient runs S3's 2,000 sends."""
    rounds = 2 if settings.quick else 5
    argv = [sys.executable, "-m", "bench.loop_probe", "--json", "--rounds", str(rounds)]
    try:
        done = subprocess.run(
            [*argv, "--base-url", server.base_url],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=pin_to("client"),
            check=True,
        )
        found: dict[str, Any] = json.loads(done.stdout)
    except (subprocess.SubprocessError, OSError, ValueError) as e:
        stderr = getattr(e, "stderr", None) or ""
        return {"na": f"loop_probe failed: {e} {stderr[-300:]}".strip()}
    gaps = (f"{m} ticker worst gap {v['ticker_worst_gap_ms']:.1f} ms" for m, v in found.items())
    log("S3 loop probe: " + ", ".join(gaps))
    return found


def _round(server: Latencyd, p: Proc, row: dict[str, Any], limit: float) -> float:
    server.reset()
    got = p.run(1, timeout=limit)
    stats = server.stats()
    row["failed"] += PLAN.total - got.ok
    row.setdefault("cpu_ms", []).append(got.cpu * 1000)
    row["requests"] += stats["requests"]
    row["peak_per_mailbox"] = max(row["peak_per_mailbox"], stats["peak_per_mailbox"])
    return got.seconds * 1000

"""Where graphsend's per-send time goes, next to the C loop: a tool for the Python and C layers'
authors. Not part of the suite's results; run it when changing the send path.

    python -m bench.breakdown [--rounds 9] [--sends 2000]

Against nginx over HTTP/1.1, in interleaved rounds, it times the same sends peeled layer by
layer, wall and CPU per send (each step's CPU is relative to the row above):
  C sendloop                     c/sendloop.c, one easy handle (the floor)
  Handle.send, fixed URL ...     graphsend's native Handle in a Python loop, one prebuilt URL and
                                 header tuple: the C layer and the call, without and with the
                                 Share and signal checks that Client's main-thread handle has
  + URL and crid built per send  what Client must add: path encoding, a new client-request-id
  Client.send                    the whole thing (plus _handle(), outcome() -> Receipt, log check)
  send_message                   plus the cached-Client lookup and token validation
and, with no network at all, Client.send over a stub Handle that returns a canned 202 result
(the Python layer alone), with each of its steps timed on its own.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import timeit
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .common import RESULTS_DIR, TOKEN, Target, cpus_for, draft_id
from .machine import describe
from .procs import c_program
from .servers import Nginx

CANNED = (202, {"request-id": "r", "date": "d"}, b"", 0.0001, 0, "", True)


class StubHandle:
    """Stands in for _native.Handle: the Python layer's cost with no transfer under it."""

    def send(self, url: str, headers: tuple[str, ...]) -> tuple[Any, ...]:
        return CANNED


def _per_call(fn: Callable[[], object], n: int = 20000) -> float:
    """Microseconds per call, best of 5 (no network: noise only ever adds)."""
    return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6


def python_layer() -> list[tuple[str, float]]:
    import graphsend
    from graphsend import _log, _request
    from graphsend._outcome import outcome

    client = graphsend.Client(TOKEN, base_url="http://127.0.0.1:9", http2=False)
    client._handle()  # creates the real per-thread handle...
    client._local.handle = StubHandle()  # ...then swaps the stub in
    mid = draft_id(1)
    tokens = client._tokens

    def send_message() -> object:
        return graphsend.send_message(mid, token=TOKEN, base_url=client.base_url)

    try:  # the first call creates send_message's cached Client (its send fails: port 9)...
        send_message()
    except graphsend.SendError:
        pass
    for cached in graphsend._send._clients.values():  # type: ignore[attr-defined]
        cached._local.handle = StubHandle()  # ...which gets the stub too
    rows = [
        ("Client.send over a stub Handle (Python layer)", _per_call(lambda: client.send(mid))),
        ("send_message over a stub Handle", _per_call(send_message)),
    ]
    steps: list[tuple[str, Callable[[], object]]] = [
        ("  send_path(None, id)", lambda: _request.send_path(None, mid)),
        ("  client_request_id_or_new(None)", lambda: _request.client_request_id_or_new(None)),
        ("  client._handle()", client._handle),
        ("  tokens.header()", tokens.header),
        ("  outcome(result, crid) -> Receipt", lambda: outcome(CANNED, "crid")),  # type: ignore[arg-type]
        ("  _log.debug_enabled()", _log.debug_enabled),
    ]
    rows += [(name, _per_call(fn)) for name, fn in steps]
    return rows


def network(rounds: int, sends: int) -> list[tuple[str, float, float]]:
    import graphsend
    from graphsend import _native, _request

    with Nginx() as ep:
        # As in S1: nginx, the C program and this process share the client CPU.
        cpus = cpus_for("client")
        if cpus is not None and ep.server is not None:
            ep.server.move_to("client")
            os.sched_setaffinity(0, cpus)
        target = Target(ep.http)
        client = graphsend.Client(TOKEN, base_url=ep.http, http2=False)
        opts = dict(client._options)
        prefix, auth = client._prefix, client._tokens.header()
        fixed_url = prefix + _request.send_path(None, draft_id(1))
        # As Client's handle in the main thread: with its Share and signal checks.
        handle = _native.Handle(check_signals=True, share=_native.Share(), **opts)
        bare = _native.Handle(check_signals=False, share=None, **opts)
        ids = [draft_id(i) for i in range(sends)]

        def fixed(h: Any) -> Callable[[], None]:
            def run() -> None:
                for _ in ids:
                    h.send(fixed_url, (auth, "client-request-id: 0"))

            return run

        def built_per_send() -> None:
            for mid in ids:
                crid = _request.client_request_id_or_new(None)
                handle.send(
                    prefix + _request.send_path(None, mid), (auth, "client-request-id: " + crid)
                )

        def client_loop() -> None:
            for mid in ids:
                client.send(mid)

        def send_message_loop() -> None:
            for mid in ids:
                graphsend.send_message(mid, token=TOKEN, base_url=ep.http)

        variants: dict[str, Callable[[], None]] = {
            "Handle.send, fixed URL, no Share/signals": fixed(bare),
            "Handle.send, fixed URL (as Client's handle)": fixed(handle),
            "+ URL and client-request-id built per send": built_per_send,
            "Client.send": client_loop,
            "send_message": send_message_loop,
        }
        c = c_program("C sendloop", "sendloop", target)
        c.run(500)
        for fn in variants.values():
            fn()  # warm-up: connections open, caches filled
        walls: dict[str, list[float]] = {k: [] for k in ["C sendloop (floor)", *variants]}
        cpus: dict[str, list[float]] = {k: [] for k in walls}
        for _ in range(rounds):
            got = c.run(sends)
            walls["C sendloop (floor)"].append(got.seconds / sends * 1e6)
            cpus["C sendloop (floor)"].append(got.cpu / sends * 1e6)
            for name, fn in variants.items():
                c0, t0 = time.process_time(), time.perf_counter()
                fn()
                t1, c1 = time.perf_counter(), time.process_time()
                walls[name].append((t1 - t0) / sends * 1e6)
                cpus[name].append((c1 - c0) / sends * 1e6)
        c.close()
        client.close()
    return [(k, statistics.median(walls[k]), statistics.median(cpus[k])) for k in walls]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--sends", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "breakdown.md")
    args = ap.parse_args()
    m = describe("")
    lines = [
        "# Where a graphsend send's time goes",
        "",
        f"`make -C bench profile` (bench/breakdown.py), {args.rounds} interleaved rounds of "
        f"{args.sends} sends, {datetime.now(timezone.utc).isoformat(timespec='seconds')}, "
        f"graphsend tree {m['graphsend tree']}, {m['cpu']}, Python {m['python']}, "
        f"{m['libcurl (C programs, build)']}. A run of its own: compare rows within this file "
        "only. CPU step = this row's client CPU minus the row above.",
        "",
        "| against nginx HTTP/1.1 (co-located) | wall us/send | client CPU us/send | CPU step |",
        "| --- | --- | --- | --- |",
    ]
    prev = None
    for name, wall, cpu in network(args.rounds, args.sends):
        step = "" if prev is None else f"{cpu - prev:+.1f}"
        lines.append(f"| {name} | {wall:.1f} | {cpu:.1f} | {step} |")
        prev = cpu
    lines += ["", "| Python layer, no network (timeit, best of 5) | us/call |", "| --- | --- |"]
    lines += [f"| {name} | {us:.2f} |" for name, us in python_layer()]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()

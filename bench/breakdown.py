"""Where graphsend's per-send time goes, next to the C loop: a tool for the Python and C layers'
authors. Not part of the suite's results; run it when changing the send path.

    python -m bench.breakdown [--rounds 15] [--sends 2000] [--instructions 500]

Against nginx over HTTP/1.1, in interleaved rounds, it times the same sends peeled layer by
layer, wall and CPU per send (each step's CPU is relative to the row above):
  C sendloop                     c/sendloop.c, one easy handle (the floor)
  C sendloop inside this process the same loop as a library called through ctypes: what the
                                 Python process costs, apart from Python code per send
  Handle.send, fixed URL ...     graphsend's native Handle in a Python loop, one prebuilt URL and
                                 header tuple: the C layer and the call, without and with the
                                 Share and signal checks that Client's main-thread handle has
  Handle.send_draft              what Client.send calls: the path, the client-request-id and,
                                 on 202, the Receipt are built in C per send
  Client.send                    the whole thing (plus _handle(), tokens, the log check)
  send_message                   plus the cached-Client lookup and token validation
then, when valgrind is installed, the instructions each row executes per send under callgrind
(deterministic, where time on a shared VM is not: it separates work done from cache and
scheduling effects), and, with no network at all, Client.send over a stub Handle that returns a
canned Receipt (the Python layer alone), with each of its steps timed on its own.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .common import RESULTS_DIR, TOKEN, Target, cpus_for, draft_id
from .machine import describe
from .procs import BIN_DIR, c_argv, c_program
from .servers import Nginx


class StubHandle:
    """Stands in for _native.Handle: the Python layer's cost with no transfer under it."""

    def __init__(self) -> None:
        from graphsend import Receipt

        self.receipt = Receipt(202, "r", "c", "d", 0.0001)

    def send_draft(self, prefix: str, user: str | None, mid: str, auth: str, crid: None) -> Any:
        return self.receipt


def _per_call(fn: Callable[[], object], n: int = 20000) -> float:
    """Microseconds per call, best of 5 (no network: noise only ever adds)."""
    return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6


def python_layer() -> list[tuple[str, float]]:
    import graphsend
    from graphsend import _log, _native

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
    for cached in graphsend._drivers.send._clients.values():  # type: ignore[attr-defined]
        cached._local.handle = StubHandle()  # ...which gets the stub too
    rows = [
        ("Client.send over a stub Handle (Python layer)", _per_call(lambda: client.send(mid))),
        ("send_message over a stub Handle", _per_call(send_message)),
    ]
    steps: list[tuple[str, Callable[[], object]]] = [
        ("  client._handle()", client._handle),
        ("  tokens.header()", tokens.header),
        ("  _log.debug_enabled()", _log.debug_enabled),
        ("  (in send_draft) _native.send_path(None, id)", lambda: _native.send_path(None, mid)),
        ("  (in send_draft) new_client_request_id()", _native.new_client_request_id),
    ]
    rows += [(name, _per_call(fn)) for name, fn in steps]
    return rows


C_FLOOR = "C sendloop (floor)"


_KEEP: list[Any] = []  # argv strings the in-process C loop points into


def in_process_c(base_url: str) -> Callable[[list[str]], None]:
    """c/sendloop.c's loop run inside this Python process (libsendloop.so through ctypes): the
    cost of the process itself, apart from the Python code per send."""
    lib = ctypes.CDLL(str(BIN_DIR / "libsendloop.so"))
    args = [a.encode() for a in c_argv("sendloop", Target(base_url))]
    argv = (ctypes.c_char_p * len(args))(*args)
    _KEEP.extend([args, argv])
    lib.sendloop_run.restype = ctypes.c_long
    lib.sendloop_run.argtypes = [ctypes.c_long]
    if lib.sendloop_init(len(args), argv) != 0:
        raise RuntimeError("sendloop_init failed")

    def run(ids: list[str]) -> None:
        lib.sendloop_run(len(ids))

    return run


def loops(base_url: str) -> dict[str, Callable[[list[str]], None]]:
    """The rows run in this process, each a loop that sends once per draft id it is given."""
    import graphsend
    from graphsend import _native

    client = graphsend.Client(TOKEN, base_url=base_url, http2=False)
    opts = dict(client._options)
    prefix, auth = client._prefix, client._tokens.header()
    fixed_url = prefix + _native.send_path(None, draft_id(1))
    # As Client's handle in the main thread: with its Share and signal checks.
    handle = _native.Handle(check_signals=True, share=_native.Share(), **opts)
    bare = _native.Handle(check_signals=False, share=None, **opts)

    def fixed(h: Any) -> Callable[[list[str]], None]:
        def run(ids: list[str]) -> None:
            for _ in ids:
                h.send(fixed_url, (auth, "client-request-id: 0"))

        return run

    def send_draft(ids: list[str]) -> None:
        for mid in ids:
            handle.send_draft(prefix, None, mid, auth, None)

    def client_loop(ids: list[str]) -> None:
        for mid in ids:
            client.send(mid)

    def send_message_loop(ids: list[str]) -> None:
        for mid in ids:
            graphsend.send_message(mid, token=TOKEN, base_url=base_url)

    return {
        "C sendloop inside this Python process (ctypes)": in_process_c(base_url),
        "Handle.send, fixed URL, no Share/signals": fixed(bare),
        "Handle.send, fixed URL (as Client's handle)": fixed(handle),
        "Handle.send_draft (request and Receipt built in C)": send_draft,
        "Client.send": client_loop,
        "send_message": send_message_loop,
    }


def network(base_url: str, rounds: int, sends: int) -> list[tuple[str, float, float]]:
    """Wall and CPU time per send, C and graphsend in interleaved rounds."""
    variants = loops(base_url)
    ids = [draft_id(i) for i in range(sends)]
    c = c_program("C sendloop", "sendloop", Target(base_url))
    c.run(500)
    for fn in variants.values():
        fn(ids)  # warm-up: connections open, caches filled
    walls: dict[str, list[float]] = {k: [] for k in [C_FLOOR, *variants]}
    cpus: dict[str, list[float]] = {k: [] for k in walls}
    for _ in range(rounds):
        got = c.run(sends)
        walls[C_FLOOR].append(got.seconds / sends * 1e6)
        cpus[C_FLOOR].append(got.cpu / sends * 1e6)
        for name, fn in variants.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn(ids)
            t1, c1 = time.perf_counter(), time.process_time()
            walls[name].append((t1 - t0) / sends * 1e6)
            cpus[name].append((c1 - c0) / sends * 1e6)
    c.close()
    return [(k, statistics.median(walls[k]), statistics.median(cpus[k])) for k in walls]


WARM = 50  # sends before the counted ones: connection open, lazy imports done


def _callgrind(argv: list[str], stdin: str = "") -> int:
    """Instructions the whole process executed under callgrind."""
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise RuntimeError(f"no callgrind total in: {out.stderr[-500:]}")
    return int(found.group(1))


def instructions(base_url: str, sends: int) -> list[tuple[str, float]]:
    """Instructions per send: deterministic where time on a shared VM is not. Each row runs
    twice, warm-up only and warm-up plus `sends`, and the difference is divided by `sends`."""
    c = c_argv("sendloop", Target(base_url))
    rows = [(C_FLOOR, _callgrind(c, f"{WARM}\n{sends}\n") - _callgrind(c, f"{WARM}\n"))]
    child = [sys.executable, "-m", "bench.breakdown", "--base", base_url, "--child"]
    for name in loops(base_url):
        counted = _callgrind([*child, name, "--sends", str(sends)])
        rows.append((name, counted - _callgrind([*child, name, "--sends", "0"])))
    return [(name, total / sends) for name, total in rows]


def run_child(base_url: str, name: str, sends: int) -> None:
    """One row's loop, for instructions(): WARM sends, then `sends` more."""
    loop = loops(base_url)[name]
    ids = [draft_id(i) for i in range(WARM + sends)]
    loop(ids[:WARM])
    loop(ids[WARM:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--sends", type=int, default=2000)
    ap.add_argument("--instructions", type=int, default=500, help="sends counted under callgrind")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "breakdown.md")
    ap.add_argument("--base", help=argparse.SUPPRESS)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_child(args.base, args.child, args.sends)
        return
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
    with Nginx() as ep:
        # As in S1: nginx, the C program and this process share the client CPU.
        cpus = cpus_for("client")
        if cpus is not None and ep.server is not None:
            ep.server.move_to("client")
            os.sched_setaffinity(0, cpus)
        prev = None
        for name, wall, cpu in network(ep.http, args.rounds, args.sends):
            step = "" if prev is None else f"{cpu - prev:+.1f}"
            lines.append(f"| {name} | {wall:.1f} | {cpu:.1f} | {step} |")
            prev = cpu
        if shutil.which("valgrind"):
            counted = instructions(ep.http, args.instructions)
            floor = counted[0][1]
            lines += [
                "",
                f"| instructions per send (callgrind, {args.instructions} sends) "
                "| thousands | ratio to C |",
                "| --- | --- | --- |",
            ]
            lines += [f"| {name} | {n / 1000:.1f} | {n / floor:.3f} |" for name, n in counted]
    lines += ["", "| Python layer, no network (timeit, best of 5) | us/call |", "| --- | --- |"]
    lines += [f"| {name} | {us:.2f} |" for name, us in python_layer()]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()

"""Turn one run's results (results.json) into results.md and results.png.

python -m bench.report [DIR]      re-render from DIR/results.json (default bench/results)
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

from .common import RESULTS_DIR

GS_CLIENT = "graphsend Client.send"
GS_ASYNC = "graphsend AsyncClient.send"
GS_SEND_MESSAGE = "graphsend send_message"
C_CLIENT = "C libcurl (easy handle)"
GS_MANY = "graphsend send_many"
GS_MANY_PORTABLE = "graphsend send_many (portable wait)"
GS_GATHER = "graphsend AsyncClient.send + gather"
GS_ASYNC_MANY = "graphsend AsyncClient.send_many"

# S3 peers run at several pool sizes: "asyncio + httpx (pool 64)", "threads + requests (64
# threads)"; a name without one is the scenario's own setting (400 connections).
_SETTING = re.compile(r"^(?P<peer>.*?) \((?P<setting>pool \d+|\d+ threads)\)$")


def _peer_setting(name: str) -> tuple[str, str | None]:
    """(peer, its setting) of an S3 row; the setting is None for graphsend and C rows."""
    found = _SETTING.match(name)
    if found:
        return found["peer"], found["setting"]
    if name.startswith(("graphsend", "C libcurl")):
        return name, None
    return name, "400 threads" if name.startswith("threads") else "pool 400"


def best_rows(rows: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any], list[str]]]:
    """Each S3 client once: graphsend and C rows as they are, each peer at its fastest setting
    (warm median; a setting that did not finish is never the best when another did). Maps the
    display name to (the row's name, the row, the other settings tried)."""
    groups: dict[str, list[str]] = {}
    for name in rows:
        groups.setdefault(_peer_setting(name)[0], []).append(name)
    out: dict[str, tuple[str, dict[str, Any], list[str]]] = {}
    for peer, names in groups.items():
        setting = _peer_setting(names[0])[1]
        if setting is None or len(names) == 1:
            for name in names:
                shown = name if setting is None else f"{peer} ({_peer_setting(name)[1]})"
                out[shown] = (name, rows[name], [])
            continue
        ranked = sorted(names, key=lambda n: rows[n].get("median_ms", math.inf))
        best = ranked[0]
        out[f"{peer} ({_peer_setting(best)[1]}, best of {len(names)})"] = (
            best,
            rows[best],
            ranked[1:],
        )
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _num(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:,.{digits}f}"


def _na(row: dict[str, Any]) -> str:
    reason = str(row.get("na", "n/a"))
    if reason.startswith("not built yet"):
        return "n/a (not built yet)"
    return f"n/a ({reason[:80]})"


# ---- targets ---------------------------------------------------------------------------------


def _transitive(m: dict[str, Any]) -> str:
    versions = m.get("transitive_versions")
    if not versions:
        return (
            "not recorded by this run (httpcore, anyio, sniffio, h11, hpack, ... decide some "
            "peers' results; the harness records them from now on)"
        )
    return ", ".join(f"{k} {v}" for k, v in versions.items())


def _breakdown_tree(out: Path) -> str | None:
    """The tree breakdown.md (a run of its own, `make -C bench profile`) measured, if any."""
    try:
        text = (out / "breakdown.md").read_text()
    except OSError:
        return None
    found = re.search(r"graphsend tree (\w+)", text)
    return found.group(1) if found else None


def _reading_the_misses(r: dict[str, Any], out: Path = RESULTS_DIR) -> list[str]:
    """What limits the targets on this machine, from this run's own figures."""
    lines = []
    for proto, rows in r.get("s1", {}).items():
        c, gs = rows.get(C_CLIENT, {}), rows.get(GS_CLIENT, {})
        if not c.get("rounds_us") or not gs.get("rounds_us"):
            continue
        lo, hi = min(c["rounds_us"]), max(c["rounds_us"])
        best = min(gs["rounds_us"]) / lo
        wide = ", wider than the 10% the target allows" if hi > 1.1 * lo else ""
        lines.append(
            f"- S1 {proto}: the C program's own rounds ranged {_num(lo)}-{_num(hi)} us per send "
            f"in this run{wide}; fastest round against fastest round, Client.send is {best:.2f}x C."
        )
    if lines:
        lines.append(
            "- S1 ratios are wall time per send with nginx on the client's CPU (S1's placement): "
            "nginx's work, the same for every client, is in both sides of the ratio. The client "
            "CPU ratio in brackets compares the clients' own work; quote both."
        )
        tree = _breakdown_tree(out)
        this = r.get("machine", {}).get("graphsend tree", "unknown")
        whose = (
            f" It is a run of its own: the current file measured tree {tree}, this run tree "
            f"{this}; compare figures within one file only."
            if tree
            else ""
        )
        lines.append(
            "- S1, without the noise: instructions per send under callgrind are deterministic. "
            "`make -C bench profile` counts them for each layer (`bench/results/breakdown.md`)."
            + whose
        )
    s3 = r.get("s3", {})
    c_multi = s3.get("rows", {}).get("C libcurl multi (socket_action, as Engine)", {})
    c_ratio = c_multi.get("ratio_to_ideal")
    if c_ratio:
        cpu = _num(c_multi.get("median_cpu_ms"), 0)
        for who, target in (("send_many", 1.2), ("AsyncClient", 1.3)):
            if c_ratio > target:
                verdict = "so no client on libcurl can meet it on this machine"
            else:
                verdict = f"leaving {target - c_ratio:.2f}x of the ideal for all that is above C"
            lines.append(
                f"- S3 {who}: the target is {target}x the ideal; libcurl driven from C with the "
                f"same engine design takes {c_ratio:.2f}x here ({cpu} ms of CPU for 2,000 "
                f"transfers on the client's one CPU), {verdict}."
            )
    return ["", "Reading the misses:", "", *lines, ""] if lines else []


def targets(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(target, measured, pass/miss) rows; "n/a" when the figure is missing."""
    out: list[tuple[str, str, str]] = []

    def check(name: str, value: float | None, ok: bool | None, shown: str) -> None:
        out.append((name, shown if value is not None else "n/a", _verdict(value, ok)))

    for proto, rows in r.get("s1", {}).items():
        gs, sm = rows.get(GS_CLIENT, {}), rows.get(GS_SEND_MESSAGE, {})
        v = gs.get("ratio_to_c")
        check(f"S1 {proto}: Client.send within 1.10x of C", v, v is not None and v <= 1.10,
              f"{_num(v, 2)}x (client CPU {_num(gs.get('cpu_ratio_to_c'), 2)}x)")  # fmt: skip
        v = sm.get("ratio_to_c")
        check(f"S1 {proto}: send_message within 1.20x of C", v, v is not None and v <= 1.20,
              f"{_num(v, 2)}x (client CPU {_num(sm.get('cpu_ratio_to_c'), 2)}x)")  # fmt: skip
        g = gs.get("median_us")
        for peer, need in (("requests.Session", 5.0), ("httpx.Client", 5.0), ("pycurl", 1.2)):
            p = rows.get(peer, {}).get("median_us")
            if p is None:
                continue
            v = p / g if g else None
            check(f"S1 {proto}: Client.send >= {need:g}x faster than {peer}", v,
                  v is not None and v >= need, f"{_num(v, 2)}x")  # fmt: skip
    s2 = r.get("s2", {}).get("servers", {}).get("latency 50 ms", {}).get(GS_CLIENT, {})
    if s2:
        v = s2.get(8, s2.get("8", {})).get("scaling")
        check("S2 50 ms: 8 threads >= 7x one thread", v, v is not None and v >= 7, f"{_num(v, 2)}x")
    s3 = r.get("s3")
    if s3:
        rows = s3["rows"]
        sm = rows.get("graphsend send_many", {})
        v = sm.get("ratio_to_ideal")
        check("S3 send_many within 1.2x of ideal", v, v is not None and v <= 1.2,
              f"{_num(sm.get('median_ms'), 0)} ms = {_num(v, 2)}x")  # fmt: skip
        fastest = _fastest_peer(s3)
        fp = fastest[1] if fastest else None
        v = fp / sm["median_ms"] if fp and sm.get("median_ms") else None
        check("S3 send_many >= 1.5x faster than the fastest peer", v, v is not None and v >= 1.5,
              f"{_num(v, 2)}x ({fastest[0] if fastest else 'no peer'})")  # fmt: skip
        c_multi = rows.get("C libcurl multi (socket_action, as Engine)", {}).get("median_ms")
        if c_multi and sm.get("median_ms"):
            out.append(
                (
                    "S3 (context) send_many against the C multi program, same engine design",
                    f"{sm['median_ms'] / c_multi:.2f}x (C: {c_multi / s3['ideal_ms']:.2f}x ideal)",
                    "info",
                )
            )
        for name in ("graphsend AsyncClient.send + gather", "graphsend AsyncClient.send_many"):
            v = rows.get(name, {}).get("ratio_to_ideal")
            check(f"S3 {name.removeprefix('graphsend ')} within 1.3x of ideal", v,
                  v is not None and v <= 1.3, f"{_num(v, 2)}x")  # fmt: skip
    _issue10_targets(r, check)
    s4 = r.get("s4", {}).get("imports", {}).get("graphsend", {})
    if "s4" in r:
        v = s4.get("importtime_ms")
        check("S4 import graphsend < 20 ms", v, v is not None and v < 20, f"{_num(v, 1)} ms")
    for name, row in r.get("s5", {}).get("leak", {}).items():
        v = row.get("growth_mb")
        check(f"S5 {name.removeprefix('graphsend ')}: RSS growth < 2 MB over "
              f"{row.get('sends', 0):,} sends", v, v is not None and v < 2,
              f"{_num(v, 2)} MB")  # fmt: skip
    return out


def _issue10_targets(r: dict[str, Any], check: Any) -> None:
    """Issue 10's targets (AsyncClient on the caller's loop, the portable wait), each a ratio
    within this run, appended by check() to the caller's rows."""
    for proto, rows in r.get("s1", {}).items():
        a, c = rows.get(GS_ASYNC, {}), rows.get(GS_CLIENT, {})
        v = _ratio(a.get("median_us"), c.get("median_us"))
        cpu = _ratio(a.get("median_cpu_us"), c.get("median_cpu_us"))
        check(f"S1 {proto}: AsyncClient.send / Client.send <= 1.3", v, v is not None and v <= 1.3,
              f"{_num(v, 2)}x (client CPU {_num(cpu, 2)}x)")  # fmt: skip
    s3 = r.get("s3")
    if s3:
        rows = s3["rows"]
        many = rows.get(GS_MANY, {}).get("median_ms")
        for name, need in ((GS_GATHER, 1.1), (GS_ASYNC_MANY, 1.05), (GS_MANY_PORTABLE, 1.1)):
            v = _ratio(rows.get(name, {}).get("median_ms"), many)
            short = name.removeprefix("graphsend ")
            check(f"S3 {short} / send_many <= {need:g}", v, v is not None and v <= need,
                  f"{_num(v, 2)}x")  # fmt: skip
        probe = s3.get("loop_probe", {})
        gaps = [m["ticker_worst_gap_ms"] for m in probe.values() if isinstance(m, dict)]
        v = max(gaps) if gaps else None
        modes = ", ".join(
            f"{mode} {_num(m['ticker_worst_gap_ms'])}" for mode, m in probe.items()
            if isinstance(m, dict)
        )  # fmt: skip
        check("S3 AsyncClient: a 10 ms ticker's worst gap <= 50 ms", v, v is not None and v <= 50,
              f"{_num(v)} ms ({modes})")  # fmt: skip


def _fastest_peer(s3: dict[str, Any]) -> tuple[str, float] | None:
    """The fastest peer row at its best setting (warm median), by name."""
    found = [
        (shown, row["median_ms"])
        for shown, (_, row, _) in best_rows(s3["rows"]).items()
        if "median_ms" in row and _peer_setting(shown)[1] is not None
    ]
    return min(found, key=lambda x: x[1]) if found else None


def _verdict(value: float | None, ok: bool | None) -> str:
    if value is None:
        return "n/a"
    return "pass" if ok else "**miss**"


# ---- markdown --------------------------------------------------------------------------------


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return [*lines, ""]


def markdown(r: dict[str, Any], out: Path = RESULTS_DIR) -> str:
    m = r["machine"]
    md = [
        "# graphsend benchmark results",
        "",
        f"{r['mode']} run (`make -C bench {'quick' if r['mode'] == 'quick' else 'all'}`), "
        f"started {r['started']}, took {r.get('seconds', 0):.0f} s. All figures come from this "
        "one run; ratios are computed within it. Medians over rounds; rounds of different "
        "clients are interleaved. Numbers from different runs are not comparable.",
        "",
    ]
    md += machine_section(m)
    tg = targets(r)
    if tg:
        md += ["## Targets", ""]
        md += _table(["target", "measured", "result"], [list(t) for t in tg])
        md += _reading_the_misses(r, out)
    if "s1" in r:
        md += _s1(r["s1"])
    if "s2" in r:
        md += _s2(r["s2"])
    if "s3" in r:
        md += _s3(r["s3"])
    if "s4" in r:
        md += _s4(r["s4"])
    if "s5" in r:
        md += _s5(r["s5"])
    md += ["![charts](results.png)", ""]
    return "\n".join(md)


def machine_section(m: dict[str, Any]) -> list[str]:
    """The "## Machine" table of a results file, from machine.describe()."""
    load = ", ".join(f"{x:.2f}" for x in m.get("load_average_at_start", ()))
    rows = _table(
        ["", ""],
        [
            ["CPU", f"{m['cpu']} ({m['cores']} cores)"],
            ["OS / kernel", f"{m['os']} / {m['kernel']}"],
            ["Python", m["python"]],
            ["libcurl (system; C programs)", m["libcurl (C programs, build)"]],
            ["graphsend", m["graphsend"]],
            ["graphsend tree measured", m.get("graphsend tree", "unknown")],
            ["pycurl", m["pycurl"]],
            ["nginx", m["nginx"]],
            ["load average at start", load],
            ["CPU pinning", m.get("pinning", "none")],
            ["peers", ", ".join(f"{k} {v}" for k, v in m["versions"].items())],
            ["what the peers run on", _transitive(m)],
        ],
    )
    return ["## Machine", "", *rows]


def _s1(s1: dict[str, Any]) -> list[str]:
    protos = list(s1)
    names: list[str] = []
    for rows in s1.values():
        names += [n for n in rows if n not in names]
    head = ["client"] + [f"{p} us/send (x C)" for p in protos]
    body = []
    for n in names:
        cells = [n]
        for p in protos:
            row = s1[p].get(n, {})
            if "median_us" in row:
                fail = f", {row['failed']} failed" if row.get("failed") else ""
                cells.append(f"{_num(row['median_us'])} ({_num(row.get('ratio_to_c'), 2)}x{fail})")
            else:
                cells.append(_na(row))
        body.append(cells)
    cpu_head = ["client"] + [f"{p} CPU us/send (+ over C)" for p in protos]
    cpu_body = []
    for n in names:
        cells = [n]
        for p in protos:
            row = s1[p].get(n, {})
            if "median_cpu_us" in row:
                extra = row.get("cpu_over_c_us")
                cells.append(
                    f"{_num(row['median_cpu_us'])} (+{_num(extra)})"
                    if extra is not None
                    else _num(row["median_cpu_us"])
                )
            else:
                cells.append("n/a")
        cpu_body.append(cells)
    return [
        "## S1: sequential sends on one connection",
        "",
        "Microseconds per send (median over interleaved rounds) against one nginx worker on "
        "loopback, and the ratio to the C program (one reused libcurl easy handle, the same "
        "options and headers) in the same run. nginx and the client share one CPU (the harness "
        "and the machine's other load have the other), so a send costs the client's work plus "
        "nginx's, with no cross-CPU wake-ups (on this VM they add 100-200 us of jitter).",
        "",
        *_table(head, body),
        "The client process's own CPU time per send (user + system, all its threads; median "
        "over the same rounds), and how much more than the C program that is. Wall time above "
        "also contains nginx's work; this is the client's cost alone.",
        "",
        *_table(cpu_head, cpu_body),
    ]


def _s2(s2: dict[str, Any]) -> list[str]:
    md = [
        "## S2: one client, many threads",
        "",
        f"Sends per second with N threads sharing one client (median; scaling = rate / rate "
        f"with one thread; then the range over rounds). The latency server answers after "
        f"{s2['latency_ms']:.0f} ms; nginx at once. The client process has one CPU and nginx "
        "the other, so against nginx the threads contend for one core and for the GIL: the "
        "rate moves a lot from round to round (GIL hand-over convoys), read it with the range.",
        "",
    ]
    for server, clients in s2["servers"].items():
        threads: list[str] = []
        for rows in clients.values():
            threads += [str(t) for t in rows if str(t) not in threads]
        head = ["client"] + [f"{t} thr" for t in threads]
        body = []
        for client, rows in clients.items():
            cells = [client]
            for t in threads:
                row = rows.get(t, rows.get(int(t), {}))
                if "median_rps" in row:
                    spread = row.get("rounds_rps") or [row["median_rps"]]
                    cells.append(
                        f"{_num(row['median_rps'], 0)}/s ({_num(row.get('scaling'), 2)}x; "
                        f"{min(spread):,.0f}-{max(spread):,.0f})"
                    )
                else:
                    cells.append(_na(row))
            body.append(cells)
        md += [f"**{server}**", "", *_table(head, body)]
    return md


def _s3(s3: dict[str, Any]) -> list[str]:
    p = s3["plan"]
    rounds = -(-p["per_mailbox"] // p["cap"])
    md = [
        "## S3: bulk sends with a per-mailbox cap",
        "",
        f"{p['total']:,} sends over {p['mailboxes']} mailboxes ({p['per_mailbox']} each), at most "
        f"{p['cap']} in flight per mailbox, server latency {p['latency_ms']:.0f} ms. Ideal: "
        f"ceil({p['per_mailbox']}/{p['cap']}) = {rounds} rounds x {p['latency_ms']:.0f} ms = "
        f"**{s3['ideal_ms']:.0f} ms**. Warm = median of rounds on open connections; cold = the "
        "first round. Peers use a Semaphore(cap) per mailbox and a pool as wide as "
        f"{p['mailboxes'] * p['cap']} connections (the scenario's concurrency) or, where a peer "
        "was run at several pool sizes, the fastest of them (named in the row; the others are "
        "listed below the table); the server checks the peak per mailbox.",
        "",
    ]
    body = []
    others: list[str] = []
    for name, (_, row, rest) in best_rows(s3["rows"]).items():
        if rest:
            tried = ", ".join(
                f"{_peer_setting(n)[1]} "
                + (f"{_num(s3['rows'][n]['median_ms'], 0)} ms" if "median_ms" in s3["rows"][n]
                   else "did not finish")
                for n in rest
            )  # fmt: skip
            others.append(f"- {_peer_setting(rest[0])[0]}: {tried}")
        if "na" in row:
            body.append([name, _na(row), "", "", "", "", "", ""])
            continue
        if "median_ms" not in row:
            t = row.get("timeout_ms", 0) / 1000
            body.append(
                [name, f"> {t:g} s (stopped)", _num(row.get("cold_ms"), 0), "", "", "", "", ""]
            )
            continue
        speed = (
            s3["rows"]["graphsend send_many"].get("median_ms")
            if ("graphsend send_many" in s3["rows"])
            else None
        )
        body.append(
            [
                name,
                _num(row["median_ms"], 0),
                _num(row.get("cold_ms"), 0),
                _num(row.get("median_cpu_ms"), 0),
                f"{_num(row['ratio_to_ideal'], 2)}x",
                f"{_num(row['median_ms'] / speed, 2)}x" if speed else "n/a",
                str(row.get("peak_per_mailbox")),
                f"{row.get('failed', 0)} ({len(row['warm_ms'])} warm rounds)",
            ]
        )
    md += _table(
        [
            "client",
            "warm ms",
            "cold ms",
            "client CPU ms",
            "x ideal",
            "x send_many",
            "peak/mailbox",
            "failed",
        ],
        body,
    )
    if others:
        md += ["Other pool sizes tried (warm median):", "", *others, ""]
    probe = s3.get("loop_probe")
    if probe:
        md += _loop_probe(probe)
    slow = [
        n
        for n, row in s3["rows"].items()
        if ("httpx" in n or "msgraph" in n) and (row.get("ratio_to_ideal") or 0) > 20
    ]
    if slow:
        md += [
            "",
            f"{' and '.join(slow)}: slow because of httpcore (httpx's transport, which "
            "msgraph-sdk uses), not the network: its connection pool does bookkeeping that is "
            "quadratic in the number of connections on every request (encode/httpcore PR #1035), "
            f"with {p['mailboxes'] * p['cap']} connections here, and when sniffio is not "
            "installed each request also pays for a failed `import sniffio`. Their versions are "
            "in the machine table (when the run recorded them).",
        ]
    return md


def _loop_probe(probe: dict[str, Any]) -> list[str]:
    if "na" in probe:
        return ["", f"Loop probe: {_na(probe)}", ""]
    body = [
        [
            mode,
            _num(m.get("wall_ms"), 0),
            _num(m.get("ticker_worst_gap_ms")),
            _num(m.get("gil_held_median_us")),
            _num(m.get("gil_held_p99_us")),
            _num(m.get("batch_start_max_ms"), 2),
        ]
        for mode, m in probe.items()
    ]
    return [
        "",
        "AsyncClient on the event loop (`bench/loop_probe.py`, S3's plan against the same "
        "latencyd, in a process of its own): the worst gap of a task ticking every 10 ms while "
        "the 2,000 sends run, and how long each `LoopEngine.drive()` holds the GIL (it never "
        "releases it, except while it starts a batch of transfers).",
        "",
        *_table(
            [
                "AsyncClient",
                "wall ms",
                "ticker worst gap ms",
                "drive() GIL median us",
                "p99 us",
                "batch start max ms",
            ],
            body,
        ),
    ]


def _s4(s4: dict[str, Any]) -> list[str]:
    body = []
    for name, row in s4["imports"].items():
        if "na" in row:
            body.append([name, _na(row), "", ""])
            continue
        body.append(
            [
                name,
                _num(row["importtime_ms"]),
                _num(row["wall_ms"]),
                _num(row["rss_delta_mb"]),
            ]
        )
    md = [
        "## S4: cost of having it",
        "",
        f"Fresh interpreters, median of {s4['runs']}, bytecode caches present. `-X importtime` = "
        "cumulative time of the modules the statement imported; wall = the import statement "
        "timed in-process; RSS = VmRSS after the import minus a bare interpreter's.",
        "",
        *_table(["import", "-X importtime ms", "wall ms", "RSS +MB"], body),
    ]
    body = [
        [name, str(row["packages"]), _num(row["size_mb"]), ", ".join(row["names"][:60])]
        for name, row in s4["installs"].items()
    ]
    md += [
        "Installed footprint: the requirement closure from installed metadata (markers "
        "evaluated for this interpreter) and the size of the files each distribution recorded "
        "(graphsend: its package directory, as it is installed editable here).",
        "",
        *_table(["install", "packages", "MB", "packages pulled in"], body),
    ]
    return md


def _s5(s5: dict[str, Any]) -> list[str]:
    md = ["## S5: steadiness", ""]
    body = []
    for name, row in s5["leak"].items():
        if "na" in row:
            body.append([name, _na(row), "", "", ""])
            continue
        body.append(
            [
                name,
                f"{row['sends']:,}",
                _num(row["rss_first_kb"] / 1024),
                _num(row["rss_last_kb"] / 1024),
                f"{row['growth_mb']:+.2f}",
            ]
        )
    md += [
        "Leak check against nginx (HTTP/1.1): RSS after 1,000 sends and after all of them.",
        "",
        *_table(["client", "sends", "RSS after 1k MB", "RSS after all MB", "growth MB"], body),
    ]
    body = []
    for name, row in s5["gil"].items():
        if "na" in row:
            body.append([name, _na(row), "", "", "", ""])
            continue
        body.append(
            [
                name,
                _num(row["gil_us_per_send"]),
                f"{row['held_fraction'] * 100:.0f}%",
                _num(row.get("outside_transfer_us")),
                _num(row["alone_sends_per_s"], 0),
                _num(row["sends_per_s"], 0),
            ]
        )
    md += [
        "GIL held per send, two ways, against latencyd answering after 1 ms (so the server "
        "takes next to no CPU) with the client process free to use both CPUs. Counter probe: a "
        "pure-Python thread counts while the main thread sends; the counts it loses against an "
        "idle main thread (phases alternate; median of three pairs), spread over the sends, are "
        "the GIL time each send costs it: the sender holding the GIL plus the hand-overs in "
        "both directions. It is noisy on a shared 2-core machine. "
        "Outside transfer: for the libcurl-based clients, wall time per send (alone) minus the "
        "transfer time libcurl reports (graphsend's Receipt.elapsed, pycurl's TOTAL_TIME), i.e. "
        "the time the client runs Python with the GIL held. With a busy thread beside it, every "
        "return from a GIL-released call waits up to the switch interval (5 ms) to get the GIL "
        "back, which is why sends per second collapse for every client (CPython's convoy effect).",
        "",
        *_table(
            [
                "client",
                "GIL us/send (counter probe)",
                "counter lost",
                "outside transfer us/send",
                "sends/s alone (1 ms server)",
                "sends/s beside busy thread",
            ],
            body,
        ),
    ]
    zeros = [n for n, row in s5["gil"].items() if "na" not in row and not row["gil_us_per_send"]]
    if len(zeros) > 1 or any("graphsend" not in n for n in zeros):
        md += [
            "",
            f"The counter probe reads 0 for {', '.join(zeros)}: below its resolution, it cannot "
            "tell these clients apart (pure-Python clients hold the GIL for their whole send), so "
            "a 0 here is no evidence that a send costs a counting thread nothing. The outside "
            "transfer column is the comparison that separates the libcurl clients.",
        ]
    return md


# ---- chart -----------------------------------------------------------------------------------


def chart(r: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(2, 2, figsize=(15, 11))
    _chart_s1(axes[0][0], r.get("s1"))
    _chart_s2(axes[0][1], r.get("s2"))
    _chart_s3(axes[1][0], r.get("s3"))
    _chart_s4(axes[1][1], r.get("s4"))
    fig.suptitle(f"graphsend benchmarks ({r['mode']} run, {r['started']}, {r['machine']['cpu']})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _empty(ax: Any, title: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def _chart_s1(ax: Any, s1: dict[str, Any] | None) -> None:
    title = "S1: us per sequential send (log scale; lower is better)"
    if not s1:
        return _empty(ax, title)
    protos = list(s1)
    names: list[str] = []
    for rows in s1.values():
        names += [n for n in rows if n not in names]
    height = 0.8 / len(protos)
    for i, p in enumerate(protos):
        ys = [k + i * height for k in range(len(names))]
        xs = [s1[p].get(n, {}).get("median_us", 0) or 0 for n in names]
        ax.barh(ys, xs, height=height, label=p)
    ax.set_yticks([k + 0.4 - height / 2 for k in range(len(names))], names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("us / send")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return None


def _chart_s2(ax: Any, s2: dict[str, Any] | None) -> None:
    title = "S2: scaling with threads on one client (x one thread)"
    if not s2:
        return _empty(ax, title)
    top = 1
    for server, clients in s2["servers"].items():
        for client, rows in clients.items():
            pts = [
                (int(t), row["scaling"])
                for t, row in rows.items()
                if row.get("scaling") is not None
            ]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=f"{client} / {server}")
                top = max(top, *(int(t) for t in rows))
    xs = [2**k for k in range(top.bit_length()) if 2**k <= top]
    ax.plot(xs, xs, "k:", label="linear")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("threads")
    ax.set_ylabel("sends/s relative to 1 thread")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return None


def _chart_s3(ax: Any, s3: dict[str, Any] | None) -> None:
    title = "S3: bulk wall time, warm median (ms, log scale)"
    if not s3:
        return _empty(ax, title)
    rows = [
        (n, r.get("median_ms") or r.get("timeout_ms"), "median_ms" not in r)
        for n, (_, r, _) in best_rows(s3["rows"]).items()
        if "median_ms" in r or "timeout_ms" in r
    ]
    bars = ax.barh([n for n, _, _ in rows], [v for _, v, _ in rows], color="tab:green")
    for bar, (_, v, stopped) in zip(bars, rows, strict=True):
        if stopped:  # ran past the round limit: the bar is a lower bound
            bar.set_hatch("//")
            bar.set_facecolor("lightgray")
            ax.text(v, bar.get_y() + bar.get_height() / 2, " > stopped", va="center", fontsize=7)
    ax.axvline(s3["ideal_ms"], color="k", linestyle=":", label=f"ideal {s3['ideal_ms']:.0f} ms")
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return None


def _chart_s4(ax: Any, s4: dict[str, Any] | None) -> None:
    title = "S4: import time (-X importtime, ms, log scale)"
    if not s4:
        return _empty(ax, title)
    rows = [(n, r["importtime_ms"]) for n, r in s4["imports"].items() if "importtime_ms" in r]
    ax.barh([n for n, _ in rows], [max(v, 0.01) for _, v in rows], color="tab:purple")
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title(title)
    return None


def write(results: dict[str, Any], out: Path) -> Path:
    md = out / "results.md"
    md.write_text(markdown(results, out))
    chart(results, out / "results.png")
    return md


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS_DIR
    print(write(json.loads((out / "results.json").read_text()), out))

"""Compose benchmarks (issue 11), side by side in one run.

  .venv/bin/python -m bench.compose [--size-mb 100] [--rounds 3] [--messages 300]
                                    [--skip upload,sdk-upload,fakegraph,compose,bulk]

Servers: nginx on loopback HTTPS answers each request at once with a fixed Graph-shaped answer
(the figures measure the clients); its upload URL answers like Outlook's upload service, from
the Content-Range of each chunk (``nextExpectedRanges: ["{next start}"]``, 201 + Location at
the end, 416 for a range out of line). latencyd (C, plain HTTP) answers after 20 ms for the bulk
figure, as in S3. Every client of one comparison talks to the same server.

1. Upload of a SIZE MB file: graphsend ``Client.attach`` (createUploadSession, then 3.75 MiB PUTs
   read from disk in C) against the curl CLI PUTting the same chunks (pre-split files, one
   process, one connection: ``-T chunk -H Content-Range ... --next``), and against msgraph-sdk
   (createUploadSession by its request builders, then its LargeFileUploadTask reading the same
   file, with the two-override workaround of bench/compose_sdk.py, without which it cannot
   finish an Outlook upload). Client RSS growth of the graphsend process is reported too.
2. The same upload end to end on FakeGraph over HTTPS (graphsend and msgraph-sdk, one round):
   the stored attachment's bytes are checked for both. FakeGraph is Python, so these times are
   bound by the server; they show correctness, the nginx figures show speed.
3. create_draft + send of a small message: graphsend against httpx (one Client, HTTP/1.1) doing
   the same two requests (POST /messages with the same JSON, POST /messages/{id}/send), and
   against msgraph-sdk's request builders (me.messages.post, then .send.post), per message.
4. send_many of 2,000 small Messages over 100 mailboxes (at most 4 in flight each) against
   latencyd (20 ms): each goes out as one sendMail. Compared with the S3 ideal for one and for
   two requests per item (5 and 10 rounds of 20 ms), and with send_many of 2,000 draft ids
   (S3 itself) in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import WORK_DIR
from .servers import Nginx, free_port, make_certificate, wait_for_port

CONF = """\
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/tmp;
    proxy_temp_path {work}/tmp;
    fastcgi_temp_path {work}/tmp;
    uwsgi_temp_path {work}/tmp;
    scgi_temp_path {work}/tmp;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    client_max_body_size 8m;
    default_type application/json;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    server {{
        listen 127.0.0.1:{port} ssl;
        location = /v1.0/me/messages {{ return 201 '{{"id":"AAMkBENCH"}}'; }}
        location = /v1.0/me/messages/AAMkBENCH/send {{ return 202; }}
        location = /v1.0/me/messages/AAMkBENCH/attachments/createUploadSession {{
            return 201 '{{"uploadUrl":"https://127.0.0.1:{port}/upload/s1","expirationDateTime":"2099-01-01T00:00:00Z","nextExpectedRanges":["0-"]}}';
        }}
        location = /upload/s1 {{
            if ($upload_last) {{
                add_header Location "/v1.0/me/Messages('AAMkBENCH')/Attachments('A1')" always;
                return 201;
            }}
            if ($upload_next = "") {{
                return 416 '{{"error":{{"code":"InvalidRange","message":"out of line"}}}}';
            }}
            return 200 '{{"ExpirationDateTime":"2099-01-01T00:00:00Z",
                "nextExpectedRanges":["$upload_next"]}}';
        }}
        location / {{ return 404; }}
    }}
    map $http_content_range $upload_next {{
        default "";
{next_map}
    }}
    map $http_content_range $upload_last {{
        default 0;
{last_map}
    }}
}}
"""

CHUNK = 12 * 320 * 1024


def range_maps(size: int) -> tuple[str, str]:
    """nginx map lines: each chunk's Content-Range -> the next start (Outlook's answer), and
    which one is the last. Chunks of CHUNK bytes, as every client here sends them."""
    nxt, last = [], []
    for start in range(0, size, CHUNK):
        end = min(start + CHUNK, size) - 1
        key = f'        "bytes {start}-{end}/{size}"'
        if end == size - 1:
            last.append(f"{key} 1;")
        else:
            nxt.append(f'{key} "{end + 1}";')
    return "\n".join(nxt), "\n".join(last)


def start_nginx(work: Path, size: int) -> tuple[subprocess.Popen[bytes], str, str]:
    exe = Nginx.binary()
    if exe is None:
        sys.exit("nginx not found: make -C bench deps")
    (work / "tmp").mkdir(parents=True, exist_ok=True)
    cert, key, ca = make_certificate(work)
    port = free_port()
    conf = work / "nginx.conf"
    next_map, last_map = range_maps(size)
    conf.write_text(
        CONF.format(work=work, cert=cert, key=key, port=port, next_map=next_map, last_map=last_map)
    )
    proc = subprocess.Popen([exe, "-p", str(work), "-c", str(conf), "-e", str(work / "error.log")])
    wait_for_port(port)
    return proc, f"https://127.0.0.1:{port}", str(ca)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_file(tmp: Path, size: int) -> Path:
    path = tmp / "big.bin"
    with open(path, "wb") as f:  # real bytes on tmpfs/page cache, not a sparse file
        block = os.urandom(1 << 20)
        for _ in range(size // (1 << 20)):
            f.write(block)
    return path


def bench_upload(base: str, cafile: str, path: Path, rounds: int, tmp: Path) -> None:
    import graphsend

    size = path.stat().st_size
    chunks = []
    with open(path, "rb") as f:
        start = 0
        while start < size:
            data = f.read(CHUNK)
            p = tmp / f"chunk{len(chunks):03d}"
            p.write_bytes(data)
            chunks.append((p, start, start + len(data) - 1))
            start += len(data)
    curl = ["curl", "-sS", "-o", "/dev/null", "--cacert", cafile, "--http1.1"]
    for i, (p, a, b) in enumerate(chunks):
        if i:
            curl.append("--next")
            curl += ["-o", "/dev/null", "--cacert", cafile, "--http1.1"]
        curl += ["-T", str(p), "-H", f"Content-Range: bytes {a}-{b}/{size}", f"{base}/upload/s1"]

    client = graphsend.Client("tok", base_url=base, ca_bundle=cafile, http2=False)
    client.attach("AAMkBENCH", path)  # warm: connection, TLS session, page cache
    before = rss_mb()
    g_times, c_times = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        client.attach("AAMkBENCH", path)
        g_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.run(curl, check=True)
        c_times.append(time.perf_counter() - t)
    growth = rss_mb() - before
    mb = size / 1e6
    g, c = min(g_times), min(c_times)
    print(f"upload {mb:.0f} MB over loopback HTTPS/1.1 (nginx), {len(chunks)} chunks, ", end="")
    print(f"best of {rounds}:")
    print(
        f"  graphsend Client.attach : {g * 1000:7.1f} ms  {mb / g:7.1f} MB/s"
        "  (incl. createUploadSession)"
    )
    print(
        f"  curl CLI, same PUTs     : {c * 1000:7.1f} ms  {mb / c:7.1f} MB/s  (incl. process start)"
    )
    print(f"  ratio graphsend/curl throughput: {c / g:.2f}x; graphsend RSS growth {growth:.1f} MB")
    sys.stdout.flush()

    # msgraph-sdk after the RSS figure (its own buffers would count in this process's peak).
    from . import compose_sdk

    async def sdk_round(sdk_client: Any, anonymous: Any) -> tuple[float, float]:
        t, cpu = time.perf_counter(), time.process_time()
        await compose_sdk.upload(sdk_client, anonymous, "AAMkBENCH", str(path), CHUNK)
        return time.perf_counter() - t, time.process_time() - cpu

    import asyncio

    loop = asyncio.new_event_loop()
    sdk_client, http = compose_sdk.graph_client(base, cafile, "tok")
    anon_client, anon_http = compose_sdk.graph_client(base, cafile, "tok", auth=False)
    anonymous = anon_client.request_adapter
    loop.run_until_complete(sdk_round(sdk_client, anonymous))  # warm
    g2, s_times, g_cpu, s_cpu = [], [], [], []
    for _ in range(rounds):
        t, cpu = time.perf_counter(), time.process_time()
        client.attach("AAMkBENCH", path)
        g2.append(time.perf_counter() - t)
        g_cpu.append(time.process_time() - cpu)
        wall, used = loop.run_until_complete(sdk_round(sdk_client, anonymous))
        s_times.append(wall)
        s_cpu.append(used)
    loop.run_until_complete(http.aclose())
    loop.run_until_complete(anon_http.aclose())
    loop.close()
    client.close()
    g, sd = min(g2), min(s_times)
    print(f"  graphsend (again)       : {g * 1000:7.1f} ms  {mb / g:7.1f} MB/s")
    print(
        f"  msgraph-sdk LargeFileUploadTask (+ workaround): {sd * 1000:7.1f} ms  "
        f"{mb / sd:7.1f} MB/s  (incl. createUploadSession)"
    )
    print(f"  ratio graphsend/msgraph-sdk throughput: {sd / g:.2f}x")
    gc_, sc_ = sorted(g_cpu)[len(g_cpu) // 2], sorted(s_cpu)[len(s_cpu) // 2]
    print(
        f"  client CPU per upload (median): graphsend {gc_ * 1000:.0f} ms, msgraph-sdk "
        f"{sc_ * 1000:.0f} ms: {sc_ / gc_:.2f}x (steadier than wall time on a loaded machine)"
    )
    sys.stdout.flush()


def bench_upload_fakegraph(path: Path) -> None:
    """One upload per client on FakeGraph over HTTPS; the stored bytes are compared."""
    import asyncio
    import hashlib

    import graphsend
    from graphsend.testing import FakeGraph

    from . import compose_sdk

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    size = path.stat().st_size
    with FakeGraph(https=True) as graph:
        graph.record_requests = False
        results = []
        client = graphsend.Client(
            graph.token, base_url=graph.base_url, ca_bundle=graph.ca_bundle, http2=False
        )
        draft = graph.create_draft(subject="graphsend")
        t = time.perf_counter()
        client.attach(draft, path)
        results.append(("graphsend Client.attach", time.perf_counter() - t, draft))
        client.close()

        async def sdk(draft: str) -> float:
            sdk_client, http = compose_sdk.graph_client(
                graph.base_url, graph.ca_bundle, graph.token
            )
            anon, anon_http = compose_sdk.graph_client(
                graph.base_url, graph.ca_bundle, graph.token, auth=False
            )
            t = time.perf_counter()
            await compose_sdk.upload(sdk_client, anon.request_adapter, draft, str(path), CHUNK)
            elapsed = time.perf_counter() - t
            await http.aclose()
            await anon_http.aclose()
            return elapsed

        draft = graph.create_draft(subject="msgraph-sdk")
        results.append(("msgraph-sdk (+ workaround)", asyncio.run(sdk(draft)), draft))
        print("the same upload end to end on FakeGraph over HTTPS (server-bound), one round:")
        for name, elapsed, draft in results:
            stored = graph.message(draft).attachments
            ok = len(stored) == 1 and hashlib.sha256(stored[0].content_bytes).hexdigest() == digest
            print(
                f"  {name:27s}: {elapsed * 1000:7.1f} ms  {size / 1e6 / elapsed:7.1f} MB/s"
                f"  stored bytes {'identical' if ok else 'DIFFER'}"
            )
            graph._mailboxes.delete(graph.default_user, draft)  # free the 100 MB
    sys.stdout.flush()


def bench_compose(base: str, cafile: str, n: int, rounds: int) -> None:
    import asyncio

    import graphsend
    from graphsend._operations.message import dumps

    from . import compose_sdk

    message = graphsend.Message("Quarterly report", "Numbers inside", to=["adele@contoso.com"])
    body = dumps(message.json())
    client = graphsend.Client("tok", base_url=base, ca_bundle=cafile, http2=False)
    g_times, h_times, s_times = [], [], []
    try:
        import httpx
    except ImportError:
        httpx = None  # type: ignore[assignment]
    hx = None
    if httpx is not None:
        hx = httpx.Client(verify=cafile, http2=False)
    headers = {
        "Authorization": "Bearer tok",
        "Prefer": 'IdType="ImmutableId"',
        "Content-Type": "application/json",
    }
    loop = asyncio.new_event_loop()
    sdk_client, sdk_http = compose_sdk.graph_client(base, cafile, "tok")
    sdk_msg = compose_sdk.sdk_message("Quarterly report", "Numbers inside", "adele@contoso.com")
    config = compose_sdk.prefer_immutable()

    async def sdk_loop(count: int) -> float:
        t = time.perf_counter()
        for _ in range(count):
            await compose_sdk.draft_and_send(sdk_client, sdk_msg, config)
        return (time.perf_counter() - t) / count

    for _ in range(20):  # warm all three
        client.send(client.create_draft(message))
        if hx is not None:
            did = hx.post(f"{base}/v1.0/me/messages", content=body, headers=headers).json()["id"]
            hx.post(f"{base}/v1.0/me/messages/{did}/send", headers=headers)
    loop.run_until_complete(sdk_loop(20))
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            client.send(client.create_draft(message))
        g_times.append((time.perf_counter() - t) / n)
        if hx is not None:
            t = time.perf_counter()
            for _ in range(n):
                r = hx.post(f"{base}/v1.0/me/messages", content=body, headers=headers)
                did = json.loads(r.content)["id"]
                s = hx.post(f"{base}/v1.0/me/messages/{did}/send", headers=headers)
                assert s.status_code == 202
            h_times.append((time.perf_counter() - t) / n)
        s_times.append(loop.run_until_complete(sdk_loop(n)))
    loop.run_until_complete(sdk_http.aclose())
    loop.close()
    client.close()
    g = min(g_times)
    print(f"create_draft + send of a small message over HTTPS/1.1, {n} messages, best of {rounds}:")
    print(f"  graphsend   : {g * 1e6:8.1f} us per message")
    if h_times:
        h = min(h_times)
        print(f"  httpx       : {h * 1e6:8.1f} us per message   (graphsend {h / g:.2f}x faster)")
    else:
        print("  httpx       : not installed (make -C bench deps)")
    sd = min(s_times)
    print(f"  msgraph-sdk : {sd * 1e6:8.1f} us per message   (graphsend {sd / g:.2f}x faster)")
    sys.stdout.flush()


def bench_bulk_messages(rounds: int) -> None:
    """send_many of 2,000 small Messages over 100 mailboxes against latencyd, as S3."""
    import graphsend

    from .common import BulkPlan, cpus_for
    from .servers import Latencyd

    latency = 0.020
    plan = BulkPlan(mailboxes=100, per_mailbox=20, cap=4)
    old = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    cpus = cpus_for("client")
    with Latencyd(latency) as server:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)  # as S3: the client beside, not on, the server's CPU
        try:
            client = graphsend.Client("tok", base_url=server.base_url, http2=False)
            items = plan.items()
            messages = [
                (user, graphsend.Message(f"Report {i}", "Numbers inside", to="adele@contoso.com"))
                for i, (user, _draft) in enumerate(items)
            ]
            m_times: list[float] = []
            d_times: list[float] = []
            stats: list[dict[str, int]] = []
            for r in range(rounds + 1):  # the first round is cold, not counted
                server.reset()
                t = time.perf_counter()
                got = client.send_many(messages, max_per_mailbox=plan.cap, max_concurrency=400)
                elapsed = time.perf_counter() - t
                stats.append(server.stats())
                if not all(isinstance(x, graphsend.Receipt) for x in got):
                    raise RuntimeError("a sendMail failed")
                server.reset()
                t = time.perf_counter()
                got = client.send_many(items, max_per_mailbox=plan.cap, max_concurrency=400)
                d_elapsed = time.perf_counter() - t
                if not all(isinstance(x, graphsend.Receipt) for x in got):
                    raise RuntimeError("a send failed")
                if r:
                    m_times.append(elapsed)
                    d_times.append(d_elapsed)
            client.close()
        finally:
            if old is not None:
                os.sched_setaffinity(0, old)
    one = plan.ideal_seconds(latency)
    two = 2 * one
    m = sorted(m_times)[len(m_times) // 2]
    d = sorted(d_times)[len(d_times) // 2]
    peak = max(s["peak_per_mailbox"] for s in stats)
    requests = stats[-1]["requests"]
    print(
        f"send_many of {plan.total} Messages over {plan.mailboxes} mailboxes (cap {plan.cap}, "
        f"{latency * 1000:.0f} ms server), median of {rounds} warm rounds:"
    )
    print(
        f"  Messages (sendMail, {requests} requests): {m * 1000:6.1f} ms   "
        f"{m / two:.2f}x the ideal for two requests per item ({two * 1000:.0f} ms), "
        f"{m / one:.2f}x the one-request ideal ({one * 1000:.0f} ms); peak per mailbox {peak}"
    )
    print(
        f"  draft ids (S3, send)            : {d * 1000:6.1f} ms   "
        f"{d / one:.2f}x its ideal ({one * 1000:.0f} ms)"
    )
    print(f"  Messages / draft ids, same run  : {m / d:.2f}x  (the machine's load cancels out)")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.compose")
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--skip", default="", help="comma-separated: " + ",".join(PARTS))
    args = parser.parse_args()
    skip = {x for x in args.skip.split(",") if x}
    if skip - set(PARTS):
        sys.exit(f"--skip: unknown {sorted(skip - set(PARTS))}")
    if shutil.which("curl") is None:
        sys.exit("the curl CLI is needed")
    size = args.size_mb * 1024 * 1024
    work = WORK_DIR / "nginx-compose"
    proc, base, cafile = start_nginx(work, size)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = make_file(Path(tmp), size)
            if "upload" not in skip:
                bench_upload(base, cafile, path, args.rounds, Path(tmp))
            if "fakegraph" not in skip:
                bench_upload_fakegraph(path)
        if "compose" not in skip:
            bench_compose(base, cafile, args.messages, args.rounds)
    finally:
        proc.terminate()
        proc.wait(10)
    if "bulk" not in skip:
        bench_bulk_messages(max(args.rounds, 5))


PARTS = ("upload", "fakegraph", "compose", "bulk")


if __name__ == "__main__":
    main()

"""Compose benchmarks (issue 11), side by side in one run, against nginx on loopback HTTPS.

  .venv/bin/python -m bench.compose [--size-mb 100] [--rounds 3] [--messages 300]

1. Upload: graphsend ``Client.attach`` of a SIZE MB file (createUploadSession, then 3.75 MiB
   PUTs read from disk in C) against the curl CLI PUTting the same chunks (pre-split files, one
   process, one connection: ``-T chunk -H Content-Range ... --next``). Client RSS growth of the
   graphsend process is reported too.
2. create_draft + send of a small message: graphsend against httpx (one Client, HTTP/1.1) doing
   the same two requests (POST /messages with the same JSON, POST /messages/{id}/send).

nginx answers each request at once (a fixed JSON body): the figures measure the clients.
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
            return 201 '{{"uploadUrl":"https://127.0.0.1:{port}/upload/s1","nextExpectedRanges":["0-"]}}';
        }}
        location = /upload/s1 {{ return 200 '{{}}'; }}
        location / {{ return 404; }}
    }}
}}
"""

CHUNK = 12 * 320 * 1024


def start_nginx(work: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    exe = Nginx.binary()
    if exe is None:
        sys.exit("nginx not found: make -C bench deps")
    (work / "tmp").mkdir(parents=True, exist_ok=True)
    cert, key, ca = make_certificate(work)
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(CONF.format(work=work, cert=cert, key=key, port=port))
    proc = subprocess.Popen([exe, "-p", str(work), "-c", str(conf), "-e", str(work / "error.log")])
    wait_for_port(port)
    return proc, f"https://127.0.0.1:{port}", str(ca)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_upload(base: str, cafile: str, size: int, rounds: int, tmp: Path) -> None:
    import graphsend

    path = tmp / "big.bin"
    with open(path, "wb") as f:  # real bytes on tmpfs/page cache, not a sparse file
        block = os.urandom(1 << 20)
        for _ in range(size // (1 << 20)):
            f.write(block)
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
    client.close()
    mb = size / 1e6
    g, c = min(g_times), min(c_times)
    print(f"upload {mb:.0f} MB over loopback HTTPS/1.1, {len(chunks)} chunks, best of {rounds}:")
    print(
        f"  graphsend Client.attach : {g * 1000:7.1f} ms  {mb / g:7.1f} MB/s"
        "  (incl. createUploadSession)"
    )
    print(
        f"  curl CLI, same PUTs     : {c * 1000:7.1f} ms  {mb / c:7.1f} MB/s  (incl. process start)"
    )
    print(f"  ratio graphsend/curl throughput: {c / g:.2f}x; graphsend RSS growth {growth:.1f} MB")


def bench_compose(base: str, cafile: str, n: int, rounds: int) -> None:
    import graphsend
    from graphsend._operations.message import dumps

    message = graphsend.Message("Quarterly report", "Numbers inside", to=["adele@contoso.com"])
    body = dumps(message.json())
    client = graphsend.Client("tok", base_url=base, ca_bundle=cafile, http2=False)
    g_times, h_times = [], []
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
    for _ in range(20):  # warm both
        client.send(client.create_draft(message))
        if hx is not None:
            did = hx.post(f"{base}/v1.0/me/messages", content=body, headers=headers).json()["id"]
            hx.post(f"{base}/v1.0/me/messages/{did}/send", headers=headers)
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
    g = min(g_times)
    print(f"create_draft + send of a small message over HTTPS/1.1, {n} messages, best of {rounds}:")
    print(f"  graphsend : {g * 1e6:8.1f} us per message")
    if h_times:
        h = min(h_times)
        print(f"  httpx     : {h * 1e6:8.1f} us per message   (graphsend {h / g:.2f}x faster)")
    else:
        print("  httpx     : not installed (make -C bench deps)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.compose")
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()
    if shutil.which("curl") is None:
        sys.exit("the curl CLI is needed")
    work = WORK_DIR / "nginx-compose"
    proc, base, cafile = start_nginx(work)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bench_upload(base, cafile, args.size_mb * 1024 * 1024, args.rounds, Path(tmp))
        bench_compose(base, cafile, args.messages, args.rounds)
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()

"""Loopback servers the harness starts and stops: nginx (HTTP/1.1, HTTPS/1.1, HTTPS+HTTP/2) for the
per-send cost, and latencyd (c/latencyd.c) for fixed-latency answers in the concurrent scenarios.

Everything they write (config, certificate, logs) goes under bench/.work/.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from .common import WORK_DIR, cpus_for, pin_to

BIN_DIR = WORK_DIR / "bin"

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {work}/tmp;
    proxy_temp_path {work}/tmp;
    fastcgi_temp_path {work}/tmp;
    uwsgi_temp_path {work}/tmp;
    scgi_temp_path {work}/tmp;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_session_cache shared:bench:1m;
    server {{
        listen 127.0.0.1:{http};
        listen 127.0.0.1:{https} ssl;
        listen 127.0.0.1:{h2} ssl http2;
        location ~ ^/v1\\.0/(me|users/[^/]+)/messages/[^/]+/send$ {{
            if ($request_method != POST) {{ return 405; }}
            add_header request-id $request_id always;
            add_header client-request-id $http_client_request_id always;
            return 202;
        }}
        location / {{ return 404; }}
    }}
}}
"""


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU time used so far by ``pid`` and its children: nginx's master and
    worker. Clock-tick resolution (10 ms); read before and after a measurement."""
    user = system = 0
    for p in (pid, *_children(pid)):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user, system = user + int(fields[11]), system + int(fields[12])  # utime, stime
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def move_tree(pid: int, role: str) -> None:
    """Re-pin a process and its children (nginx's master and workers) to the "server" or the
    "client" CPUs."""
    cpus = cpus_for(role)
    if cpus is None:
        return
    for p in (pid, *_children(pid)):
        try:
            os.sched_setaffinity(p, cpus)
        except OSError:
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def make_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """(certificate, key, CA): a fresh P-256 CA, and a leaf for 127.0.0.1 that it signed.

    The clients get the CA. A self-signed certificate used as its own CA passes OpenSSL, but a
    strict verifier (rustls, under pyreqwest) rejects a CA certificate presented as the server's
    (CaUsedAsEndEntity), so the leaf is a proper end-entity certificate: not a CA, serverAuth,
    the IP in its subjectAltName."""
    ca, ca_key = directory / "ca.pem", directory / "ca-key.pem"
    cert, key, csr = directory / "cert.pem", directory / "key.pem", directory / "cert.csr"
    ext = directory / "leaf.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for argv in (
        [
            "openssl", "req", "-x509", *p256, "-days", "2", "-subj", "/CN=graphsend bench CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout", str(ca_key), "-out", str(ca),
        ],
        [
            "openssl", "req", "-new", *p256, "-subj", "/CN=127.0.0.1",
            "-keyout", str(key), "-out", str(csr),
        ],
        [
            "openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-set_serial", str(int(time.time() * 1000)), "-days", "2", "-sha256",
            "-extfile", str(ext), "-out", str(cert),
        ],
    ):  # fmt: skip
        subprocess.run(argv, check=True, capture_output=True)
    return cert, key, ca


@dataclass
class NginxEndpoints:
    http: str
    https: str
    h2: str
    cafile: str
    server: Nginx | None = None  # to re-pin it (see Nginx.move_to)


class Nginx:
    """One nginx worker answering the send path with 202 on three ports."""

    def __init__(self, work: Path = WORK_DIR / "nginx") -> None:
        self.work = work
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> str | None:
        return shutil.which("nginx") or next(
            (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
        )

    def version(self) -> str:
        exe = self.binary()
        if exe is None:
            return "n/a"
        out = subprocess.run([exe, "-v"], capture_output=True, text=True)
        return (out.stderr or out.stdout).strip().split("/")[-1]

    def __enter__(self) -> NginxEndpoints:
        exe = self.binary()
        if exe is None:
            raise RuntimeError("nginx not found: run `make -C bench deps` (installs nginx-light)")
        (self.work / "tmp").mkdir(parents=True, exist_ok=True)
        cert, key, ca = make_certificate(self.work)
        ports = {"http": free_port(), "https": free_port(), "h2": free_port()}
        conf = self.work / "nginx.conf"
        conf.write_text(NGINX_CONF.format(work=self.work, cert=cert, key=key, **ports))
        self.proc = subprocess.Popen(
            [exe, "-p", str(self.work), "-c", str(conf), "-e", str(self.work / "error.log")],
            stdin=subprocess.DEVNULL,
            preexec_fn=pin_to("server"),
        )
        for port in ports.values():
            wait_for_port(port)
        return NginxEndpoints(
            http=f"http://127.0.0.1:{ports['http']}",
            https=f"https://127.0.0.1:{ports['https']}",
            h2=f"https://127.0.0.1:{ports['h2']}",
            cafile=str(ca),
            server=self,
        )

    def move_to(self, role: str) -> None:
        """Re-pin nginx (master and workers) to the "server" or the "client" CPUs."""
        if self.proc is not None:
            move_tree(self.proc.pid, role)

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: nginx's fast shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


class Latencyd:
    """c/latencyd: answers 202 after a fixed delay; counts requests in flight per mailbox."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    def __enter__(self) -> Latencyd:
        exe = BIN_DIR / "latencyd"
        if not exe.exists():
            raise RuntimeError(f"{exe} missing: run `make -C bench programs`")
        # stdin stays a pipe: latencyd exits by itself if the harness dies.
        self.proc = subprocess.Popen(
            [str(exe), "--port", "0", "--latency-ms", str(round(self.latency * 1000))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=pin_to("server"),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "port":
            raise RuntimeError(f"latencyd did not start: {line}")
        self.base_url = f"http://127.0.0.1:{line[1]}"
        return self

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(self.base_url + "/stats", timeout=5) as r:
            return dict(json.load(r))

    def reset(self) -> None:
        req = urllib.request.Request(self.base_url + "/reset", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

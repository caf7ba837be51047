"""Blocking peers: pycurl, requests, httpx and urllib3, each used as its documentation suggests
for many requests to one host: a reused handle, Session, Client or PoolManager with keep-alive,
static headers set once, a fresh client-request-id per request, and the request-id read back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO

from ..common import BulkPlan, Target, new_request_id
from .base import NotAvailable, Sequential, Threaded, TransferClock

Sender = Callable[[str], bool]


def _pycurl_sender(target: Target) -> tuple[Sender, Callable[[], None], TransferClock]:
    import pycurl

    c = pycurl.Curl()
    c.setopt(pycurl.POST, 1)
    c.setopt(pycurl.POSTFIELDSIZE, 0)
    c.setopt(pycurl.POSTFIELDS, b"")
    c.setopt(pycurl.NOSIGNAL, 1)
    c.setopt(pycurl.TIMEOUT_MS, 100_000)
    c.setopt(pycurl.CONNECTTIMEOUT_MS, 30_000)
    c.setopt(
        pycurl.HTTP_VERSION,
        pycurl.CURL_HTTP_VERSION_2TLS if target.http2 else pycurl.CURL_HTTP_VERSION_1_1,
    )
    if target.cafile:
        c.setopt(pycurl.CAINFO, target.cafile)
    static = [f"{k}: {v}" for k, v in target.headers().items()]
    body = BytesIO()
    c.setopt(pycurl.WRITEDATA, body)
    request_id: list[bytes] = []

    def header_line(line: bytes) -> None:
        if line[:11].lower() == b"request-id:":
            request_id.append(line[11:].strip())

    c.setopt(pycurl.HEADERFUNCTION, header_line)

    def send(message_id: str) -> bool:
        c.setopt(pycurl.URL, target.url(message_id))
        c.setopt(pycurl.HTTPHEADER, [*static, "client-request-id: " + new_request_id()])
        c.perform()
        request_id.clear()
        clock.add(c.getinfo(pycurl.TOTAL_TIME))
        return c.getinfo(pycurl.RESPONSE_CODE) == 202

    clock = TransferClock()
    return send, c.close, clock


def pycurl_runner(target: Target) -> Sequential:
    send, close, clock = _pycurl_sender(target)
    return Sequential(send, close, clock)


def pycurl_threads(target: Target, threads: int) -> Threaded:
    return Threaded(threads, lambda: _pycurl_sender(target)[0])


def _requests_session(target: Target, pool: int = 1):  # -> requests.Session
    import requests
    from requests.adapters import HTTPAdapter

    if target.http2:
        raise NotAvailable("requests has no HTTP/2")
    s = requests.Session()
    s.headers.update(target.headers())
    s.verify = target.cafile or True
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


def _requests_sender(session, target: Target) -> Sender:  # session: requests.Session
    # Passed per request: a Session's own verify loses to REQUESTS_CA_BUNDLE from the
    # environment (a long-standing requests quirk), and this machine sets that variable.
    verify = target.cafile or True

    def send(message_id: str, user: str | None = None) -> bool:
        r = session.post(
            target.url(message_id, user),
            headers={"client-request-id": new_request_id()},
            timeout=(30, 100),
            verify=verify,
        )
        r.headers.get("request-id")
        return r.status_code == 202

    return send


def requests_runner(target: Target) -> Sequential:
    session = _requests_session(target)
    return Sequential(_requests_sender(session, target), session.close)


def requests_threads(target: Target, threads: int) -> Threaded:
    return Threaded(threads, lambda: _requests_sender(_requests_session(target), target))


class RequestsBulk:
    """S3 with threads: a pool as wide as the allowed concurrency (mailboxes x cap), a
    Session per thread (requests does not promise a shared Session is thread-safe) and a
    threading.Semaphore(cap) per mailbox."""

    def __init__(self, target: Target, plan: BulkPlan, workers: int | None = None) -> None:
        self._target, self._plan = target, plan
        self._pool = ThreadPoolExecutor(max_workers=workers or plan.max_in_flight)
        self._local = threading.local()
        self._limits = {u: threading.Semaphore(plan.cap) for u, _ in plan.items()}
        self._round = 0

    def _send(self, user: str, message_id: str) -> bool:
        send = getattr(self._local, "send", None)
        if send is None:
            send = self._local.send = _requests_sender(
                _requests_session(self._target), self._target
            )
        with self._limits[user]:
            return send(message_id, user)  # type: ignore[no-any-return]

    def run(self, n: int) -> int:
        ok = 0
        for _ in range(n):
            futures = [
                self._pool.submit(self._send, u, m) for u, m in self._plan.items(self._round)
            ]
            self._round += 1
            for f in futures:
                try:
                    ok += f.result()
                except Exception:  # counted as not sent
                    pass
        return ok

    def close(self) -> None:
        self._pool.shutdown()


def requests_bulk(target: Target, plan: BulkPlan) -> RequestsBulk:
    return RequestsBulk(target, plan)


def requests_bulk_64(target: Target, plan: BulkPlan) -> RequestsBulk:
    return RequestsBulk(target, plan, 64)


def requests_bulk_128(target: Target, plan: BulkPlan) -> RequestsBulk:
    return RequestsBulk(target, plan, 128)


def httpx_runner(target: Target) -> Sequential:
    import httpx

    if target.http2:
        try:
            import h2  # noqa: F401  (httpx's HTTP/2 needs the h2 package)
        except ImportError as e:
            raise NotAvailable("httpx HTTP/2 needs the h2 package") from e
    client = httpx.Client(
        headers=target.headers(),
        http2=target.http2,
        verify=target.ssl_context() or True,
        timeout=httpx.Timeout(100.0, connect=30.0),
    )

    def send(message_id: str) -> bool:
        r = client.post(target.url(message_id), headers={"client-request-id": new_request_id()})
        r.headers.get("request-id")
        return r.status_code == 202

    return Sequential(send, client.close)


def urllib3_runner(target: Target) -> Sequential:
    import urllib3

    if target.http2:
        raise NotAvailable("urllib3 2.x HTTP/2 support is experimental and off by default")
    pool = urllib3.PoolManager(
        maxsize=1,
        ca_certs=target.cafile,
        timeout=urllib3.Timeout(connect=30.0, read=100.0),
        retries=False,
    )
    static = target.headers()

    def send(message_id: str) -> bool:
        # urllib3 replaces, not merges, the pool's headers when a request passes its own.
        r = pool.request(
            "POST",
            target.url(message_id),
            body=b"",
            headers={**static, "client-request-id": new_request_id()},
        )
        r.headers.get("request-id")
        return r.status == 202

    return Sequential(send, pool.clear)

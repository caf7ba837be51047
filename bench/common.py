"""What every runner shares: the token, the draft ids, the mailboxes, the URL shape and headers.

The C programs (c/common.h) build the same ids and mailboxes, so every client sends the same
requests: POST, empty body with Content-Length: 0, Authorization, Accept, User-Agent and a fresh
client-request-id per request.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / ".work"
RESULTS_DIR = BENCH_DIR / "results"

TOKEN = "bench-token-" + "x" * 1200  # real Graph tokens are JWTs of 1-2 KB
USER_AGENT = "graphsend-bench/1"
ID_POOL = 100_000


def draft_id(i: int) -> str:
    """An id shaped like Graph's, ending in '=' so every client must percent-encode it."""
    return f"AAMkAGVmMDEz{i % ID_POOL:08d}AAA="


def mailbox(m: int) -> str:
    return f"user{m:03d}@contoso.example"


def new_request_id() -> str:
    return str(uuid.uuid4())


def rss_kb() -> int:
    """This process's resident set size in KiB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@dataclass(frozen=True)
class Target:
    """Where and how a runner sends: one server endpoint and the protocol it speaks."""

    base_url: str  # e.g. http://127.0.0.1:8080
    cafile: str | None = None  # the self-signed CA for https
    http2: bool = False
    user: str | None = None  # None: /me
    token: str = TOKEN
    static_headers: dict[str, str] = field(default_factory=dict)

    def url(self, message_id: str, user: str | None = None) -> str:
        """The send URL as a careful peer builds it: each path segment percent-encoded once."""
        user = self.user if user is None else user
        box = "me" if user is None else "users/" + quote(user, safe="@")
        return f"{self.base_url}/v1.0/{box}/messages/{quote(message_id, safe='')}/send"

    def headers(self) -> dict[str, str]:
        """Headers that stay the same for every request (peers set them once on their session)."""
        return {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }

    def ssl_context(self):  # -> ssl.SSLContext | None, imported lazily
        if self.cafile is None:
            return None
        import ssl

        return ssl.create_default_context(cafile=self.cafile)


@dataclass(frozen=True)
class BulkPlan:
    """S3: per_mailbox sends for each of `mailboxes` mailboxes, at most `cap` in flight each."""

    mailboxes: int = 100
    per_mailbox: int = 20
    cap: int = 4

    def items(self, round_no: int = 0) -> list[tuple[str, str]]:
        """(user, draft id) pairs, mailboxes interleaved: the friendliest order for a naive peer."""
        base = round_no * self.mailboxes * self.per_mailbox
        return [
            (mailbox(m), draft_id(base + k * self.mailboxes + m))
            for k in range(self.per_mailbox)
            for m in range(self.mailboxes)
        ]

    @property
    def total(self) -> int:
        return self.mailboxes * self.per_mailbox

    @property
    def max_in_flight(self) -> int:
        return self.mailboxes * self.cap

    def ideal_seconds(self, latency: float) -> float:
        """Rounds per mailbox (ceil(per_mailbox / cap)) times the server's latency."""
        return -(-self.per_mailbox // self.cap) * latency


def cpu_sets() -> tuple[set[int], set[int]] | None:
    """(server CPUs, client CPUs): servers on the first CPU, clients on the rest.

    Without pinning, the scheduler puts each client process either beside nginx on one core or
    alone on the other, and keeps it there: a per-process bias larger than the differences
    being measured. BENCH_NO_PIN=1 turns pinning off; with one CPU there is nothing to split.
    """
    if os.environ.get("BENCH_NO_PIN", "") not in ("", "0") or not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return {cpus[0]}, set(cpus[1:])


def cpus_for(role: str) -> set[int] | None:
    """The CPUs for a "server" or a "client"; None when not pinning (or role "any")."""
    sets = cpu_sets()
    if sets is None or role == "any":
        return None
    return sets[0] if role == "server" else sets[1]


def pin_to(role: str):  # -> Callable[[], None] | None, a subprocess preexec_fn
    """A preexec_fn that pins the child to the server or client CPUs (None: no pinning)."""
    cpus = cpus_for(role)
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)

"""Issue 11: a 100 MB attachment is streamed from disk (read in C), not held in memory."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from compose_servers import Answer, Recorder, Request

CHILD = textwrap.dedent(
    """
    import resource, sys
    import graphsend

    base, warm, path = sys.argv[1:4]
    with graphsend.Client("tok", base_url=base, http2=False) as c:
        c.attach("AAMkAD", warm)  # the upload path once, so its buffers exist
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        att = c.attach("AAMkAD", path)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(att, (after - before) // 1024)
    """
)


class Discarding:
    """Upload sessions that check each range and keep only the count of bytes."""

    def __init__(self) -> None:
        self.received = 0
        self.size = 0
        self.bad: list[str] = []

    def __call__(self, r: Request) -> Answer:
        if r.path.endswith("/createUploadSession"):
            self.size = json.loads(r.body)["AttachmentItem"]["size"]
            self.received = 0
            url = f"http://127.0.0.1:{self.port}/upload/1"
            return Answer(
                201, json.dumps({"uploadUrl": url, "nextExpectedRanges": ["0-"]}).encode()
            )
        m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", r.headers.get("content-range", ""))
        if not m or int(m[1]) != self.received or int(m[2]) - int(m[1]) + 1 != len(r.body):
            self.bad.append(r.headers.get("content-range", "none"))
            return Answer(416, b"{}")
        if "authorization" in r.headers:
            self.bad.append("authorization")
        self.received = int(m[2]) + 1
        if self.received < self.size:
            return Answer(200, json.dumps({"nextExpectedRanges": [f"{self.received}-"]}).encode())
        return Answer(201, b"", (("Location", "http://x/Attachments('ATT1')"),))

    port = 0


def test_i11_100mb_upload_streams_with_small_rss_growth(tmp_path: Path) -> None:
    warm = tmp_path / "warm.bin"
    warm.write_bytes(b"w" * 4_000_000)
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(100 * 1024 * 1024)  # sparse: the test needs no 100 MB of disk
    handler = Discarding()
    with Recorder(handler) as server:
        handler.port = server.port
        out = subprocess.run(
            [sys.executable, "-c", CHILD, server.base_url, str(warm), str(big)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode == 0, out.stderr
    att_id, growth_mb = out.stdout.split()
    assert att_id == "ATT1" and handler.bad == [] and handler.received == 100 * 1024 * 1024
    print(f"client RSS growth: {growth_mb} MB")
    assert int(growth_mb) <= 16, f"client RSS grew {growth_mb} MB"

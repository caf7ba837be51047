"""Runs INSIDE the minimal root file system, with the venv the wheel was installed into: sends
the drafts it is given and prints what happened as one JSON object (packaging/wheel_check.py
asks for each mode and checks the answers against what FakeGraph received).

    python wheel_smoke.py '{"mode": "all" | "one", "base_url": ..., "token": ..., "drafts": [...]}'
"""

from __future__ import annotations

import asyncio
import json
import ssl  # Python's own OpenSSL (the system libssl) is loaded first, on purpose
import sys

import graphsend
from graphsend import _native


def outcome(call: object) -> dict[str, object]:
    """A send's result as JSON: a Receipt, or the SendError it raised (or send_many returned)."""
    try:
        result = call() if callable(call) else call
    except graphsend.SendError as exc:
        result = exc
    if isinstance(result, graphsend.SendError):
        return {
            "ok": False,
            "type": type(result).__name__,
            "curl_code": getattr(result, "curl_code", None),
            "may_have_sent": result.may_have_sent,
            "message": str(result),
        }
    assert isinstance(result, graphsend.Receipt), result
    return {"ok": True, "status": result.status}


def main() -> None:
    spec = json.loads(sys.argv[1])
    base, token, drafts = spec["base_url"], spec["token"], spec["drafts"]
    report: dict[str, object] = {
        "graphsend_file": graphsend.__file__,
        "native_file": _native.__file__,
        "libcurl": _native.libcurl_version,
        "tls": _native.ssl_version,
        "http2": _native.http2_supported,
        "limited_api": _native.limited_api,
        "python_ssl": ssl.OPENSSL_VERSION,
        "python": sys.version.split()[0],
    }
    if spec["mode"] == "one":
        with graphsend.Client(token, base_url=base) as c:
            report["ca_bundle"] = c._options["ca_bundle"]  # what ca.py resolved
            report["results"] = [outcome(lambda: c.send(drafts[0]))]
        print(json.dumps(report))
        return

    results = []
    with graphsend.Client(token, base_url=base) as c:  # HTTP/2 (the default)
        results.append(outcome(lambda: c.send(drafts[0])))
        results += [outcome(r) for r in c.send_many(drafts[1:3])]
    with graphsend.Client(token, base_url=base, http2=False) as c:
        results.append(outcome(lambda: c.send(drafts[3])))
    results.append(outcome(lambda: graphsend.send_message(drafts[4], token=token, base_url=base)))

    async def use_async() -> graphsend.Receipt:
        async with graphsend.AsyncClient(token, base_url=base) as ac:
            return await ac.send(drafts[5])

    results.append(outcome(lambda: asyncio.run(use_async())))
    report["results"] = results
    print(json.dumps(report))


if __name__ == "__main__":
    main()

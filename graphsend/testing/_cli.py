"""``python -m graphsend.testing``: serve a FakeGraph from the command line, for clients in other
processes (benchmarks, the demo, manual testing)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterable

from ._fakegraph import FakeGraph


def main(argv: Iterable[str] | None = None) -> int:
    """Serve a FakeGraph until interrupted. Prints the base URL as the first line of stdout.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``); ``--help`` lists them.

    Returns:
        The exit status: 0 after an interrupt.
    """
    parser = argparse.ArgumentParser(
        prog="python -m graphsend.testing",
        description="Serve a fake Microsoft Graph send endpoint on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--https", action="store_true", help="serve TLS (needs cryptography)")
    parser.add_argument(
        "--http2", action="store_true", help="with --https, offer HTTP/2 by ALPN (needs h2)"
    )
    parser.add_argument("--token", default="fake-token")
    parser.add_argument("--user", default="adele@contoso.com", help="the mailbox 'me' names")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument(
        "--concurrency-limit", type=int, default=None, help="429 beyond N sends per mailbox"
    )
    parser.add_argument("--drafts", type=int, default=0, help="create N drafts for --user")
    parser.add_argument("--drafts-file", help="write the draft ids there, one per line")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(None if argv is None else list(argv))

    graph = FakeGraph(
        https=args.https,
        http2=args.http2,
        token=args.token,
        default_user=args.user,
        latency=args.latency,
        mailbox_concurrency_limit=args.concurrency_limit,
        host=args.host,
        port=args.port,
        seed=args.seed,
    )
    # SIGTERM should clean up like Ctrl-C does (the HTTPS mode's temporary files).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with graph:
        ids = graph.create_drafts(args.drafts)
        if args.drafts_file:
            with open(args.drafts_file, "w") as f:
                f.writelines(f"{i}\n" for i in ids)
        print(graph.base_url, flush=True)
        print(f"token: {graph.token}", file=sys.stderr)
        if graph.ca_bundle:
            print(f"ca_bundle: {graph.ca_bundle}", file=sys.stderr)
        print(f"drafts: {len(ids)} for {graph.default_user}", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0

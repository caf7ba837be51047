"""Command line: ``python -m graphsend demo`` and ``python -m graphsend send MESSAGE_ID``."""

from __future__ import annotations

import argparse
import os
import sys

from . import Client, NotFoundError, SendError, __version__
from ._request import CLOUDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="graphsend", description=f"graphsend {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="send drafts through a built-in fake Graph server over HTTPS")
    send = commands.add_parser(
        "send", help="send one draft; the token comes from the GRAPH_TOKEN environment variable"
    )
    send.add_argument("message_id")
    send.add_argument("--user", help="userPrincipalName or id (default: /me)")
    send.add_argument("--base-url", default=CLOUDS["global"])
    send.add_argument("--api-version", default="v1.0")
    send.add_argument("--ca-bundle", help="PEM file of CAs to trust instead of the system's")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo()
    return send_one(args)


def send_one(args: argparse.Namespace) -> int:
    # Never a command-line argument: those show in `ps`.
    token = os.environ.get("GRAPH_TOKEN")
    if not token:
        print("graphsend: set GRAPH_TOKEN to a Graph access token", file=sys.stderr)
        return 2
    try:
        with Client(
            token, base_url=args.base_url, api_version=args.api_version, ca_bundle=args.ca_bundle
        ) as client:
            receipt = client.send(args.message_id, user=args.user)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"graphsend: {exc}", file=sys.stderr)
        return 2
    except SendError as exc:
        print(f"graphsend: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(
        f"sent: {receipt.status} request-id={receipt.request_id} "
        f"client-request-id={receipt.client_request_id} elapsed={receipt.elapsed * 1000:.1f}ms"
    )
    return 0


def demo() -> int:
    from .testing import FakeGraph

    try:
        graph = FakeGraph(https=True)
    except ImportError:
        print("(cryptography is not installed: the demo runs over plain http on loopback)")
        graph = FakeGraph()
    with graph:
        print(f"FakeGraph listening at {graph.base_url} (a real server on loopback)\n")
        drafts = [
            (graph.create_draft(subject="Quarterly report", kind="new"), "new"),
            (graph.create_draft(subject="RE: Lunch on Friday?", kind="reply"), "reply"),
            (graph.create_draft(subject="FW: Build results", kind="forward"), "forward"),
        ]
        with Client(graph.token, base_url=graph.base_url, ca_bundle=graph.ca_bundle) as client:
            for message_id, kind in drafts:
                receipt = client.send(message_id)
                print(
                    f"sent {kind:8} {message_id[:24]}...  {receipt.status} "
                    f"request-id={receipt.request_id}  {receipt.elapsed * 1000:.1f} ms"
                )
            try:
                client.send(drafts[0][0])  # already sent: the draft id no longer exists
            except NotFoundError as exc:
                print(f"\nsending it again -> {type(exc).__name__}: {exc}")
                print(f"  may_have_sent={exc.may_have_sent} (safe to report, nothing went out)")
        print("\nSent Items:")
        for message in graph.sent_items():
            print(f"  [{message.kind:8}] {message.subject}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

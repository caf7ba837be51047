"""Command line: ``python -m graphsend demo|send|send-mail|compose``."""

from __future__ import annotations

import argparse
import os
import sys

from graphsend import Attachment, Client, Message, NotFoundError, Receipt, SendError, __version__
from graphsend._rules.request import CLOUDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="graphsend", description=f"graphsend {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="send drafts through a built-in fake Graph server over HTTPS")
    send = commands.add_parser(
        "send", help="send one draft; the token comes from the GRAPH_TOKEN environment variable"
    )
    send.add_argument("message_id", nargs="?")
    send.add_argument(
        "--from-file",
        metavar="PATH",
        help="send every draft listed in this file, one per line: 'ID' or 'USER ID'",
    )
    send.add_argument(
        "--journal",
        metavar="PATH",
        help="record each send in this SQLite file; after a crash, the same command again "
        "sends only what was not sent (what was in flight is looked up in the mailbox)",
    )
    send.add_argument("--user", help="userPrincipalName or id (default: /me)")
    send.add_argument("--base-url", default=CLOUDS["global"])
    send.add_argument("--api-version", default="v1.0")
    send.add_argument("--ca-bundle", help="PEM file of CAs to trust instead of the system's")
    _timeout_argument(send)
    send_mail = commands.add_parser(
        "send-mail",
        help="compose and send in one request (sendMail: needs only Mail.Send; up to 4 MB)",
    )
    compose = commands.add_parser(
        "compose",
        help="create a draft (attachments of any size, up to 150 MB each) and send it; "
        "--draft-only prints the draft id instead (needs Mail.ReadWrite, and Mail.Send to send)",
    )
    compose.add_argument(
        "--draft-only", action="store_true", help="create the draft, print its id, do not send"
    )
    for sub in (send_mail, compose):
        _message_arguments(sub)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo()
    if args.command in ("send-mail", "compose"):
        return compose_one(args)
    if args.from_file is not None or args.journal is not None:
        return send_listed(args)
    if args.message_id is None:
        parser.error("send: give a message id, or --from-file PATH")
    return send_one(args)


def _message_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--to",
        action="append",
        default=[],
        required=True,
        metavar="ADDRESS",
        help='recipient ("a@b.com" or "Name <a@b.com>"); repeat for more',
    )
    sub.add_argument("--cc", action="append", default=[], metavar="ADDRESS")
    sub.add_argument("--bcc", action="append", default=[], metavar="ADDRESS")
    sub.add_argument("--subject", default="")
    body = sub.add_mutually_exclusive_group()
    body.add_argument("--body", default=None, help="the body text")
    body.add_argument("--body-file", default=None, help="read the body from this file (UTF-8)")
    sub.add_argument("--html", action="store_true", help="the body is HTML")
    sub.add_argument(
        "--attach",
        action="append",
        default=[],
        metavar="PATH",
        help="attach this file; repeat for more",
    )
    sub.add_argument("--user", help="userPrincipalName or id of the mailbox (default: /me)")
    sub.add_argument("--base-url", default=CLOUDS["global"])
    sub.add_argument("--api-version", default="v1.0")
    sub.add_argument("--ca-bundle", help="PEM file of CAs to trust instead of the system's")
    _timeout_argument(sub)


def _timeout_argument(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--timeout",
        type=float,
        default=100.0,
        metavar="SECONDS",
        help="give up on a request after this long (default 100)",
    )


def _send_failed(exc: SendError) -> int:
    """Exit 1 for any SendError, on one line; says so when the mail may have gone out."""
    hint = ""
    if exc.may_have_sent:
        hint = "; the message may have been sent: check Sent Items before sending again"
    print(f"graphsend: {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
    return 1


def compose_one(args: argparse.Namespace) -> int:
    token = os.environ.get("GRAPH_TOKEN")
    if not token:
        print("graphsend: set GRAPH_TOKEN to a Graph access token", file=sys.stderr)
        return 2
    try:
        body = args.body or ""
        if args.body_file is not None:
            with open(args.body_file, encoding="utf-8") as f:
                body = f.read()
        message = Message(
            args.subject,
            body,
            body_type="html" if args.html else "text",
            to=args.to,
            cc=args.cc,
            bcc=args.bcc,
            attachments=[Attachment(path) for path in args.attach],
        )
        with Client(
            token,
            base_url=args.base_url,
            api_version=args.api_version,
            ca_bundle=args.ca_bundle,
            timeout=args.timeout,
        ) as client:
            if args.command == "send-mail":
                receipt = client.send_mail(message, user=args.user)
            else:
                draft_id = client.create_draft(message, user=args.user)
                if args.draft_only:
                    print(draft_id)
                    return 0
                receipt = client.send(draft_id, user=args.user)
    except SendError as exc:  # first: graphsend.TimeoutError is an OSError too
        return _send_failed(exc)
    except (ValueError, TypeError, OSError) as exc:
        print(f"graphsend: {exc}", file=sys.stderr)
        return 2
    return _sent(receipt)


def send_one(args: argparse.Namespace) -> int:
    # Never a command-line argument: those show in `ps`.
    token = os.environ.get("GRAPH_TOKEN")
    if not token:
        print("graphsend: set GRAPH_TOKEN to a Graph access token", file=sys.stderr)
        return 2
    try:
        with Client(
            token,
            base_url=args.base_url,
            api_version=args.api_version,
            ca_bundle=args.ca_bundle,
            timeout=args.timeout,
        ) as client:
            receipt = client.send(args.message_id, user=args.user)
    except SendError as exc:  # first: graphsend.TimeoutError is an OSError too
        return _send_failed(exc)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"graphsend: {exc}", file=sys.stderr)
        return 2
    return _sent(receipt)


def send_listed(args: argparse.Namespace) -> int:
    """``send --from-file PATH [--journal PATH]``: one send_many; a line per result."""
    token = os.environ.get("GRAPH_TOKEN")
    if not token:
        print("graphsend: set GRAPH_TOKEN to a Graph access token", file=sys.stderr)
        return 2
    items: list[tuple[str | None, str]] = []
    try:
        if args.message_id is not None:
            items.append((args.user, args.message_id))
        if args.from_file is not None:
            with open(args.from_file, encoding="utf-8") as f:
                for line in f:
                    fields = line.split()
                    if fields and not fields[0].startswith("#"):
                        if len(fields) > 2:
                            raise ValueError(f"{args.from_file}: expected 'ID' or 'USER ID'")
                        items.append(
                            (fields[0], fields[1]) if len(fields) == 2 else (args.user, fields[0])
                        )
        if not items:
            raise ValueError("no message ids given")
        with Client(
            token,
            base_url=args.base_url,
            api_version=args.api_version,
            ca_bundle=args.ca_bundle,
            timeout=args.timeout,
        ) as client:
            results = client.send_many(items, journal=args.journal)
    except (ValueError, TypeError, OSError, RuntimeError) as exc:
        print(f"graphsend: {exc}", file=sys.stderr)
        return 2
    status = 0
    for (_, message_id), result in zip(items, results, strict=True):
        if isinstance(result, SendError):
            print(f"{message_id}: ", end="", file=sys.stderr)
            status = _send_failed(result)
        else:
            print(f"{message_id}: ", end="")
            _sent(result)
    return status


def _sent(receipt: Receipt) -> int:
    print(
        f"sent: {receipt.status} request-id={receipt.request_id} "
        f"client-request-id={receipt.client_request_id} elapsed={receipt.elapsed * 1000:.1f}ms"
    )
    return 0


def demo() -> int:
    from graphsend.testing import FakeGraph

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
            compose_demo(client)
        print("\nSent Items:")
        for message in graph.sent_items():
            sizes = ", ".join(
                f"{a.name} {len(a.content_bytes):,} bytes" for a in message.attachments
            )
            print(f"  [{message.kind:8}] {message.subject}" + (f"  ({sizes})" if sizes else ""))
    return 0


def compose_demo(client: Client) -> None:
    """Compose a message with a 5 MB attachment (an upload session), send it, and sendMail."""
    import tempfile
    import time

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "results.csv")
        with open(path, "wb") as f:
            f.write(
                b"run,seconds\n"
                + b"".join(b"%d,%d.%03d\n" % (i, i % 97, i % 1000) for i in range(420_000))
            )
        size = os.path.getsize(path)
        message = Message(
            "Build results",
            "<p>The full results are attached.</p>",
            body_type="html",
            to=["Adele Vance <adele@contoso.com>"],
            attachments=[path],
        )
        start = time.perf_counter()
        draft_id = client.create_draft(message)
        made = time.perf_counter() - start
        receipt = client.send(draft_id)
        print(
            f"\ncomposed a draft with a {size / 1e6:.1f} MB attachment in {made * 1000:.0f} ms "
            f"(an upload session: 3.75 MiB chunks read from disk in C, no token sent to the upload "
            f"URL), sent it: {receipt.status}"
        )
    receipt = client.send_mail(
        Message("Lunch on Friday?", "12:30 at the usual place?", to="megan@contoso.com")
    )
    print(
        f"sendMail (one request, Mail.Send only): {receipt.status} request-id={receipt.request_id}"
    )


if __name__ == "__main__":
    sys.exit(main())

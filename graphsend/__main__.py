"""Command line: ``graphsend demo|send|send-mail|compose`` (also ``python -m graphsend``).

Exit status, which scripts decide on: 0 every message was sent; 1 something failed and nothing
may have been sent (safe to fix and run again); 2 a usage or configuration error, before any
request; 3 at least one message may have been sent although its send failed (check Sent Items
before sending it again). The token comes from ``GRAPH_TOKEN`` or ``--token-file``, never from
the command line (which shows in ``ps``), and is never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from graphsend import Attachment, Client, Message, NotFoundError, Receipt, SendError, __version__
from graphsend._rules.request import CLOUDS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import IO, NoReturn

EXIT_SENT = 0
EXIT_FAILED = 1  # nothing that failed may have been sent
EXIT_USAGE = 2
EXIT_MAY_HAVE_SENT = 3
EXIT_INTERRUPTED = 130  # Ctrl-C, when nothing that was interrupted may have been sent


class _Parser(argparse.ArgumentParser):
    """argparse that never echoes what it did not recognise: an unknown ``--token VALUE`` (or
    ``--password=...``) must not reach stderr, logs or CI output."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):
            names = [a.split("=", 1)[0] for a in message.split(":", 1)[1].split() if a[:1] == "-"]
            shown = " ".join(names) if names else "(values not shown)"
            message = f"unrecognized arguments: {shown} (their values are not shown)"
        # A value argparse quotes back ("invalid choice: '...'") may be a secret given in the
        # wrong place (`-t TOKEN send`): a long one is not shown. Typos of commands are short.
        message = re.sub(r"'[^']{24,}'", "(a long value, not shown)", message)
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _refuse_token_option(argv: list[str]) -> str | None:
    """``--token`` is not an option: say so before argparse can echo its value anywhere (as an
    unknown argument, or as a subcommand or id it mistook the value for)."""
    for arg in argv:
        if arg == "--":
            break
        name = arg.split("=", 1)[0]
        if name.startswith("--tok") and name != "--token-file":
            return (
                f"{name} is not an option: the token is read from the GRAPH_TOKEN environment "
                "variable or from a file (--token-file PATH), never from the command line, "
                "which other users can see in ps (its value is not shown)"
            )
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    Args:
        argv: the arguments after the program name.

    Returns:
        0 all sent, 1 failed and nothing may have been sent, 2 usage or configuration error,
        3 something may have been sent although it failed, 130 interrupted (nothing in doubt).
    """
    args_list = sys.argv[1:] if argv is None else list(argv)
    refused = _refuse_token_option(args_list)
    if refused is not None:
        print(f"graphsend: {refused}", file=sys.stderr)
        return EXIT_USAGE
    parser = _parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # argparse's own exits (--help, --version, usage errors)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "demo":
        return demo()
    if args.command in ("send-mail", "compose"):
        return compose_one(args)
    return send_ids(args)


def _parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: "--token" must never be taken for "--token-file" (its value, the
    # token, would then be named as a file in an error message).
    parser = _Parser(
        prog="graphsend",
        description=f"graphsend {__version__}: send Microsoft Graph mail",
        allow_abbrev=False,
        epilog="exit status: 0 all sent; 1 failed, nothing may have been sent; 2 usage or "
        "configuration error; 3 a failed message may have been sent (check Sent Items)",
    )
    parser.add_argument("--version", action="version", version=_version_text())
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser(
        "demo",
        allow_abbrev=False,
        help="send drafts through a built-in fake Graph server over HTTPS",
    )
    send = commands.add_parser(
        "send",
        allow_abbrev=False,
        help="send drafts by id: arguments, --from-file, or - for stdin",
        description="Send drafts. Each id is a draft's message id, or 'USER ID' (a line of a "
        "file) to send from that mailbox. Lines that are empty or start with # are skipped.",
    )
    send.add_argument(
        "ids", nargs="*", metavar="ID", help="message ids of drafts; - reads ids from stdin"
    )
    send.add_argument(
        "--from-file",
        action="append",
        default=[],
        metavar="PATH",
        help="read ids from this file, one per line ('ID' or 'USER ID'); - is stdin",
    )
    send.add_argument(
        "--concurrency",
        type=int,
        default=64,
        metavar="N",
        help="requests in flight in all (default 64; at most 4 per mailbox)",
    )
    send.add_argument(
        "--progress", action="store_true", help="show progress on stderr (tqdm when installed)"
    )
    send.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per result on stdout (id, user, status, request-id, "
        "client-request-id, may_have_sent, error)",
    )
    send.add_argument(
        "--journal",
        metavar="PATH",
        help="record each send in this SQLite file; after a crash, the same command again "
        "sends only what was not sent (what was in flight is looked up in the mailbox)",
    )
    _connection_arguments(send)
    send.set_defaults(usage=send.format_usage())
    send_mail = commands.add_parser(
        "send-mail",
        allow_abbrev=False,
        help="compose and send in one request (sendMail: needs only Mail.Send; up to 4 MB)",
    )
    compose = commands.add_parser(
        "compose",
        allow_abbrev=False,
        help="create a draft (attachments of any size, up to 150 MB each) and send it; "
        "--draft-only prints the draft id instead (needs Mail.ReadWrite, and Mail.Send to send)",
    )
    compose.add_argument(
        "--draft-only", action="store_true", help="create the draft, print its id, do not send"
    )
    for sub in (send_mail, compose):
        _message_arguments(sub)
        _connection_arguments(sub)
    return parser


def _version_text() -> str:
    from graphsend import _native

    http2 = ", HTTP/2" if _native.http2_supported else ""
    return f"graphsend {__version__} (libcurl {_native.libcurl_version}{http2})"


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


def _connection_arguments(sub: argparse.ArgumentParser) -> None:
    """Where and how to reach Graph, and the token file: the same for every command."""
    sub.add_argument("--user", help="userPrincipalName or id of the mailbox (default: /me)")
    sub.add_argument(
        "--cloud",
        choices=list(CLOUDS),
        default="global",
        help="national cloud (default global: graph.microsoft.com)",
    )
    sub.add_argument("--base-url", default=None, help="another Graph host (overrides --cloud)")
    sub.add_argument("--api-version", default="v1.0")
    sub.add_argument("--ca-bundle", help="PEM file of CAs to trust instead of the system's")
    sub.add_argument(
        "--proxy-ca-bundle",
        metavar="PEM",
        help="PEM file of CAs that verify an https:// proxy (default: as --ca-bundle)",
    )
    proxy = sub.add_mutually_exclusive_group()
    proxy.add_argument(
        "--proxy",
        default=None,
        metavar="URL",
        help="proxy URL (default: https_proxy/no_proxy from the environment; prefer those "
        "for a proxy password, since a command line shows in ps)",
    )
    proxy.add_argument(
        "--no-proxy", action="store_true", help="no proxy, whatever the environment says"
    )
    sub.add_argument(
        "--timeout",
        type=float,
        default=100.0,
        metavar="SECONDS",
        help="give up on a request after this long (default 100)",
    )
    sub.add_argument(
        "--token-file",
        default=None,
        metavar="PATH",
        help="read the access token from this file (default: the GRAPH_TOKEN variable)",
    )


class _UsageError(Exception):
    """A configuration problem found before any request: exit 2."""


class _NoIds(_UsageError):
    """``send`` without ids: the usage line, then why."""


def _token(args: argparse.Namespace) -> str:
    """The token from --token-file, else GRAPH_TOKEN; never from the command line, never shown."""
    if args.token_file is not None:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise _UsageError(f"cannot read --token-file {args.token_file}: {why}") from None
        if not token:
            raise _UsageError(f"--token-file {args.token_file} is empty")
        return token
    token = os.environ.get("GRAPH_TOKEN", "").strip()
    if not token:
        raise _UsageError("set GRAPH_TOKEN to a Graph access token, or pass --token-file PATH")
    return token


def _client(args: argparse.Namespace) -> Client:
    proxy: str | bool | None = False if args.no_proxy else args.proxy
    return Client(
        _token(args),
        cloud=args.cloud,
        base_url=args.base_url,
        api_version=args.api_version,
        ca_bundle=args.ca_bundle,
        proxy_ca_bundle=args.proxy_ca_bundle,
        timeout=args.timeout,
        proxy=proxy,
    )


def _send_failed(exc: SendError, message_id: str | None = None) -> int:
    """One line on stderr for a failed send; exit 3 when the mail may have gone out, else 1."""
    hint = ""
    if exc.may_have_sent:
        hint = "; the message may have been sent: check Sent Items before sending again"
    where = "" if message_id is None else f"{message_id}: "
    print(f"graphsend: {where}{type(exc).__name__}: {exc}{hint}", file=sys.stderr)
    return EXIT_MAY_HAVE_SENT if exc.may_have_sent else EXIT_FAILED


def compose_one(args: argparse.Namespace) -> int:
    """``send-mail`` and ``compose``: build a Message from the arguments and send it."""
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
        with _client(args) as client:
            if args.command == "send-mail":
                receipt = client.send_mail(message, user=args.user)
            else:
                draft_id = client.create_draft(message, user=args.user)
                if args.draft_only:
                    print(draft_id)
                    return EXIT_SENT
                receipt = client.send(draft_id, user=args.user)
    except SendError as exc:  # first: graphsend.TimeoutError is an OSError too
        return _send_failed(exc)
    except (_UsageError, ValueError, TypeError, OSError) as exc:
        print(f"graphsend: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(_receipt_line(receipt))
    return EXIT_SENT


# ------------------------------------------------------------------------------------ send


def read_ids(lines: Iterable[str], source: str) -> list[tuple[str | None, str]]:
    """``(user, id)`` per line: ``ID`` (user None) or ``USER ID``; blank and # lines skipped.

    Raises:
        _UsageError: a line with more than two fields (named by ``source`` and line number).
    """
    items: list[tuple[str | None, str]] = []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) > 2:
            raise _UsageError(
                f"{source}:{number}: expected 'ID' or 'USER ID', got {len(fields)} fields"
            )
        items.append((fields[0], fields[1]) if len(fields) == 2 else (None, fields[0]))
    return items


def _collect_ids(args: argparse.Namespace, stdin: IO[str]) -> list[tuple[str | None, str]]:
    """Every id to send, in order: arguments (``-`` is stdin), then each --from-file."""
    items: list[tuple[str | None, str]] = []
    stdin_read = False
    sources: list[str] = [*args.ids, *args.from_file]
    for index, source in enumerate(sources):
        from_file = index >= len(args.ids)
        if source == "-":
            if stdin_read:
                continue  # stdin can be read once
            stdin_read = True
            items += read_ids(stdin, "stdin")
        elif from_file:
            try:
                with open(source, encoding="utf-8") as f:
                    items += read_ids(f, source)
            except (OSError, UnicodeDecodeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise _UsageError(f"cannot read --from-file {source}: {why}") from None
        else:
            items.append((None, source))
    if not items:
        raise _NoIds("no message ids given (arguments, --from-file PATH, or - for stdin)")
    # --user is the mailbox of every id that does not name its own.
    return [(user if user is not None else args.user, mid) for user, mid in items]


def send_ids(args: argparse.Namespace, stdin: IO[str] | None = None) -> int:
    """``send``: every id given, one result line (or JSON object) each; the exit status says
    whether all were sent (0), some failed and none may have been sent (1), or some may have
    been sent although they failed (3)."""
    try:
        if args.concurrency < 1:
            raise _UsageError("--concurrency must be at least 1")
        items = _collect_ids(args, sys.stdin if stdin is None else stdin)
        client = _client(args)
    except (_UsageError, ValueError, TypeError, OSError) as exc:
        if isinstance(exc, _NoIds):
            print(args.usage, end="", file=sys.stderr)
        print(f"graphsend: {exc}", file=sys.stderr)
        return EXIT_USAGE
    interrupted = False
    with client:
        try:
            results = _deliver(client, items, args)
        except (ValueError, TypeError) as exc:  # bad input: raised before anything is sent
            print(f"graphsend: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt as exc:
            from graphsend import interrupted_results

            known = interrupted_results(exc)
            if known is None:
                raise
            results, interrupted = known, True
    status = _report(items, results, args.json)
    if interrupted:
        print("graphsend: interrupted", file=sys.stderr)
        return status if status == EXIT_MAY_HAVE_SENT else EXIT_INTERRUPTED
    return status


def _deliver(
    client: Client, items: list[tuple[str | None, str]], args: argparse.Namespace
) -> list[Receipt | SendError]:
    """Send the items with ``send_many``, also a single one: on Ctrl-C it still says of each
    item whether its request had been written. One result per item, in order; with
    ``--journal``, a rerun after a crash sends only what was not sent."""
    return client.send_many(
        items,
        max_concurrency=args.concurrency,
        progress=True if args.progress else None,
        journal=args.journal,
    )


def _report(
    items: list[tuple[str | None, str]], results: list[Receipt | SendError], as_json: bool
) -> int:
    """Print every result (sent on stdout; failed on stderr, or all on stdout as JSON) and
    return the exit status they add up to."""
    status = EXIT_SENT
    several = len(items) > 1
    for (user, message_id), result in zip(items, results, strict=True):
        if as_json:
            print(json.dumps(_result_json(user, message_id, result)), flush=True)
        if isinstance(result, SendError):
            if as_json:
                code = EXIT_MAY_HAVE_SENT if result.may_have_sent else EXIT_FAILED
            else:
                code = _send_failed(result, message_id if several else None)
            status = max(status, code)
        elif not as_json:
            print(_receipt_line(result, message_id if several else None))
    return status


def _result_json(
    user: str | None, message_id: str, result: Receipt | SendError
) -> dict[str, object]:
    """One result as the --json object (keys as in the README)."""
    if isinstance(result, SendError):
        return {
            "id": message_id,
            "user": user,
            "sent": False,
            "status": getattr(result, "status", 0),
            "request-id": getattr(result, "request_id", None),
            "client-request-id": result.client_request_id,
            "may_have_sent": result.may_have_sent,
            "error": f"{type(result).__name__}: {result}",
        }
    return {
        "id": message_id,
        "user": user,
        "status": result.status,
        "request-id": result.request_id,
        "client-request-id": result.client_request_id,
        "may_have_sent": True,
        "error": None,
    }


def _receipt_line(receipt: Receipt, message_id: str | None = None) -> str:
    where = f"{message_id}: " if message_id is not None else ""
    return (
        f"{where}sent: {receipt.status} request-id={receipt.request_id} "
        f"client-request-id={receipt.client_request_id} elapsed={receipt.elapsed * 1000:.1f}ms"
    )


def demo() -> int:
    """``demo``: send drafts, a failure, a composed message and a sendMail through FakeGraph.

    Returns:
        0.
    """
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

"""Send a list of drafts with a progress bar, and report every failure.

    GRAPH_TOKEN=... python send_list.py ids.txt

Each line of the file is a draft id, or ``USER ID`` to send from that mailbox. graphsend keeps
at most 4 requests in flight per mailbox (Outlook's limit per app), pauses a throttled mailbox
for its Retry-After while the others go on, and returns one result per line, in order. The
progress bar is tqdm's when tqdm is installed, otherwise a counter on stderr.
"""

from __future__ import annotations

import os
import sys

import graphsend


def read_items(path: str) -> list[str | tuple[str | None, str]]:
    items: list[str | tuple[str | None, str]] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) == 1:
                items.append(fields[0])
            elif len(fields) == 2:
                items.append((fields[0], fields[1]))
    return items


def main() -> int:
    items = read_items(sys.argv[1])
    client = graphsend.Client(
        os.environ["GRAPH_TOKEN"],
        base_url=os.environ.get("GRAPH_BASE_URL"),
        ca_bundle=os.environ.get("GRAPH_CA_BUNDLE"),
    )
    with client:
        results = client.send_many(items, progress=True)
    failed = [
        (item, r)
        for item, r in zip(items, results, strict=True)
        if isinstance(r, graphsend.SendError)
    ]
    for item, error in failed:
        print(f"{item}: {error} (may have sent: {error.may_have_sent})", file=sys.stderr)
    print(f"{len(items) - len(failed)} sent, {len(failed)} failed")
    if any(error.may_have_sent for _, error in failed):
        return 3  # check Sent Items before sending those again
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

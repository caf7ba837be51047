"""Send a list of drafts exactly once, even across faults and crashes.

    GRAPH_TOKEN=... python exactly_once.py ids.txt run.db [RECONCILE_WAIT_SECONDS]

Each line of the file is a draft id, or ``USER ID`` (as for send_list.py). Two things make
the job exactly-once:

- ``Retry(reconcile_ambiguous=True)``: when a send fails in a way that may have delivered it (a
  504, a timeout after the request went out), graphsend reads the mailbox instead of guessing.
  Sent: a Receipt with ``reconciled=True``. Still a draft after the settling time: sent again.
  The mailbox cannot tell (no Mail.ReadBasic, say): the error, with ``may_have_sent=True``.
- ``journal=``: every send is recorded in a SQLite file before its request goes out. If this
  script is killed half-way, run the same command again: what was sent is not sent twice, what
  was in flight is looked up in the mailbox, the rest is sent.

The settling time (default 60 s) must exceed how long your tenant takes to move a sent message
to Sent Items.
"""

from __future__ import annotations

import os
import sys

from send_list import read_items  # the same file format: ID or USER ID per line

import graphsend


def main() -> int:
    items = read_items(sys.argv[1])
    journal = sys.argv[2]
    wait = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
    client = graphsend.Client(
        os.environ["GRAPH_TOKEN"],
        base_url=os.environ.get("GRAPH_BASE_URL"),
        ca_bundle=os.environ.get("GRAPH_CA_BUNDLE"),
        retry=graphsend.Retry(reconcile_ambiguous=True, reconcile_wait=wait),
    )
    with client:
        results = client.send_many(items, journal=journal)
    receipts = [r for r in results if isinstance(r, graphsend.Receipt)]
    errors = [r for r in results if isinstance(r, graphsend.SendError)]
    reconciled = sum(r.reconciled for r in receipts)
    print(f"{len(receipts)} sent ({reconciled} reconciled: the answer was lost, the mailbox")
    print(f"showed the message sent), {len(errors)} failed")
    for error in errors:
        print(f"{error} (may have sent: {error.may_have_sent})", file=sys.stderr)
    if any(error.may_have_sent for error in errors):
        return 3  # the mailbox could not tell: check Sent Items before sending those again
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

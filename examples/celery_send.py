"""Send a list of drafts through Celery workers that share Graph's per-mailbox limits.

    redis-server                                     # or any Redis the workers reach
    celery -A mail_tasks worker --concurrency 4      # on each machine, as many as you like
    GRAPH_TOKEN=... python celery_send.py ids.txt    # where the drafts come from

Each line of the file is ``USER ID``: a mailbox and one of its drafts. The list goes out as
tasks of 25 drafts; each task is a ``send_many`` in some worker (see mail_tasks.py). Results come
back through Celery's JSON result backend as graphsend's own objects: a ``Receipt``, or the
exception with every field (``may_have_sent`` included).
"""

from __future__ import annotations

import sys

from mail_tasks import send

import graphsend


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        items = [line.split() for line in f if line.strip()]  # [user, draft id]
    pending = [send.delay(items=items[i : i + 25]) for i in range(0, len(items), 25)]
    results = [result for task in pending for result in task.get(timeout=600)]

    failed = 0
    for (user, draft_id), result in zip(items, results, strict=True):
        if isinstance(result, graphsend.Receipt):
            print(f"sent     {user} {draft_id[:16]}... request-id {result.request_id}")
        else:
            failed += 1
            print(f"FAILED   {user} {draft_id[:16]}... {type(result).__name__}: {result}")
    print(f"{len(results) - failed} sent, {failed} failed, by Celery workers")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

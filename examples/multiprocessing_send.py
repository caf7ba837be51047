"""Send from several processes: one Client per worker process, results back in the parent.

    GRAPH_TOKEN=... python multiprocessing_send.py ids.txt

Each worker makes its own Client in the pool's initializer (a Client made before a fork also
works: the child opens its own connections). Receipts and exceptions pickle, so every result,
``may_have_sent`` included, comes back intact. One process with ``send_many`` is usually
enough (the GIL is released while libcurl waits); processes help when your own per-message
work is CPU-bound.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor

import graphsend

_client: graphsend.Client | None = None


def _start_worker() -> None:
    global _client
    _client = graphsend.Client(
        os.environ["GRAPH_TOKEN"],
        base_url=os.environ.get("GRAPH_BASE_URL"),
        ca_bundle=os.environ.get("GRAPH_CA_BUNDLE"),
    )


def send_chunk(ids: list[str]) -> list[graphsend.Receipt | graphsend.SendError]:
    assert _client is not None
    return _client.send_many(ids)


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        ids = [line.strip() for line in f if line.strip()]
    workers = 2
    chunks = [ids[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers, initializer=_start_worker) as pool:
        results = [r for chunk in pool.map(send_chunk, chunks) for r in chunk]
    failed = [r for r in results if isinstance(r, graphsend.SendError)]
    print(f"{len(results) - len(failed)} sent, {len(failed)} failed, by {workers} processes")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

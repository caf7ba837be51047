"""asyncio: compose and send on your own event loop, no thread.

    GRAPH_TOKEN=... python async_send.py megan@contoso.com

Sends one message with sendMail, then makes three drafts concurrently (``asyncio.gather``) and
sends them with ``send_many``. AsyncClient takes the same arguments as Client; an async
credential (``azure.identity.aio``) is awaited in the loop.
"""

from __future__ import annotations

import asyncio
import os
import sys

import graphsend


async def main(recipient: str) -> int:
    async with graphsend.AsyncClient(
        os.environ["GRAPH_TOKEN"],
        base_url=os.environ.get("GRAPH_BASE_URL"),
        ca_bundle=os.environ.get("GRAPH_CA_BUNDLE"),
    ) as client:
        receipt = await client.send_mail(
            graphsend.Message("Lunch?", "12:30 at the usual place?", to=recipient)
        )
        print(f"sendMail: {receipt.status} request-id {receipt.request_id}")

        drafts = await asyncio.gather(
            *(
                client.create_draft(
                    graphsend.Message(f"Report {n}", "Numbers inside.", to=recipient)
                )
                for n in range(1, 4)
            )
        )
        results = await client.send_many(drafts)
    failed = [r for r in results if isinstance(r, graphsend.SendError)]
    print(f"drafts: {len(results) - len(failed)} sent, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))

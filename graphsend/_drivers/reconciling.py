"""Running ``_operations/reconcile.plan`` on the event loop (AsyncClient.reconcile) and inside
the bulk Scheduler (send_many and AsyncClient with ``Retry(reconcile_ambiguous=True)``)."""

from __future__ import annotations

import asyncio

from graphsend._operations import reconcile as _reconcile
from graphsend._rules.errors import SendError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from graphsend._drivers.async_client import AsyncClient
    from graphsend._native import Result
    from graphsend._operations.reconcile import Verdict


async def reconcile_async(
    owner: AsyncClient, message_id: str, user: str | None, wait: float, stamp: str | None
) -> Verdict:
    """The plan's reads as one-item calls on the loop's Scheduler, its pauses awaited."""
    if stamp is None:
        stamp = owner._client._stamps.get(message_id)
    steps = _reconcile.plan(message_id, stamp, wait)
    try:
        step = next(steps)
        while True:
            answer: Result | None = None
            if step[0] == "get":
                try:
                    answer = await owner._run_op(step[1], user)
                except SendError:
                    answer = None  # no token, or the driver stopped: this read tells nothing
            else:
                await asyncio.sleep(step[1])
            step = steps.send(answer)
    except StopIteration as done:
        verdict: Verdict = done.value
        return verdict

"""Client.send_mail: one sendMail on this thread, its ambiguous failure settled by looking its
stamp up in Sent Items when ``Retry(reconcile_ambiguous=True)`` (``_operations/reconcile.py``).
The bulk Scheduler and AsyncClient do the same in ``_drivers/reconciling.py``."""

from __future__ import annotations

import time

from graphsend._drivers import sync as _driver
from graphsend._operations import reconcile as _reconcile
from graphsend._rules.errors import SendError
from graphsend._rules.retry import RetryState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from graphsend._drivers.client import Client
    from graphsend._operations.catalog import Operation
    from graphsend._rules.receipt import Receipt


def run(client: Client, op: Operation[Receipt], user: str | None) -> Receipt:
    """Send; a failure that may have sent it and has a stamp to look up is reconciled: the
    sent copy found gives a Receipt with ``reconciled=True``; anything else raises the original
    error (never a resend: a sendMail's absence from Sent Items proves nothing)."""
    try:
        return _driver.run(client, op, user)
    except SendError as error:
        policy = client.retry
        if not _reconcile.may_reconcile(policy, error, None, op.stamp):
            raise
        started = time.monotonic()
        verdict = _driver.reconcile(client, None, user, policy.reconcile_wait, op.stamp)
        if verdict == "not_sent":  # (a stamp search never says so; never resend if it did)
            verdict = "unknown"
        elapsed = time.monotonic() - started
        got = _reconcile.after(verdict, error, RetryState(policy), elapsed, None, user)
        if isinstance(got, SendError) or got is None:
            raise
        return got

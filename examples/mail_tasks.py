"""The Celery app of celery_send.py: run its workers on as many machines as you like.

    celery -A mail_tasks worker --concurrency 4

Configured by the environment: REDIS_URL (Celery's broker and result backend, the tasks' run
state and the shared limiter; default redis://localhost:6379/0), GRAPH_TOKEN, and optionally
GRAPH_BASE_URL and GRAPH_CA_BUNDLE.
"""

from __future__ import annotations

import os

from celery import Celery

import graphsend
from graphsend.integrations.celery import send_task

REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")

app = Celery("mail_tasks", broker=REDIS_URL, backend=REDIS_URL)


def make_client() -> graphsend.Client:
    """Called once in each worker process (after the fork)."""
    return graphsend.Client(
        os.environ["GRAPH_TOKEN"],  # in production: a credential (azure.identity) instead
        base_url=os.environ.get("GRAPH_BASE_URL"),
        ca_bundle=os.environ.get("GRAPH_CA_BUNDLE"),
        # Slots in Redis, shared by every worker process on every machine: together they keep
        # Graph's 4 requests in flight per mailbox and Exchange's 30 messages a minute.
        limiter=graphsend.RedisLimiter(REDIS_URL, messages_per_minute=30),
    )


# The task: one draft (send.delay(id, user=...)) or a batch (send.delay(items=[[user, id], ...])).
# It retries only what provably was not sent, and a redelivered task (its worker died) asks the
# mailbox what went out instead of sending it again.
send = send_task(app, make_client)

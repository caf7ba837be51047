"""The Celery app that tests/test_scale.py runs real workers of (``celery -A celery_app worker``).

Configured by environment variables the test sets: GS_BROKER (Redis broker and result backend),
GS_LIMITER (the RedisLimiter's Redis), GS_BASE and GS_TOKEN (FakeGraph), GS_LEASE (limiter lease),
GS_VISIBILITY (the broker's visibility timeout), GS_RUN_LEASE, GS_RECONCILE_WAIT.
"""

from __future__ import annotations

import os

from celery import Celery

import graphsend
from graphsend.integrations.celery import send_task

env = os.environ
app = Celery("gs_scale", broker=env["GS_BROKER"], backend=env["GS_BROKER"])
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=1,
    broker_transport_options={"visibility_timeout": float(env.get("GS_VISIBILITY", "3600"))},
    result_expires=600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


def make_client() -> graphsend.Client:
    return graphsend.Client(
        env["GS_TOKEN"],
        base_url=env["GS_BASE"],
        timeout=float(env.get("GS_TIMEOUT", "10")),
        limiter=graphsend.RedisLimiter(
            env["GS_LIMITER"],
            per_mailbox=4,
            messages_per_minute=int(env["GS_MPM"]) if env.get("GS_MPM") else None,
            window=float(env.get("GS_WINDOW", "60")),
            lease=float(env.get("GS_LEASE", "30")),
            socket_timeout=1.0,
            prefix="celery-test",
            poll=float(env.get("GS_POLL", "0.005")),
        ),
    )


send = send_task(
    app,
    make_client,
    lease=float(env.get("GS_RUN_LEASE", "30")),
    reconcile_wait=float(env.get("GS_RECONCILE_WAIT", "60")),
)

"""The Retry defaults and wait budget the README states, pinned against the surviving mutants of
`make mutants` (issue 15 item 3): each test here failed against a generated mutant of _retry.py
that the rest of the suite let through."""

from __future__ import annotations

import math
import os
import time

import pytest

import graphsend
from graphsend._rules.retry import RetryState
from graphsend._rules.tokens import token_source
from graphsend.testing import FakeGraph

SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))


def throttled(retry_after: float) -> graphsend.ThrottledError:
    return graphsend.ThrottledError(429, retry_after=retry_after)


def test_i15_03_retry_defaults_are_the_documented_ones() -> None:
    # README: Retry(max_attempts=4, max_total_wait=180.0, backoff_base=1.0, backoff_max=60.0, ...)
    retry = graphsend.Retry()
    assert retry.max_attempts == 4
    assert retry.max_total_wait == 180.0
    assert retry.backoff_base == 1.0
    assert retry.backoff_max == 60.0
    assert "max_attempts=4" in repr(retry) and "backoff_max=60.0" in repr(retry)


def test_i15_03_max_total_wait_adds_up_every_wait_and_allows_exactly_the_budget() -> None:
    state = RetryState(graphsend.Retry(max_attempts=10, max_total_wait=2.0))
    tokens = token_source("t", "https://graph.microsoft.com/.default")
    # Two 1 s waits fit a 2 s budget exactly; a third would exceed it: give up, without waiting.
    assert state.next_wait(throttled(1.0), tokens) == 1.0
    assert state.next_wait(throttled(1.0), tokens) == 1.0
    assert state.next_wait(throttled(1.0), tokens) is None
    assert state.waited == 2.0


@pytest.mark.parametrize(
    "options",
    [
        {"max_attempts": True},
        {"backoff_base": True},
        {"backoff_base": -1.0},
        {"backoff_max": math.nan},
        {"max_total_wait": -0.5},
    ],
)
def test_i15_03_retry_refuses_bools_negatives_and_nan(options: dict[str, object]) -> None:
    with pytest.raises((TypeError, ValueError)):
        graphsend.Retry(**options)  # type: ignore[arg-type]


def test_i15_03_a_401_with_a_token_provider_is_retried_at_once(graph: FakeGraph) -> None:
    # "A 401 with a token provider is retried once, at once, with a freshly fetched token."
    tokens = iter(["stale-token", graph.token])
    with graphsend.Client(lambda: next(tokens), base_url=graph.base_url) as client:
        start = time.monotonic()
        receipt = client.send(graph.create_draft())
        elapsed = time.monotonic() - start
    assert receipt.status == 202
    assert [r.status for r in graph.requests] == [401, 202]
    assert elapsed < 0.5 * SCALE, elapsed

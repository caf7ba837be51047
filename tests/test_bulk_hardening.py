"""send_many hardening (issue 9 items 17, 21, 22): token provider failures per item, a DEBUG
record per attempt, long pauses and progress visible without logging, no \\r into non-terminals."""

from __future__ import annotations

import logging
import sys

import pytest

import graphsend
from graphsend import Client
from graphsend.testing import FakeGraph


@pytest.fixture
def no_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plain counter, whether or not tqdm is installed here."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)


def test_i9_17_failing_provider_in_send_many_is_per_item(graph: FakeGraph) -> None:
    calls = 0

    def provider() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the vault is down")
        return graph.token

    drafts = [graph.create_draft() for _ in range(5)]
    results = Client(provider, base_url=graph.base_url).send_many(drafts, max_per_mailbox=1)
    assert isinstance(results[0], graphsend.AuthenticationError)
    assert results[0].may_have_sent is False
    assert results[0].code == "RuntimeError"
    assert "the vault is down" in str(results[0])
    assert isinstance(results[0].__cause__, RuntimeError)
    assert all(isinstance(r, graphsend.Receipt) for r in results[1:])
    assert len(graph.sent_items()) == 4


def test_i9_17_provider_that_always_fails_fails_each_item(graph: FakeGraph) -> None:
    def provider() -> str:
        raise OSError("no route to the token endpoint")

    drafts = [graph.create_draft() for _ in range(3)]
    seen: list[int] = []
    results = Client(provider, base_url=graph.base_url).send_many(
        drafts, progress=lambda done, total: seen.append(done)
    )
    assert [type(r) for r in results] == [graphsend.AuthenticationError] * 3
    assert seen == [1, 2, 3]
    assert graph.requests == []


def test_i9_21_send_many_debug_record_per_attempt(
    graph: FakeGraph, caplog: pytest.LogCaptureFixture
) -> None:
    graph.fail_next(503, "ServiceUnavailable", retry_after="0.1")
    drafts = [graph.create_draft() for _ in range(3)]
    with caplog.at_level(logging.DEBUG, logger="graphsend"):
        results = Client(graph.token, base_url=graph.base_url).send_many(drafts)
    assert all(isinstance(r, graphsend.Receipt) for r in results)
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(debug) == 4  # three sends, one of them twice
    assert sum("-> 503" in m and "attempt=1" in m for m in debug) == 1
    assert sum("-> 202" in m and "attempt=2" in m for m in debug) == 1
    assert sum("-> 202" in m and "attempt=1" in m for m in debug) == 2
    for message in debug:
        assert message.startswith("POST /me/messages/")  # as Client.send logs it
        assert "request-id=" in message and "client-request-id=" in message
    crids = {r.client_request_id for r in results}
    assert {m.split("client-request-id=")[1].split()[0] for m in debug} == crids
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_i9_21_a_long_pause_shows_on_the_progress_counter(
    graph: FakeGraph, capfd: pytest.CaptureFixture[str], no_tqdm: None
) -> None:
    user = "slow@contoso.com"
    graph.fail_next(429, "ApplicationThrottled", retry_after=1, user=user)
    items = [(user, graph.create_draft(user)), graph.create_draft()]
    results = Client(graph.token, base_url=graph.base_url).send_many(items, progress=True)
    assert all(isinstance(r, graphsend.Receipt) for r in results)
    err = capfd.readouterr().err
    assert f"mailbox {user} throttled, resuming in 1 s" in err
    assert err.splitlines()[-1] == "graphsend: sent 2/2"


def test_i9_22_counter_writes_few_lines_into_non_terminals(
    graph: FakeGraph, capfd: pytest.CaptureFixture[str], no_tqdm: None
) -> None:
    graph.record_requests = False
    users = [f"user{i % 20}@contoso.com" for i in range(2000)]
    items = [(user, graph.create_draft(user)) for user in users]
    results = Client(graph.token, base_url=graph.base_url).send_many(items, progress=True)
    assert all(isinstance(r, graphsend.Receipt) for r in results)
    err = capfd.readouterr().err
    assert "\r" not in err  # capfd is not a terminal
    lines = err.splitlines()
    assert 1 <= len(lines) <= 11, lines
    assert lines[-1] == "graphsend: sent 2000/2000"

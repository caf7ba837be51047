"""Client.send_many on the native Engine: caps, throttling, order, Ctrl-C, memory (issue 4)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
from helpers import interrupt_subprocess

import graphsend
from graphsend import Client, Retry
from graphsend.testing import FakeGraph


def mailbox(i: int) -> str:
    return f"user{i}@contoso.com"


def test_400_sends_over_40_mailboxes_respect_the_caps() -> None:
    latency = 0.1
    with FakeGraph(latency=latency, mailbox_concurrency_limit=4) as graph:
        items = [(mailbox(i % 40), graph.create_draft(mailbox(i % 40))) for i in range(400)]
        client = Client(graph.token, base_url=graph.base_url)
        start = time.monotonic()
        results = client.send_many(items, max_concurrency=400)
        elapsed = time.monotonic() - start
        assert all(isinstance(r, graphsend.Receipt) for r in results), results[:3]
        assert max(graph.peak_in_flight(mailbox(i)) for i in range(40)) <= 4
        assert graph.peak_in_flight() > 40  # mailboxes really ran side by side
        # Results in input order: each receipt belongs to the request for that item's draft.
        crid_by_id = {r.message_id: r.client_request_id for r in graph.requests}
        for (_, message_id), receipt in zip(items, results, strict=True):
            assert crid_by_id[message_id] == receipt.client_request_id
        ideal = 3 * latency  # 10 sends per mailbox, 4 at a time: 3 rounds
        assert elapsed < 2 * ideal, f"{elapsed:.2f}s against an ideal of {ideal:.2f}s"


def test_a_throttled_mailbox_pauses_while_the_others_go_on() -> None:
    with FakeGraph(latency=0.05) as graph:
        slow = "slow@contoso.com"
        items = [(slow, graph.create_draft(slow)) for _ in range(4)]
        items += [(mailbox(i % 8), graph.create_draft(mailbox(i % 8))) for i in range(32)]
        graph.fail_next(429, "ApplicationThrottled", retry_after=1, count=4, user=slow)
        start = time.monotonic()
        results = Client(graph.token, base_url=graph.base_url).send_many(items)
        assert all(isinstance(r, graphsend.Receipt) for r in results)
        answered = {}
        for r in graph.requests:
            if r.status == 202:
                answered.setdefault(r.user, []).append(r.answered_at - start)
        others_done = max(t for user, times in answered.items() if user != slow for t in times)
        slow_times = answered[slow]
        assert len(slow_times) == 4
        assert others_done < 0.8
        assert 0.95 < min(slow_times) < 1.6
        assert len([r for r in graph.requests if r.user == slow]) == 8  # 4 throttled, 4 sent


def test_mixed_results_land_at_their_positions(graph: FakeGraph) -> None:
    denied = "denied@contoso.com"
    good = graph.create_draft()
    items: list = [good, "AAMkAGunknown", (denied, graph.create_draft(denied)), good]
    graph.fail_next(403, "ErrorAccessDenied", "Access is denied.", user=denied)
    results = Client(graph.token, base_url=graph.base_url).send_many(items)
    assert isinstance(results[0], graphsend.Receipt)
    assert isinstance(results[1], graphsend.NotFoundError)
    assert isinstance(results[2], graphsend.PermissionDeniedError)
    assert results[2].code == "ErrorAccessDenied"
    # The same draft twice: one of the two sends wins, the other finds it gone.
    assert isinstance(results[3], (graphsend.Receipt, graphsend.NotFoundError))
    assert isinstance(results[0], graphsend.Receipt) != isinstance(results[3], graphsend.Receipt)
    assert len(graph.sent_items()) == 1


def test_ambiguous_failures_are_not_retried(graph: FakeGraph) -> None:
    graph.fail_next(504, "GatewayTimeout")
    results = Client(graph.token, base_url=graph.base_url).send_many([graph.create_draft()])
    assert isinstance(results[0], graphsend.ServerError)
    assert results[0].may_have_sent is True
    assert len(graph.requests) == 1


def test_stop_on_error_reports_unsent_items(graph: FakeGraph) -> None:
    drafts = [graph.create_draft() for _ in range(6)]
    graph.fail_next(403, "ErrorAccessDenied")
    client = Client(graph.token, base_url=graph.base_url, retry=Retry(max_attempts=1))
    results = client.send_many(drafts, max_per_mailbox=1, stop_on_error=True)
    assert isinstance(results[0], graphsend.PermissionDeniedError)
    assert all(type(r) is graphsend.SendError and not r.may_have_sent for r in results[1:])
    assert len(graph.requests) == 1


def test_bad_items_raise_before_anything_is_sent(graph: FakeGraph) -> None:
    client = Client(graph.token, base_url=graph.base_url)
    for items in ([graph.create_draft(), ""], [("a", "b", "c")], [42]):
        with pytest.raises((ValueError, TypeError)):
            client.send_many(items)
    with pytest.raises(ValueError):
        client.send_many([graph.create_draft()], max_per_mailbox=0)
    assert graph.requests == []


def test_progress_callback(graph: FakeGraph) -> None:
    seen: list[tuple[int, int]] = []
    drafts = [graph.create_draft() for _ in range(5)]
    Client(graph.token, base_url=graph.base_url).send_many(
        drafts, progress=lambda done, total: seen.append((done, total))
    )
    assert seen == [(i, 5) for i in range(1, 6)]


def test_token_refresh_on_401_in_bulk(graph: FakeGraph) -> None:
    tokens = iter(["stale"] + [graph.token] * 10)
    client = Client(lambda: next(tokens), base_url=graph.base_url)
    results = client.send_many([graph.create_draft()])
    assert isinstance(results[0], graphsend.Receipt)
    assert len(graph.requests) == 2


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import sys
    import graphsend
    from graphsend.testing import FakeGraph
    with FakeGraph() as graph:
        drafts = [graph.create_draft() for _ in range(6)]
        graph.stall_next(4)  # the first four never get an answer
        client = graphsend.Client(graph.token, base_url=graph.base_url)
        print("ready", flush=True)
        try:
            client.send_many(drafts, max_per_mailbox=4)
        except KeyboardInterrupt as exc:
            kinds = [type(r).__name__ + ("?" if getattr(r, "may_have_sent", False) else "")
                     for r in exc.results]
            print(" ".join(kinds), flush=True)
            sys.exit(3)
    """
)


def test_ctrl_c_during_send_many_reports_partial_results() -> None:
    returncode, output, seconds = interrupt_subprocess(CTRL_C_SCRIPT, after=0.7)
    assert returncode == 3
    assert seconds < 1.0
    # Four stalled in flight: cancelled after their requests were written, so they may have
    # been sent. Two never started: not sent.
    assert output.split() == ["TransportError?"] * 4 + ["SendError"] * 2


MEMORY_SCRIPT = textwrap.dedent(
    """
    import sys
    import graphsend
    base_url, token, path = sys.argv[1:4]
    ids = open(path).read().split()

    def rss_kb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

    client = graphsend.Client(token, base_url=base_url)
    assert all(isinstance(r, graphsend.Receipt) for r in client.send_many(ids[:2000]))
    before = rss_kb()
    for start in range(2000, 22000, 2000):
        results = client.send_many(ids[start:start + 2000])
        assert all(isinstance(r, graphsend.Receipt) for r in results), results[0]
        del results
    print(rss_kb() - before)
    """
)


def test_memory_stays_flat_over_20000_sends(tmp_path) -> None:
    with FakeGraph() as graph:
        graph.record_requests = False
        ids_file = tmp_path / "ids"
        ids_file.write_text("\n".join(graph.create_drafts(22000)))
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_SCRIPT, graph.base_url, graph.token, str(ids_file)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
    growth_kb = int(out.stdout.strip())
    assert growth_kb < 4096, f"RSS grew {growth_kb} KiB over 20,000 sends"


def test_progress_bar_on_stderr(graph: FakeGraph, capfd: pytest.CaptureFixture[str]) -> None:
    drafts = [graph.create_draft() for _ in range(5)]
    results = Client(graph.token, base_url=graph.base_url).send_many(drafts, progress=True)
    assert all(isinstance(r, graphsend.Receipt) for r in results)
    assert "5/5" in capfd.readouterr().err  # tqdm's bar or the plain counter

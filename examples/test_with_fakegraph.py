"""Test your own code against FakeGraph, a real Graph-like server on loopback (run with pytest).

graphsend installs a pytest plugin: the ``fake_graph`` fixture is a started FakeGraph, stopped
after the test. Nothing is mocked, so your code's retries, timeouts and error handling meet real
HTTP: assert on what the server received and what your code reports.
"""

from __future__ import annotations

import graphsend
from graphsend.testing import FakeGraph


# --- the code under test: what an application might have --------------------------------
def send_report(client: graphsend.Client, recipient: str, csv: bytes) -> str:
    """Mail the report; returns the draft's id (for the audit log)."""
    message = graphsend.Message(
        "Daily report",
        "Attached.",
        to=recipient,
        attachments=[graphsend.Attachment(csv, name="report.csv")],
    )
    draft_id = client.create_draft(message)
    client.send(draft_id)
    return draft_id


def send_all(client: graphsend.Client, drafts: list[str]) -> list[str]:
    """Send drafts; returns the ids that failed without having been sent (safe to retry)."""
    results = client.send_many(drafts)
    return [
        d
        for d, r in zip(drafts, results, strict=True)
        if isinstance(r, graphsend.SendError) and not r.may_have_sent
    ]


# --- the tests ----------------------------------------------------------------------------
def test_the_report_goes_out_with_its_attachment(fake_graph: FakeGraph) -> None:
    with graphsend.Client(fake_graph.token, base_url=fake_graph.base_url) as client:
        draft_id = send_report(client, "bob@contoso.com", b"day,count\n1,42\n")
    (sent,) = fake_graph.sent_items()
    assert sent.id == draft_id and sent.subject == "Daily report"
    assert [r.address for r in sent.to] == ["bob@contoso.com"]
    assert sent.attachment("report.csv").content_bytes == b"day,count\n1,42\n"


def test_a_throttled_send_is_retried_and_a_missing_draft_reported(fake_graph: FakeGraph) -> None:
    drafts = fake_graph.create_drafts(3)
    fake_graph.fail_next(429, retry_after=0.1)  # the first request is throttled, then retried
    with graphsend.Client(fake_graph.token, base_url=fake_graph.base_url) as client:
        assert send_all(client, [*drafts, "AAMkAGone="]) == ["AAMkAGone="]
    assert sorted(m.id for m in fake_graph.sent_items()) == sorted(drafts)
    assert [r.status for r in fake_graph.requests].count(429) == 1

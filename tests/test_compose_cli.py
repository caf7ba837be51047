"""Issue 11 CLI: `graphsend send-mail` and `graphsend compose [--draft-only]` against FakeGraph."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphsend.__main__ import main
from graphsend.testing import FakeGraph


@pytest.fixture
def env(graph: FakeGraph, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("GRAPH_TOKEN", graph.token)
    return ["--base-url", graph.base_url]


def test_i11_cli_send_mail(graph: FakeGraph, env: list[str], tmp_path: Path, capsys) -> None:
    body = tmp_path / "body.html"
    body.write_text("<p>hi</p>", encoding="utf-8")
    att = tmp_path / "notes.txt"
    att.write_bytes(b"notes")
    argv = ["send-mail", "--to", "a@b.com", "--to", "Bob <bob@c.com>", "--subject", "Hi"]
    argv += [
        "--body-file",
        str(body),
        "--html",
        "--attach",
        str(att),
        "--user",
        "adele@contoso.com",
    ]
    assert main(argv + env) == 0
    assert capsys.readouterr().out.startswith("sent: 202 ")
    (req,) = graph.requests
    assert req.path == "/v1.0/users/adele@contoso.com/sendMail"
    (sent,) = graph.delivered()
    assert (sent.subject, sent.body, sent.body_type) == ("Hi", "<p>hi</p>", "html")
    assert [r.address for r in sent.to] == ["a@b.com", "bob@c.com"]
    assert sent.attachments[0].content_bytes == b"notes"


def test_i11_cli_compose_draft_only_prints_the_id(graph: FakeGraph, env: list[str], capsys) -> None:
    argv = ["compose", "--draft-only", "--to", "a@b.com", "--subject", "Later", "--body", "x"]
    assert main(argv + env) == 0
    draft_id = capsys.readouterr().out.strip()
    assert graph.message(draft_id).subject == "Later" and graph.sent_items() == []
    assert main(["compose", "--to", "a@b.com", "--subject", "Now", *env]) == 0
    assert [m.subject for m in graph.sent_items()] == ["Now"]


def test_i11_cli_bad_input_exit_2_before_any_request(
    graph: FakeGraph, env: list[str], tmp_path: Path, capsys
) -> None:
    assert main(["send-mail", "--to", "not-an-address", "--subject", "x", *env]) == 2
    assert main(["compose", "--to", "a@b.c", "--attach", str(tmp_path / "missing"), *env]) == 2
    assert "not found" in capsys.readouterr().err
    assert graph.requests == []


def test_i11_cli_needs_the_token(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("GRAPH_TOKEN", raising=False)
    assert main(["send-mail", "--to", "a@b.c"]) == 2
    assert "GRAPH_TOKEN" in capsys.readouterr().err

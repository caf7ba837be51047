"""Issue 14, CLI for operators: `graphsend send` with ids from arguments, files and stdin, --json,
exit statuses 0/1/3, --version, and a token that never reaches the output.

Everything runs against FakeGraph on loopback; the subprocess tests run the installed program as
an operator would, so stderr is the real one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from loopback import ConnectProxy

import graphsend
from graphsend.__main__ import main
from graphsend.testing import FakeGraph

SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))
SECRET = "eyJ0eXAiOiJKV1QiSECRET-TOKEN-VALUE"


@pytest.fixture
def env(graph: FakeGraph, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("GRAPH_TOKEN", graph.token)
    return ["--base-url", graph.base_url]


def run(args: list[str], *, token: str | None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`python -m graphsend ARGS` in a child process, GRAPH_TOKEN set to ``token``."""
    child_env = {k: v for k, v in os.environ.items() if k != "GRAPH_TOKEN"}
    if token is not None:
        child_env["GRAPH_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "graphsend", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=child_env,
        timeout=60 * SCALE,
    )


def json_lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


def test_i14_cli_version(capsys) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"graphsend {graphsend.__version__} (libcurl ")
    # The console script installed by pip says the same.
    script = Path(sys.executable).with_name("graphsend")
    if script.exists():
        done = subprocess.run([str(script), "--version"], capture_output=True, text=True)
        assert done.returncode == 0 and done.stdout == out


def test_i14_cli_ids_from_arguments_file_and_stdin(graph: FakeGraph, tmp_path: Path) -> None:
    a, b, c, d = graph.create_drafts(4)
    graph.add_mailbox("adele@contoso.com")
    e = graph.create_draft("adele@contoso.com")
    listing = tmp_path / "ids.txt"
    listing.write_text(f"# drafts of the day\n\n{c}\nadele@contoso.com {e}\n", encoding="utf-8")
    done = run(
        ["send", a, b, "-", "--from-file", str(listing), "--base-url", graph.base_url],
        token=graph.token,
        stdin=f"{d}\n",
    )
    assert done.returncode == 0, done.stderr
    # Every id went to the server exactly once, from the mailbox its line named.
    sent = {(m.user, m.id) for m in graph.sent_items()}
    assert {mid for _, mid in sent} == {a, b, c, d, e}
    assert len(graph.requests) == 5
    assert {r.message_id: r.user for r in graph.requests}[e] == "adele@contoso.com"
    lines = done.stdout.splitlines()
    assert sorted(line.split(": sent: 202 ")[0] for line in lines) == sorted([a, b, c, d, e])
    assert done.stderr == ""


def test_i14_cli_json_one_object_per_result_and_exit_1(graph: FakeGraph, env: list[str], capsys):
    ok, gone = graph.create_drafts(2)
    assert main(["send", gone, *env]) == 0
    graph.clear_requests()
    capsys.readouterr()
    code = main(["send", ok, gone, "--json", "--user", graph.default_user, *env])
    out = capsys.readouterr().out
    assert code == 1  # one failed, and a 404 cannot have sent anything
    results = json_lines(out)
    assert [r["id"] for r in results] == [ok, gone]
    by_id = {r.message_id: r for r in graph.requests}
    for result in results:
        assert set(result) >= {
            "id",
            "user",
            "status",
            "request-id",
            "client-request-id",
            "may_have_sent",
            "error",
        }
        assert result["user"] == graph.default_user
        # The ids are those the server saw and answered with.
        assert result["client-request-id"] == by_id[result["id"]].client_request_id
        assert result["request-id"]
    assert results[0]["status"] == 202 and results[0]["error"] is None
    assert results[1]["status"] == 404 and results[1]["may_have_sent"] is False
    assert "NotFoundError" in str(results[1]["error"])


def test_i14_cli_exit_3_when_any_may_have_been_sent(graph: FakeGraph, env: list[str], capsys):
    first, second, third = graph.create_drafts(3)
    graph.fail_next(404)  # the first send: 1 on its own
    graph.fail_next(502)  # the second: a 502 may have sent it
    code = main(["send", first, second, third, "--concurrency", "1", *env])
    err = capsys.readouterr().err
    assert code == 3
    assert f"{second}: ServerError" in err and "may have been sent" in err
    assert f"{first}: NotFoundError" in err
    assert [m.id for m in graph.sent_items()] == [third]


def test_i14_cli_exit_0_and_1_single(graph: FakeGraph, env: list[str], capsys) -> None:
    (draft,) = graph.create_drafts(1)
    assert main(["send", draft, *env]) == 0
    assert capsys.readouterr().out.startswith("sent: 202 request-id=")
    assert main(["send", draft, *env]) == 1  # already sent: 404
    assert "NotFoundError" in capsys.readouterr().err


def test_i14_cli_token_file(graph: FakeGraph, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("GRAPH_TOKEN", raising=False)
    token_file = tmp_path / "token"
    token_file.write_text(graph.token + "\n", encoding="utf-8")
    (draft,) = graph.create_drafts(1)
    args = ["send", draft, "--token-file", str(token_file), "--base-url", graph.base_url]
    assert main(args) == 0
    (req,) = graph.requests
    assert req.authorization == f"Bearer {graph.token}"
    token_file.write_text("", encoding="utf-8")
    assert main(args) == 2
    assert "is empty" in capsys.readouterr().err
    assert main(["send", draft, "--token-file", str(tmp_path / "nope")]) == 2
    assert main(["send", draft, "--base-url", graph.base_url]) == 2  # no token at all
    assert "GRAPH_TOKEN" in capsys.readouterr().err
    assert len(graph.requests) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["send", "--token", SECRET, "AAMkAGI2"],
        ["send", "AAMkAGI2", f"--token={SECRET}"],
        ["--token", SECRET, "send", "AAMkAGI2"],
        ["send", "--tok", SECRET, "AAMkAGI2"],
        ["send-mail", "--to", "a@b.com", "--token", SECRET],
        ["send", "AAMkAGI2", f"--password={SECRET}"],
        ["send", "AAMkAGI2", "--bearer", SECRET, "--nonsense"],
        ["-t", SECRET, "send", "AAMkAGI2"],
        ["send", "AAMkAGI2", "--timeout", SECRET],
    ],
)
def test_i14_cli_token_option_never_echoed(graph: FakeGraph, argv: list[str]) -> None:
    done = run([*argv, "--base-url", graph.base_url], token=graph.token)
    assert done.returncode == 2
    assert SECRET not in done.stdout + done.stderr
    assert "SECRET" not in done.stdout + done.stderr
    assert graph.requests == []


def test_i14_cli_token_never_printed_on_failure(graph: FakeGraph) -> None:
    (draft,) = graph.create_drafts(1)
    graph.token = "the-server-wants-another"
    for extra in ([], ["--json"]):
        done = run(["send", draft, "--base-url", graph.base_url, *extra], token=SECRET)
        assert done.returncode == 1, done.stderr  # 401: not sent
        assert "AuthenticationError" in done.stdout + done.stderr
        assert SECRET not in done.stdout + done.stderr
    assert graph.requests[0].authorization == f"Bearer {SECRET}"


def test_i14_cli_concurrency_caps_requests_in_flight(
    graph: FakeGraph, env: list[str], tmp_path: Path
) -> None:
    users = [f"user{i}@contoso.com" for i in range(4)]
    lines = []
    for user in users:
        graph.add_mailbox(user)
        graph.set_latency(user, 0.05)
        lines += [f"{user} {mid}" for mid in graph.create_drafts(3, user)]
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(lines), encoding="utf-8")
    assert main(["send", "--from-file", str(ids_file), "--concurrency", "2", *env]) == 0
    assert len(graph.sent_items()) == 12
    assert graph.peak_in_flight() <= 2


def test_i14_cli_progress_on_stderr_json_on_stdout(graph: FakeGraph) -> None:
    ids = graph.create_drafts(3)
    done = run(
        ["send", *ids, "--progress", "--json", "--base-url", graph.base_url], token=graph.token
    )
    assert done.returncode == 0, done.stderr
    assert "3/3" in done.stderr
    assert [r["status"] for r in json_lines(done.stdout)] == [202, 202, 202]


def test_i14_cli_bad_input_exit_2_before_any_request(
    graph: FakeGraph, env: list[str], tmp_path: Path, capsys
) -> None:
    bad = tmp_path / "ids.txt"
    bad.write_text("AAMk1\nadele@contoso.com AAMk2 extra\n", encoding="utf-8")
    assert main(["send", "--from-file", str(bad), *env]) == 2
    assert f"{bad}:2:" in capsys.readouterr().err
    assert main(["send", *env]) == 2  # no ids
    assert "no message ids" in capsys.readouterr().err
    assert main(["send", "AAMk1", "--concurrency", "0", *env]) == 2
    assert main(["send", "AAMk1", "--cloud", "mars", *env]) == 2
    # A malformed proxy is refused without quoting its password.
    assert main(["send", "AAMk1", "--proxy", "http://u:pw-SECRET@host:99999", *env]) == 2
    assert "pw-SECRET" not in capsys.readouterr().err
    assert graph.requests == []


@pytest.mark.parametrize(
    ("cloud", "host"),
    [("usgov", "graph.microsoft.us"), ("china", "microsoftgraph.chinacloudapi.cn")],
)
def test_i14_cli_cloud_and_proxy(cloud: str, host: str, monkeypatch, capsys) -> None:
    monkeypatch.setenv("GRAPH_TOKEN", "t")
    # No --base-url: the cloud's host, asked of the --proxy (which refuses the tunnel, so
    # nothing leaves this machine and nothing can have been sent).
    with ConnectProxy(deny=True) as proxy:
        args = ["send", "AAMk1", "--cloud", cloud, "--proxy", proxy.url, "--timeout", "10"]
        code = main(args)
    err = capsys.readouterr().err
    assert code == 1, err
    assert proxy.tunnels == [] and proxy.heads[0].startswith(f"CONNECT {host}:443 ".encode())
    assert "TransportError" in err and "nothing was sent" in err


def test_i14_cli_ctrl_c_reports_what_may_have_been_sent(graph: FakeGraph) -> None:
    # Ctrl-C while a send is under way: the operator still gets a result line per id, and
    # exit 3, since the request had reached the server.
    first, second = graph.create_drafts(2)
    graph.stall_next()
    child_env = dict(os.environ, GRAPH_TOKEN=graph.token)
    proc = subprocess.Popen(
        [sys.executable, "-m", "graphsend", "send", first, "--json", "--base-url", graph.base_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env,
    )
    try:
        graph.wait_for_requests(1, timeout=30 * SCALE)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30 * SCALE)
    finally:
        proc.kill()
    assert proc.returncode == 3, err
    (result,) = json_lines(out)
    assert result["id"] == first and result["may_have_sent"] is True
    assert "interrupted" in err and "Traceback" not in err
    assert second in [d.id for d in graph.drafts()]


def test_i14_one_version() -> None:
    # pyproject.toml reads graphsend/_version.py: the installed metadata and the module agree.
    from importlib.metadata import version

    assert version("graphsend") == graphsend.__version__

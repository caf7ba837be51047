"""Issue 11 review, defect 2: the CLI reports a send that may have gone out as a send failure
("may have been sent"), never as a usage error (exit 2). Issue 14 gave that case its own exit
status, 3, so scripts can tell it from a failure that sent nothing (1)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from loopback import accept_in_thread

from graphsend.__main__ import main

SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))


@pytest.fixture
def silent() -> Iterator[str]:
    """A server that accepts, reads and never answers."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen()
    held: list[socket.socket] = []
    accept_in_thread(ls, lambda conn: None, held, threading.Lock())
    yield f"http://127.0.0.1:{ls.getsockname()[1]}"
    ls.close()
    for conn in held:
        conn.close()


@pytest.mark.parametrize(
    "command", [["send-mail", "--to", "a@b.com", "--body", "b"], ["send", "AAA"]]
)
def test_r11_2_cli_timeout_is_exit_1_may_have_sent(
    silent: str, command: list[str], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("GRAPH_TOKEN", "tok")
    t0 = time.monotonic()
    code = main([*command, "--base-url", silent, "--timeout", str(0.5 * SCALE)])
    assert time.monotonic() - t0 < 20 * SCALE
    err = capsys.readouterr().err
    assert code == 3, err
    assert "TimeoutError" in err
    assert "may have been sent" in err

"""Fork safety, process pools and Ctrl-C (issue 3)."""

from __future__ import annotations

import multiprocessing
import os
import textwrap
from concurrent.futures import ProcessPoolExecutor

import pytest
from helpers import interrupt_subprocess

import graphsend
from graphsend.testing import FakeGraph

_CLIENT: graphsend.Client | None = None


def test_client_keeps_working_in_a_forked_child(graph: FakeGraph) -> None:
    client = graphsend.Client(graph.token, base_url=graph.base_url)
    client.send(graph.create_draft(subject="parent before"))
    child_draft = graph.create_draft(subject="child")
    pid = os.fork()
    if pid == 0:  # the child: must open its own connection
        try:
            client.send(child_draft)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    client.send(graph.create_draft(subject="parent after"))  # the parent's connection is intact
    assert sorted(m.subject for m in graph.sent_items()) == [
        "child",
        "parent after",
        "parent before",
    ]
    assert graph.connections == 2


def _send_from_pool(message_id: str) -> graphsend.Receipt:
    assert _CLIENT is not None
    return _CLIENT.send(message_id)


def test_process_pool_executor(graph: FakeGraph) -> None:
    global _CLIENT
    _CLIENT = graphsend.Client(graph.token, base_url=graph.base_url)
    _CLIENT.send(graph.create_draft())  # the parent holds a live connection when it forks
    drafts = [graph.create_draft() for _ in range(8)]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        receipts = list(pool.map(_send_from_pool, drafts))
    assert [r.status for r in receipts] == [202] * 8
    assert len(graph.sent_items()) == 9
    _CLIENT.send(graph.create_draft())
    _CLIENT = None


def test_errors_come_back_from_worker_processes(graph: FakeGraph) -> None:
    global _CLIENT
    _CLIENT = graphsend.Client(graph.token, base_url=graph.base_url)
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(_send_from_pool, "AAMkAGunknown")
        with pytest.raises(graphsend.NotFoundError) as info:
            future.result()
    assert info.value.status == 404 and info.value.request_id
    _CLIENT = None


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import socket, sys
    import graphsend
    server = socket.create_server(("127.0.0.1", 0))  # accepts into its backlog, never answers
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    print("ready", flush=True)
    try:
        graphsend.send_message("AAMk", token="t", base_url=url, timeout=60)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(3)
    """
)


def test_ctrl_c_interrupts_a_send_promptly() -> None:
    returncode, output, seconds = interrupt_subprocess(CTRL_C_SCRIPT, after=0.5)  # mid-transfer
    assert returncode == 3
    assert output.strip() == "interrupted"
    assert seconds < 1.0

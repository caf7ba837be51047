"""Run every example against FakeGraph and check what the server received (`make examples`).

Each script runs as a user would run it, in its own process, configured by the environment
variables it documents (GRAPH_TOKEN, GRAPH_BASE_URL, GRAPH_CA_BUNDLE) pointing at a FakeGraph
over HTTPS; then the check looks at what FakeGraph stored. The notebook runs through a real
Jupyter kernel (nbclient). A new example is one more entry in EXAMPLES.

    python examples/run_all.py [NAME ...]      # only the examples whose file name has NAME
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from graphsend.testing import FakeGraph

HERE = Path(__file__).resolve().parent
RECIPIENT = "megan@contoso.com"
SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))


@dataclass
class Example:
    """One example: its file, the arguments its setup makes, and the check of its effect."""

    file: str
    setup: Callable[[FakeGraph, Path], list[str]]
    check: Callable[[FakeGraph, subprocess.CompletedProcess[str]], None]
    expect_exit: int = 0
    # Servers it needs besides FakeGraph, running while it runs; they may add to its
    # environment. They raise Skipped when they cannot run on this machine.
    services: Callable[[dict[str, str], Path], AbstractContextManager[None]] | None = None


class Skipped(Exception):
    """An example that cannot run here; the message says why."""


# ------------------------------------------------------------------------------- setups


def one_draft(graph: FakeGraph, tmp: Path) -> list[str]:
    graph.add_mailbox("adele@contoso.com")
    return [graph.create_draft("adele@contoso.com", subject="One"), "adele@contoso.com"]


def id_file(graph: FakeGraph, tmp: Path) -> list[str]:
    lines = []
    for n in range(3):
        user = f"user{n}@contoso.com"
        graph.add_mailbox(user)
        lines += [f"{user} {draft}" for draft in graph.create_drafts(10, user)]
    lines.append(graph.create_draft())  # a line without a mailbox: sent from /me
    path = tmp / "ids.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [str(path)]


def plain_id_file(graph: FakeGraph, tmp: Path) -> list[str]:
    path = tmp / "ids.txt"
    path.write_text("\n".join(graph.create_drafts(12)) + "\n", encoding="utf-8")
    return [str(path)]


def attachments(graph: FakeGraph, tmp: Path) -> list[str]:
    small = tmp / "notes.txt"
    small.write_text("small file\n", encoding="utf-8")
    large = tmp / "results.csv"  # over 3 MB: an upload session
    large.write_bytes(b"run,seconds\n" + b"".join(b"%d,%d\n" % (i, i % 97) for i in range(400_000)))
    return [RECIPIENT, str(small), str(large)]


def recipient(graph: FakeGraph, tmp: Path) -> list[str]:
    return [RECIPIENT]


def faulty_id_file(graph: FakeGraph, tmp: Path) -> list[str]:
    """Ten drafts; the answer to one send is lost after Graph sent it (a gateway's 504), and
    the send pipeline takes 0.3 s to move a sent draft to Sent Items."""
    lines = []
    for n in range(2):
        user = f"user{n}@contoso.com"
        graph.add_mailbox(user)
        # Immutable ids, as graphsend's create_draft asks for: the id still names it once sent.
        lines += [f"{user} {graph.create_draft(user, immutable_id=True)}" for _ in range(5)]
    graph.sent_items_delay = 0.3
    graph.fail_next(504, "GatewayTimeout", deliver=True)
    path = tmp / "ids.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [str(path), str(tmp / "run.db"), str(2.0 * SCALE)]


def nothing(graph: FakeGraph, tmp: Path) -> list[str]:
    return []


def mailbox_id_file(graph: FakeGraph, tmp: Path) -> list[str]:
    lines = []
    for n in range(4):
        user = f"user{n}@contoso.com"
        graph.add_mailbox(user)
        lines += [f"{user} {graph.create_draft(user, immutable_id=True)}" for _ in range(15)]
    path = tmp / "ids.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [str(path)]


# ------------------------------------------------------------------------------- services


@contextlib.contextmanager
def celery_worker(env: dict[str, str], tmp: Path) -> Iterator[None]:
    """A redis-server on a free loopback port (tests/redis_server.py) and one real
    `celery -A mail_tasks worker` with two pool processes, stopped afterwards."""
    sys.path.append(str(HERE.parent / "tests"))
    from redis_server import RedisServer, have_redis

    if not have_redis():
        raise Skipped("redis-server is not installed (`make examples` installs it)")
    with RedisServer() as redis, (tmp / "worker.log").open("wb") as log:
        env["REDIS_URL"] = redis.url
        command = [sys.executable, "-m", "celery", "-A", "mail_tasks", "worker", "-c", "2"]
        command += ["--without-gossip", "--without-mingle", "-l", "warning"]
        worker = subprocess.Popen(
            command, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped whole
        )  # fmt: skip
        try:
            yield
        finally:
            os.killpg(worker.pid, signal.SIGTERM)  # a warm shutdown
            try:
                worker.wait(30 * SCALE)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()


# ------------------------------------------------------------------------------- checks


def sent_one(graph: FakeGraph, done: subprocess.CompletedProcess[str]) -> None:
    (message,) = graph.sent_items("adele@contoso.com")
    assert message.subject == "One", message
    assert "sent: 202" in done.stdout, done.stdout


def sent_all_of(count: int) -> Callable[[FakeGraph, subprocess.CompletedProcess[str]], None]:
    def check(graph: FakeGraph, done: subprocess.CompletedProcess[str]) -> None:
        assert len(graph.sent_items()) == count, len(graph.sent_items())
        assert graph.drafts() == [], "a draft was left unsent"
        assert f"{count} sent, 0 failed" in done.stdout, done.stdout

    return check


def sent_list(graph: FakeGraph, done: subprocess.CompletedProcess[str]) -> None:
    sent_all_of(31)(graph, done)
    assert graph.peak_in_flight("user0@contoso.com") <= 4
    assert f"{31}/31" in done.stderr or "100%" in done.stderr, done.stderr  # the progress


def sent_async(graph: FakeGraph, done: subprocess.CompletedProcess[str]) -> None:
    delivered = graph.delivered()
    assert sorted(m.subject for m in delivered) == ["Lunch?", "Report 1", "Report 2", "Report 3"]
    assert all([r.address for r in m.to] == [RECIPIENT] for m in delivered)
    assert "drafts: 3 sent, 0 failed" in done.stdout, done.stdout


def sent_composed(graph: FakeGraph, done: subprocess.CompletedProcess[str]) -> None:
    report, lunch = graph.delivered()
    names = sorted(a.name for a in report.attachments)
    assert names == ["logo.png", "notes.txt", "results.csv"], names
    assert report.attachment("results.csv").size > 3_000_000
    assert report.attachment("logo.png").inline
    assert dict(report.headers).get("X-Campaign") == "q3", report.headers
    assert lunch.subject == "Lunch?" and lunch.attachments == ()
    # The upload URL never got the token.
    uploads = [r for r in graph.requests if r.is_upload]
    assert uploads and all(r.authorization is None for r in uploads)


def sent_exactly_once(graph: FakeGraph, done: subprocess.CompletedProcess[str]) -> None:
    counts = graph.send_counts()
    assert len(counts) == 10 and set(counts.values()) == {1}, counts  # no duplicate, none lost
    assert "10 sent (1 reconciled" in done.stdout, done.stdout


def sent_by_workers(graph: FakeGraph, done: subprocess.CompletedProcess[str]) -> None:
    counts = graph.send_counts()
    assert len(counts) == 60 and set(counts.values()) == {1}, counts  # each draft exactly once
    assert graph.drafts() == [], "a draft was left unsent"
    assert graph.throttled() == 0
    for n in range(4):  # the shared limiter's cap, in FakeGraph's own count
        assert graph.peak_in_flight(f"user{n}@contoso.com") <= 4
    assert done.stdout.count("sent     user") == 60, done.stdout
    assert "60 sent, 0 failed, by Celery workers" in done.stdout, done.stdout


def passed_pytest(graph: FakeGraph, done: subprocess.CompletedProcess[str]) -> None:
    assert "2 passed" in done.stdout and "failed" not in done.stdout, done.stdout


def ran_notebook(graph: FakeGraph, done: subprocess.CompletedProcess[str]) -> None:
    subjects = [m.subject for m in graph.delivered()]
    assert subjects.count("Notebook report") == 1, subjects
    assert sum(s.startswith("Hello ") for s in subjects) == 20, subjects
    assert sum(s.startswith("Async ") for s in subjects) == 3, subjects


EXAMPLES = [
    Example("send_one.py", one_draft, sent_one),
    Example("send_list.py", id_file, sent_list),
    Example("async_send.py", recipient, sent_async),
    Example("compose.py", attachments, sent_composed),
    Example("multiprocessing_send.py", plain_id_file, sent_all_of(12)),
    Example("exactly_once.py", faulty_id_file, sent_exactly_once),
    Example("celery_send.py", mailbox_id_file, sent_by_workers, services=celery_worker),
    Example("test_with_fakegraph.py", nothing, passed_pytest),
    Example("notebook.ipynb", nothing, ran_notebook),
]


# ------------------------------------------------------------------------------- running


def run_script(
    example: Example, args: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    path = HERE / example.file
    if example.file.startswith("test_"):
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)]
    else:
        command = [sys.executable, str(path), *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=300 * SCALE, cwd=HERE
    )


def run_notebook(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Execute the notebook in a real kernel (started with this environment)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = HERE / "notebook.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    import make_notebook  # the committed notebook must be the generated one

    expected = [cell.source for cell in make_notebook.build().cells]
    if [cell.source for cell in nb.cells] != expected:
        return subprocess.CompletedProcess(
            [], 1, "", "notebook.ipynb is stale: run python examples/make_notebook.py"
        )
    saved = os.environ.copy()
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        client = NotebookClient(
            nb,
            timeout=int(120 * SCALE),
            kernel_name="python3",
            resources={"metadata": {"path": str(HERE)}},
        )
        client.execute()
    except CellExecutionError as exc:
        return subprocess.CompletedProcess([], 1, "", str(exc))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    text = "\n".join(
        str(output.get("text", "")) for cell in nb.cells for output in cell.get("outputs", [])
    )
    return subprocess.CompletedProcess([], 0, text, "")


def run(example: Example) -> str | None:
    """Run one example against a fresh FakeGraph; returns None, or what went wrong. Raises
    Skipped when a service it needs cannot run here."""
    with tempfile.TemporaryDirectory() as tmp, FakeGraph(https=True) as graph:
        args = example.setup(graph, Path(tmp))
        env = dict(os.environ)
        env.update(
            GRAPH_TOKEN=graph.token,
            GRAPH_BASE_URL=graph.base_url,
            GRAPH_CA_BUNDLE=str(graph.ca_bundle),
            GRAPH_TEST_RECIPIENT=RECIPIENT,
        )
        services = example.services or (lambda env, tmp: contextlib.nullcontext())
        with services(env, Path(tmp)):
            if example.file.endswith(".ipynb"):
                done = run_notebook(env)
            else:
                done = run_script(example, args, env)
        logs = "".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}\n"
            for log in sorted(Path(tmp).glob("*.log"))
        )
        if done.returncode != example.expect_exit:
            output = f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}\n{logs}"
            return f"exit {done.returncode}\n{output}"
        try:
            example.check(graph, done)
        except Exception as exc:  # an assert, or a record that is not there at all
            output = f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}\n{logs}"
            return f"check failed: {type(exc).__name__}: {exc}\n{output}"
    return None


def main(names: list[str]) -> int:
    sys.path.insert(0, str(HERE))
    chosen = [e for e in EXAMPLES if not names or any(n in e.file for n in names)]
    failed = []
    skipped = 0
    for example in chosen:
        start = time.monotonic()
        try:
            problem = run(example)
        except Skipped as why:
            print(f"skip {example.file}: {why}", flush=True)
            skipped += 1
            continue
        took = time.monotonic() - start
        print(f"{'ok  ' if problem is None else 'FAIL'} {example.file} ({took:.1f} s)", flush=True)
        if problem is not None:
            print(problem, flush=True)
            failed.append(example.file)
    if failed:
        print(f"examples: {len(failed)} of {len(chosen)} failed: {', '.join(failed)}")
        return 1
    if skipped:
        ran = len(chosen) - skipped
        print(f"examples: {ran} ran against FakeGraph and did what they say, {skipped} skipped")
    else:
        print(f"examples: all {len(chosen)} ran against FakeGraph and did what they say")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

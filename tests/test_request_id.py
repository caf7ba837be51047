"""The native client-request-id generator: UUID v4 shape, no repeats across threads or forks."""

from __future__ import annotations

import os
import threading

from helpers import UUID4

from graphsend import _native


def test_shape_and_uniqueness() -> None:
    ids = [_native.new_client_request_id() for _ in range(50_000)]
    assert all(UUID4.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)
    # Every hex digit outside the fixed version/variant nibbles varies.
    for position in (0, 9, 15, 20, 35):
        assert len({i[position] for i in ids}) == 16


def test_threads_do_not_share_a_sequence() -> None:
    per_thread: list[list[str]] = [[] for _ in range(4)]

    def make(out: list[str]) -> None:
        out.extend(_native.new_client_request_id() for _ in range(5_000))

    threads = [threading.Thread(target=make, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for out in per_thread for i in out]
    assert len(set(every)) == len(every)


def test_a_forked_child_does_not_repeat_its_parent() -> None:
    _native.new_client_request_id()  # the parent's generator is seeded before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.write(write, " ".join(_native.new_client_request_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [_native.new_client_request_id() for _ in range(100)]
    assert len(child) == 100
    assert not set(child) & set(parent)

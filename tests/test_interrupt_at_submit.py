"""A Ctrl-C (or any exception raised asynchronously, such as Celery's soft time limit) that
lands right after send_many handed a request to its Engine, before the Scheduler noted it.

Python runs a signal handler between two bytecodes; a profile hook that raises at the return
of ``Engine.submit`` is that same moment, made certain. Before the fix, the request went out
(perform(0.0) in the cleanup started it) while its item was reported "not sent", and the
transfer stayed in the thread's Engine: its answer was then taken for the item with the same
tag in the next send_many of the thread (tags restarted at 0 with each call), so an id that
does not exist was reported sent."""

from __future__ import annotations

import sys
import time
from types import FrameType

import pytest

import graphsend
from graphsend.testing import FakeGraph


def _interrupt_after_first_submit() -> None:
    fired = False

    def hook(frame: FrameType, event: str, arg: object) -> None:
        nonlocal fired
        if event == "c_return" and getattr(arg, "__name__", "") == "submit" and not fired:
            fired = True
            sys.setprofile(None)
            raise KeyboardInterrupt

    sys.setprofile(hook)


def test_an_interrupt_right_after_submit_reports_the_item_and_leaves_nothing_behind() -> None:
    limiter = graphsend.LocalLimiter(per_mailbox=4)
    with FakeGraph() as graph:
        drafts = graph.create_drafts(3)
        with graphsend.Client(graph.token, base_url=graph.base_url, limiter=limiter) as client:
            _interrupt_after_first_submit()
            try:
                with pytest.raises(KeyboardInterrupt) as raised:
                    client.send_many(drafts)
            finally:
                sys.setprofile(None)
            results = graphsend.interrupted_results(raised.value)
            assert results is not None
            time.sleep(0.3)  # anything left running would reach the server meanwhile
            reached = {r.message_id for r in graph.requests}
            for draft, got in zip(drafts, results, strict=True):
                assert isinstance(got, graphsend.SendError), got
                if draft in reached:
                    assert got.may_have_sent, f"reached the server, reported not sent: {got!r}"
            slots, _ = limiter.acquire("me", 4)
            limiter.release(slots, used=False)
            assert len(slots) == 4, "the interrupted call kept limiter slots"

            # The thread's next send_many gets its own answers, not the earlier call's.
            graph.clear_requests()
            again = client.send_many(["does-not-exist"])
        assert isinstance(again[0], graphsend.NotFoundError), again
        assert [r.message_id for r in graph.requests] == ["does-not-exist"]


def test_a_second_interrupt_during_the_cleanup_leaves_the_next_call_its_own_answers() -> None:
    """Ctrl-C twice: the second lands as the cleanup begins, before the first call's transfer
    was cancelled and collected. Before the fixes, the thread's Engine kept it: the next
    send_many performing that Engine sent the interrupted call's draft after all (a mail out
    after the call had stopped), and (tags restarted at 0 with each call) its 202 could be
    taken for the next call's item of the same tag: an id that does not exist reported sent.
    Now that Engine is closed with the request unwritten, and the next call makes a new one."""
    with FakeGraph() as graph:
        drafts = graph.create_drafts(3)
        with graphsend.Client(graph.token, base_url=graph.base_url) as client:

            def second(frame: FrameType, event: str, arg: object) -> None:
                # (a trace function: the profile one is unset once it raised)
                if event == "call" and frame.f_code.co_name == "cancel":
                    sys.settrace(None)
                    raise KeyboardInterrupt

            _interrupt_after_first_submit()
            sys.settrace(second)  # type: ignore[arg-type]
            try:
                with pytest.raises(KeyboardInterrupt):
                    client.send_many(drafts)
            finally:
                sys.setprofile(None)
                sys.settrace(None)
            for _ in range(3):  # (the left-behind answer may come with any of them)
                graph.clear_requests()
                again = client.send_many(["does-not-exist"])
                assert isinstance(again[0], graphsend.NotFoundError), again
                # and the interrupted call's request, submitted but never written, never is
                assert [r.message_id for r in graph.requests] == ["does-not-exist"]
            assert [graph.send_count(d) for d in drafts] == [0, 0, 0]

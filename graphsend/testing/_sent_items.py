"""What happens after a 202: the send pipeline that moves a draft to Sent Items some time later,
and how many times each draft was actually sent.

Graph accepts a send (202) and moves the draft afterwards; until then the draft still reads
``isDraft: true`` in Drafts, and a second send of it goes out again. A client that reads the
mailbox to learn whether an ambiguous send went out must cope with that window, so FakeGraph
models it (``FakeGraph.sent_items_delay``). Not thread-safe: ``Mailboxes`` holds its lock
around every call.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._records import Message


@dataclass
class _Pending:
    due: float  # time.monotonic() when the draft moves to Sent Items
    box: Any  # the sender's _Mailbox
    draft: Message
    accepted_at: datetime
    save: bool = True  # (a sendMail with saveToSentItems false is only delivered)


class SendPipeline:
    """Accepted sends waiting to be moved, oldest first, and the per-draft send counts."""

    def __init__(self) -> None:
        self._pending: list[_Pending] = []
        self._counts: Counter[str] = Counter()

    def accepted(self, draft: Message) -> None:
        """Count one real send of ``draft`` (a duplicate counts again)."""
        self._counts[draft.id] += 1

    def hold(
        self, delay: float, box: Any, draft: Message, accepted_at: datetime, save: bool = True
    ) -> None:
        """Keep ``draft`` in Drafts (unsent to any reader) for ``delay`` seconds (a sendMail's
        message: out of Sent Items)."""
        self._pending.append(_Pending(time.monotonic() + delay, box, draft, accepted_at, save))

    def due(self) -> list[_Pending]:
        """The sends whose delay is over, in the order they were accepted (removed)."""
        if not self._pending:
            return []
        now = time.monotonic()
        ready = [p for p in self._pending if p.due <= now]
        if ready:
            self._pending = [p for p in self._pending if p.due > now]
        return ready

    def processing(self, draft_id: str) -> bool:
        return any(p.draft.id == draft_id for p in self._pending)

    def count(self, draft_id: str) -> int:
        return self._counts.get(draft_id, 0)

    def counts(self) -> dict[str, int]:
        return dict(self._counts)

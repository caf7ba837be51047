"""The mailboxes: drafts, Sent Items, and what an accepted send does to them."""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal

from ._ids import IdMaker
from ._records import DraftKind, IdStyle, Message

SendResult = Literal["sent", "no mailbox", "no draft"]


@dataclass
class _Mailbox:
    user: str
    drafts: dict[str, Message] = field(default_factory=dict)
    sent: list[Message] = field(default_factory=list)


class Mailboxes:
    """Every mailbox of one FakeGraph, keyed by lower-cased user.

    Thread-safe: the caller's threads and the server thread both use it.
    """

    def __init__(self, seed: int | None) -> None:
        self._lock = threading.Lock()
        self._boxes: dict[str, _Mailbox] = {}
        self._ids = IdMaker(seed)
        self._sent_log: list[Message] = []  # every mailbox's sends, in the order accepted
        # id → (when it was sent, the draft), kept only for FakeGraph.resend_window.
        self._recently_sent: dict[str, tuple[float, Message]] = {}

    def add(self, user: str) -> None:
        with self._lock:
            self._boxes.setdefault(user, _Mailbox(user))

    def new_draft(
        self, user: str, subject: str, kind: DraftKind, id_style: IdStyle | None
    ) -> Message:
        """Put a new draft in ``user``'s mailbox, making the mailbox if needed."""
        with self._lock:
            message_id = self._ids.next_id(id_style)
            mailbox = self._boxes.setdefault(user, _Mailbox(user))
            draft = mailbox.drafts[message_id] = Message(message_id, subject, kind, user)
        return draft

    def drafts(self, user: str | None) -> list[Message]:
        """``user``'s drafts, or every mailbox's with None."""
        with self._lock:
            if user is None:
                return [m for box in self._boxes.values() for m in box.drafts.values()]
            box = self._boxes.get(user)
            return list(box.drafts.values()) if box else []

    def sent_items(self, user: str | None) -> list[Message]:
        """``user``'s sent messages, or every mailbox's with None."""
        with self._lock:
            if user is None:
                return list(self._sent_log)
            box = self._boxes.get(user)
            return list(box.sent) if box else []

    def folder(self, user: str, folder: Literal["drafts", "sentitems"]) -> list[Message] | None:
        """The messages in one of ``user``'s folders; None when there is no such mailbox."""
        with self._lock:
            box = self._boxes.get(user)
            if box is None:
                return None
            return list(box.drafts.values()) if folder == "drafts" else list(box.sent)

    def send(self, user: str, message_id: str, resend_window: float) -> SendResult:
        """Move a draft to Sent Items. Within ``resend_window`` seconds of its send, a sent
        message sends again (a duplicate), like Graph's lag in invalidating ids."""
        now = datetime.now(timezone.utc)
        with self._lock:
            box = self._boxes.get(user)
            if box is None:
                return "no mailbox"
            draft = box.drafts.pop(message_id, None)
            if draft is None:
                draft = self._resendable(user, message_id, resend_window)
            if draft is None:
                return "no draft"
            sent = dataclasses.replace(draft, sent_at=now)
            box.sent.append(sent)
            self._sent_log.append(sent)
            if resend_window > 0:
                self._recently_sent[message_id] = (time.monotonic(), draft)
        return "sent"

    def _resendable(self, user: str, message_id: str, window: float) -> Message | None:
        """The draft of ``user``'s that was sent less than ``window`` seconds ago (lock held)."""
        sent_at, draft = self._recently_sent.get(message_id, (0.0, None))
        if draft is not None and draft.user == user and time.monotonic() - sent_at < window:
            return draft
        return None

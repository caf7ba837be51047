"""The mailboxes: Inbox, Drafts, Sent Items, and what an accepted send does to them."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from ._compose import check_sendable
from ._ids import IdMaker, conversation_id
from ._records import Attachment, DraftKind, IdStyle, Message, Recipient
from ._sent_items import SendPipeline

SendResult = Literal["sent", "no mailbox", "no draft"]
Folder = Literal["inbox", "drafts", "sentitems"]


@dataclass
class _Mailbox:
    user: str
    drafts: dict[str, Message] = field(default_factory=dict)
    sent: list[Message] = field(default_factory=list)
    inbox: dict[str, Message] = field(default_factory=dict)


class Mailboxes:
    """Every mailbox of one FakeGraph, keyed by lower-cased user.

    Thread-safe: the caller's threads and the server thread both use it.
    """

    def __init__(self, seed: int | None) -> None:
        self._lock = threading.Lock()
        self._boxes: dict[str, _Mailbox] = {}
        self._ids = IdMaker(seed)
        self._sent_log: list[Message] = []  # every mailbox's sends, in the order accepted
        self._delivered: list[Message] = []  # the same plus sendMail(saveToSentItems=false)
        # id → (when it was sent, the draft), kept only for FakeGraph.resend_window.
        self._recently_sent: dict[str, tuple[float, Message]] = {}
        # Sends accepted but not yet moved to Sent Items, and per-draft send counts.
        self.pipeline = SendPipeline()

    def add(self, user: str) -> None:
        with self._lock:
            self._boxes.setdefault(user, _Mailbox(user))

    def new_draft(
        self,
        user: str,
        subject: str,
        kind: DraftKind,
        id_style: IdStyle | None,
        fields: Mapping[str, Any] | None = None,
        *,
        immutable_id: bool = False,
    ) -> Message:
        """Put a new draft in ``user``'s mailbox, making the mailbox if needed."""
        with self._lock:
            draft = self._new(user, subject, kind, id_style, fields, immutable_id)
            self._boxes[user].drafts[draft.id] = draft
        return draft

    def new_received(self, user: str, fields: Mapping[str, Any]) -> Message:
        """Put a message in ``user``'s Inbox, as if someone had sent it to them."""
        with self._lock:
            message = self._new(user, "", "new", None, fields, False)
            message = dataclasses.replace(message, sent_at=datetime.now(timezone.utc))
            self._boxes[user].inbox[message.id] = message
        return message

    def _new(
        self,
        user: str,
        subject: str,
        kind: DraftKind,
        id_style: IdStyle | None,
        fields: Mapping[str, Any] | None,
        immutable_id: bool,
    ) -> Message:
        self._boxes.setdefault(user, _Mailbox(user))
        values: dict[str, Any] = {"sender": Recipient(user), "conversation_id": conversation_id()}
        values.update(fields or {})
        values.setdefault("subject", subject)
        return Message(
            self._ids.next_id(id_style), kind=kind, user=user, immutable_id=immutable_id, **values
        )

    def exists(self, user: str) -> bool:
        with self._lock:
            return user in self._boxes

    def find(self, user: str, message_id: str) -> tuple[Folder, Message] | None:
        """A message of ``user``'s by the id it has now (Sent Items: its sent id)."""
        with self._lock:
            self._flush()
            box = self._boxes.get(user)
            if box is None:
                return None
            if message_id in box.drafts:
                return "drafts", box.drafts[message_id]
            if message_id in box.inbox:
                return "inbox", box.inbox[message_id]
            for message in box.sent:
                if message.sent_id == message_id:
                    return "sentitems", message
        return None

    def update_draft(self, user: str, message_id: str, **changes: Any) -> Message | None:
        """Change a draft (None when ``user`` has no such draft)."""
        with self._lock:
            self._flush()
            box = self._boxes.get(user)
            draft = box.drafts.get(message_id) if box else None
            if box is None or draft is None:
                return None
            draft = box.drafts[message_id] = dataclasses.replace(draft, **changes)
        return draft

    def add_attachment(self, user: str, message_id: str, attachment: Attachment) -> bool:
        with self._lock:
            self._flush()
            box = self._boxes.get(user)
            draft = box.drafts.get(message_id) if box else None
            if box is None or draft is None:
                return False
            attachments = (*draft.attachments, attachment)
            box.drafts[message_id] = dataclasses.replace(draft, attachments=attachments)
        return True

    def delete(self, user: str, message_id: str) -> bool:
        with self._lock:
            self._flush()
            box = self._boxes.get(user)
            if box is None:
                return False
            if box.drafts.pop(message_id, None) or box.inbox.pop(message_id, None):
                return True
            kept = [m for m in box.sent if m.sent_id != message_id]
            found, box.sent = len(kept) != len(box.sent), kept
        return found

    def drafts(self, user: str | None) -> list[Message]:
        """``user``'s drafts, or every mailbox's with None."""
        with self._lock:
            self._flush()
            if user is None:
                return [m for box in self._boxes.values() for m in box.drafts.values()]
            box = self._boxes.get(user)
            return list(box.drafts.values()) if box else []

    def sent_items(self, user: str | None) -> list[Message]:
        """``user``'s sent messages, or every mailbox's with None."""
        with self._lock:
            self._flush()
            if user is None:
                return list(self._sent_log)
            box = self._boxes.get(user)
            return list(box.sent) if box else []

    def inbox(self, user: str | None) -> list[Message]:
        with self._lock:
            self._flush()
            if user is None:
                return [m for box in self._boxes.values() for m in box.inbox.values()]
            box = self._boxes.get(user)
            return list(box.inbox.values()) if box else []

    def delivered(self, user: str | None) -> list[Message]:
        """Every message that went out (sent or sendMail'd), in the order accepted."""
        with self._lock:
            self._flush()
            return [m for m in self._delivered if user is None or m.user == user]

    def folder(self, user: str, folder: Folder) -> list[Message] | None:
        """The messages in one of ``user``'s folders; None when there is no such mailbox."""
        with self._lock:
            self._flush()
            box = self._boxes.get(user)
            if box is None:
                return None
            if folder == "inbox":
                return list(box.inbox.values())
            return list(box.drafts.values()) if folder == "drafts" else list(box.sent)

    def send(
        self, user: str, message_id: str, resend_window: float, delay: float = 0.0
    ) -> SendResult:
        """Move a draft to Sent Items. Within ``resend_window`` seconds of its send, a sent
        message sends again (a duplicate), like Graph's lag in invalidating ids. Raises
        Refusal when Graph would refuse the message (its recipients). With ``delay``, the draft
        stays in Drafts (``isDraft: true``, sendable again) for that many seconds first."""
        now = datetime.now(timezone.utc)
        with self._lock:
            self._flush()
            box = self._boxes.get(user)
            if box is None:
                return "no mailbox"
            draft = box.drafts.get(message_id)
            if draft is None:
                draft = self._resendable(user, message_id, resend_window)
            if draft is None:
                return "no draft"
            check_sendable(draft)
            self.pipeline.accepted(draft)
            if delay > 0:
                self.pipeline.hold(delay, box, draft, now)
            else:
                box.drafts.pop(message_id, None)
                self._deliver(box, draft, now, save=True)
            if resend_window > 0:
                self._recently_sent[message_id] = (time.monotonic(), draft)
        return "sent"

    def send_mail(
        self,
        user: str,
        fields: Mapping[str, Any],
        *,
        save: bool,
        immutable_id: bool,
        delay: float = 0.0,
    ) -> Message | None:
        """sendMail: a message that is sent without a draft (None when there is no mailbox).
        With ``delay``, its copy reaches Sent Items (and ``delivered``) that much later."""
        now = datetime.now(timezone.utc)
        with self._lock:
            box = self._boxes.get(user)
            if box is None:
                return None
            message = self._new(user, "", "new", None, fields, immutable_id)
            check_sendable(message)
            if delay > 0:
                self.pipeline.hold(delay, box, message, now, save=save)
                return message
            return self._deliver(box, message, now, save=save)

    def send_count(self, draft_id: str) -> int:
        with self._lock:
            return self.pipeline.count(draft_id)

    def send_counts(self) -> dict[str, int]:
        with self._lock:
            return self.pipeline.counts()

    def processing(self, draft_id: str) -> bool:
        with self._lock:
            self._flush()
            return self.pipeline.processing(draft_id)

    def _flush(self) -> None:
        """Move the sends whose pipeline delay is over to Sent Items (lock held)."""
        for pending in self.pipeline.due():
            pending.box.drafts.pop(pending.draft.id, None)
            self._deliver(pending.box, pending.draft, pending.accepted_at, save=pending.save)

    def _deliver(self, box: _Mailbox, message: Message, now: datetime, *, save: bool) -> Message:
        """Record ``message`` as sent (lock held); Sent Items too when ``save``."""
        # Graph moves the item: a new id, unless the client asked for immutable ids.
        sent_id = message.id if message.immutable_id else self._ids.next_id(None)
        sent = dataclasses.replace(message, sent_at=now, sent_id=sent_id, saved_to_sent_items=save)
        if save:
            box.sent.append(sent)
            self._sent_log.append(sent)
        self._delivered.append(sent)
        return sent

    def _resendable(self, user: str, message_id: str, window: float) -> Message | None:
        """The draft of ``user``'s that was sent less than ``window`` seconds ago (lock held)."""
        sent_at, draft = self._recently_sent.get(message_id, (0.0, None))
        if draft is not None and draft.user == user and time.monotonic() - sent_at < window:
            return draft
        return None

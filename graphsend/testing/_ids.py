"""Message ids shaped like Graph's, so that clients meet the encoding problems real ids cause."""

from __future__ import annotations

import base64
import os
import random
from typing import Final

from ._records import IdStyle

# Characters that may appear in a decoded message id: base64 and base64url alphabets plus padding.
ID_ALPHABET: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_="
)


class IdMaker:
    """Unique ids: 152 base64 characters starting with ``AAMkA`` and ending with ``=``.

    REST-style ids contain both ``-`` and ``_``; EWS-style ids (from older Exchange APIs) contain
    both ``/`` and ``+``, which must be percent-encoded in a URL. Every id carries both special
    characters of its style, so each one tests a client's encoding. Not thread-safe: the caller
    serialises calls.
    """

    def __init__(self, seed: int | None) -> None:
        self._rng = random.Random(seed)
        self._issued: set[str] = set()
        self._made = 0

    def next_id(self, style: IdStyle | None) -> str:
        """A new id of ``style``; with None, every third id this maker makes is EWS-style."""
        self._made += 1
        chosen: IdStyle = style or ("ews" if self._made % 3 == 0 else "rest")
        needed = "-_" if chosen == "rest" else "+/"
        while True:
            # 113 bytes encode to 152 characters with one "=" of padding, like real ids. The
            # first bytes make the text start with "AAMkA".
            raw = b"\x00\x03\x24" + bytes([self._rng.randrange(4)]) + self._rng.randbytes(109)
            text = base64.b64encode(raw).decode("ascii")
            if chosen == "rest":
                text = text.replace("+", "-").replace("/", "_")
            if all(c in text for c in needed) and text not in self._issued:
                self._issued.add(text)
                return text


def attachment_id() -> str:
    """An attachment id shaped like Graph's (a message id plus more base64); unique, not seeded:
    tests compare attachments by name and bytes."""
    raw = b"\x00\x03\x24\x00" + os.urandom(125)
    return base64.urlsafe_b64encode(raw).decode("ascii")


def conversation_id() -> str:
    """A conversationId: shorter than a message id, same alphabet."""
    raw = b"\x00\x03\x24\x00" + os.urandom(32)
    return base64.urlsafe_b64encode(raw).decode("ascii")

"""Message and Attachment: what a composed mail holds, checked before anything goes on the wire.

Everything a caller can get wrong (an address without "@", a missing or too large file, a header
that is not an X- header, a control character) raises here, at construction, so no request is
ever made for a message Graph would refuse or that would carry something unintended.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any, TypeAlias

    Recipient: TypeAlias = "str | tuple[str, str]"
    Source: TypeAlias = "str | os.PathLike[str] | bytes"

#: Graph's limits (bytes): a request body, any attachment (through an upload session), and
#: recipients per message (Exchange's default).
REQUEST_MAX = 4 * 1024 * 1024
ATTACHMENT_MAX = 150 * 1024 * 1024
RECIPIENTS_MAX = 500
#: Attachments up to this size go in one JSON POST: base64 makes 4 bytes of 3, and the JSON
#: around them must still fit in REQUEST_MAX. Larger ones go through an upload session.
SMALL_MAX = 3_000_000

BODY_TYPES = ("text", "html")
IMPORTANCES = ("low", "normal", "high")


def _no_controls(value: object, what: str, *, multiline: bool = False) -> str:
    """A str without C0 controls or DEL (a body or comment may hold tabs and line breaks)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    for ch in value:
        o = ord(ch)
        if (o < 0x20 or o == 0x7F) and not (multiline and ch in "\t\r\n"):
            raise ValueError(f"{what} must not contain control characters ({ch!r})")
        if 0xD800 <= o <= 0xDFFF:
            raise ValueError(f"{what} must not contain lone surrogates")
    return value


def _address(value: object, what: str) -> str:
    address = _no_controls(value, what).strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or " " in address or "<" in address or ">" in address:
        raise ValueError(f"{what} is not an e-mail address: {address!r}")
    return address


def recipient(value: object, what: str = "recipient") -> dict[str, Any]:
    """Graph's recipient object from "a@b.com", "Name <a@b.com>" or (name, address)."""
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(f"{what} tuple must be (name, address)")
        name = _no_controls(value[0], f"{what} name").strip()
        address = _address(value[1], f"{what} address")
    elif isinstance(value, str):
        text = _no_controls(value, what).strip()
        if text.endswith(">") and "<" in text:
            name, _, rest = text[:-1].rpartition("<")
            name = name.strip().strip('"').strip()
            address = _address(rest, what)
        else:
            name, address = "", _address(text, what)
    else:
        raise TypeError(f"{what} must be a str or a (name, address) tuple")
    email: dict[str, str] = {"address": address}
    if name:
        email["name"] = name
    return {"emailAddress": email}


def recipients(values: Iterable[Recipient] | Recipient, what: str) -> list[dict[str, Any]]:
    # One recipient given bare ("a@b.com" or ("Name", "a@b.com")) is a common slip: accept it.
    if isinstance(values, str):
        values = [values]
    elif (
        isinstance(values, tuple)
        and len(values) == 2
        and all(isinstance(v, str) for v in values)
        and "@" not in values[0]
    ):
        values = [values]  # type: ignore[list-item]
    return [recipient(v, what) for v in values]


class Attachment:
    """A file to attach: a path (read when sent, streamed from disk when large) or bytes.

    ``name`` defaults to the file's name (required for bytes); ``content_type`` is guessed from
    the name. ``inline=True`` with a ``content_id`` makes it an inline image (``cid:`` in HTML).

    Example:
        ::

            Attachment("report.pdf")
            Attachment(png_bytes, name="logo.png", inline=True, content_id="logo")

    Attributes:
        path: The file, or None for bytes.
        data: The bytes, or None for a file.
        size: Bytes (of the file when the Attachment was made).
        name: The file name recipients see.
        content_type: The MIME type.
        inline: An inline attachment.
        content_id: The Content-ID of an inline image, or None.
    """

    __slots__ = ("content_id", "content_type", "data", "inline", "name", "path", "size")

    path: str | None
    data: bytes | None
    size: int
    name: str
    content_type: str
    inline: bool
    content_id: str | None

    def __init__(
        self,
        source: Source,
        *,
        name: str | None = None,
        content_type: str | None = None,
        inline: bool = False,
        content_id: str | None = None,
    ) -> None:
        """Check the attachment; a file is not read until it is sent.

        Args:
            source: A path (str or ``os.PathLike``) or the bytes themselves.
            name: The file name recipients see (default: the path's base name; required
                for bytes).
            content_type: The MIME type (default: guessed from ``name``, else
                ``application/octet-stream``).
            inline: An inline attachment (an image the HTML body shows).
            content_id: The Content-ID an inline image is referred to by (``cid:...``).

        Raises:
            FileNotFoundError: The path does not exist.
            ValueError: A directory or other non-regular file, over 150 MB, bytes without a
                name, an empty name, a content type not like ``type/subtype``, control
                characters.
            TypeError: A source that is neither a path nor bytes, ``inline`` not a bool.
        """
        self.path: str | None = None
        self.data: bytes | None = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.data = bytes(source)
            self.size = len(self.data)
            if name is None:
                raise ValueError("an Attachment made from bytes needs a name=")
        elif isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if not isinstance(path, str):
                raise TypeError("an attachment path must be a str path")
            _no_controls(path, "attachment path")
            if not path:
                raise ValueError("attachment path must not be empty")
            if not os.path.exists(path):
                raise FileNotFoundError(f"attachment not found: {path}")
            if os.path.isdir(path):
                raise ValueError(f"attachment is a directory, not a file: {path}")
            if not os.path.isfile(path):
                raise ValueError(f"attachment is not a regular file: {path}")
            self.path = path
            self.size = os.path.getsize(path)
            if name is None:
                name = os.path.basename(path)
        else:
            raise TypeError("an attachment source must be a path (str or os.PathLike) or bytes")
        if self.size > ATTACHMENT_MAX:
            raise ValueError(
                f"attachment {name!r} is {self.size} bytes; Graph takes at most "
                f"{ATTACHMENT_MAX} bytes (150 MB) per attachment"
            )
        self.name = _no_controls(name, "attachment name")
        if not self.name.strip():
            raise ValueError("attachment name must not be empty")
        if content_type is None:
            import mimetypes

            content_type = mimetypes.guess_type(self.name)[0] or "application/octet-stream"
        ctype = _no_controls(content_type, "content_type")
        major, slash, minor = ctype.partition("/")
        if not slash or not major.strip() or not minor.strip() or " " in ctype.split(";")[0]:
            raise ValueError(f"content_type must look like 'type/subtype', not {ctype!r}")
        self.content_type = ctype
        if not isinstance(inline, bool):
            raise TypeError("inline must be a bool")
        self.inline = inline
        self.content_id = None if content_id is None else _no_controls(content_id, "content_id")

    def __repr__(self) -> str:
        where = self.path if self.path is not None else f"<{self.size} bytes>"
        return f"Attachment({where!r}, name={self.name!r}, content_type={self.content_type!r})"

    @property
    def small(self) -> bool:
        """True when sent in one JSON POST (base64; up to 3 MB) rather than an upload session."""
        return self.size <= SMALL_MAX

    def read(self) -> bytes:
        """The bytes (small attachments only: large ones are streamed from disk).

        Returns:
            The content.

        Raises:
            OSError: The file cannot be read.
            ValueError: The file grew past 150 MB.
        """
        if self.data is not None:
            return self.data
        assert self.path is not None
        with open(self.path, "rb") as f:
            data = f.read(ATTACHMENT_MAX + 1)
        if len(data) > ATTACHMENT_MAX:
            raise ValueError(f"attachment {self.name!r} grew past 150 MB")
        return data

    def file_json(self) -> dict[str, Any]:
        """Graph's fileAttachment object with contentBytes, for one JSON POST.

        Returns:
            The JSON object (a dict).

        Raises:
            OSError: The file cannot be read.
        """
        import base64

        doc: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": self.name,
            "contentType": self.content_type,
            "contentBytes": base64.b64encode(self.read()).decode("ascii"),
            "isInline": self.inline,
        }
        if self.content_id is not None:
            doc["contentId"] = self.content_id
        return doc

    def item_json(self, size: int) -> dict[str, Any]:
        """Graph's AttachmentItem for createUploadSession.

        Args:
            size: The bytes that will be uploaded.

        Returns:
            The JSON object (a dict).
        """
        doc: dict[str, Any] = {
            "attachmentType": "file",
            "name": self.name,
            "size": size,
            "contentType": self.content_type,
            "isInline": self.inline,
        }
        if self.content_id is not None:
            doc["contentId"] = self.content_id
        return doc

    @property
    def json_size(self) -> int:
        """Bytes this attachment adds to a JSON body (base64 plus its fields, generously)."""
        return 4 * ((self.size + 2) // 3) + 4 * len(self.name) + 400


def attachment(value: object) -> Attachment:
    if isinstance(value, Attachment):
        return value
    if isinstance(value, (str, os.PathLike)):
        return Attachment(value)
    raise TypeError("attachments are paths (str or os.PathLike) or graphsend.Attachment")


class Message:
    """A mail to compose: ``Client.create_draft(message)`` or ``Client.send_mail(message)``.

    Recipients are ``"a@b.com"``, ``"Name <a@b.com>"`` or ``(name, address)``; ``headers`` are
    custom internet message headers whose names start with ``X-``; ``attachments`` are paths or
    :class:`Attachment` objects. Every argument is checked here: a mistake raises before any
    request is made.

    Example:
        ::

            Message("Lunch?", "12:30?", to="megan@contoso.com")
            Message("Report", "<p>Attached.</p>", body_type="html",
                    to=["Bob Ray <bob@contoso.com>"], attachments=["report.pdf"])

    Attributes:
        subject: The subject line.
        body: The body text or HTML.
        body_type: ``"text"`` or ``"html"``.
        to: Recipients, as Graph's recipient objects.
        cc: Recipients, as Graph's recipient objects.
        bcc: Recipients, as Graph's recipient objects.
        reply_to: Reply-To addresses, as Graph's recipient objects.
        importance: ``"low"``, ``"normal"`` or ``"high"``.
        headers: The custom ``X-`` headers.
        attachments: The attachments, in order.
    """

    __slots__ = (
        "attachments",
        "bcc",
        "body",
        "body_type",
        "cc",
        "headers",
        "importance",
        "reply_to",
        "subject",
        "to",
    )

    subject: str
    body: str
    body_type: str
    to: list[dict[str, Any]]
    cc: list[dict[str, Any]]
    bcc: list[dict[str, Any]]
    reply_to: list[dict[str, Any]]
    importance: str
    headers: dict[str, str]
    attachments: list[Attachment]

    def __init__(
        self,
        subject: str = "",
        body: str = "",
        *,
        body_type: str = "text",
        to: Iterable[Recipient] = (),
        cc: Iterable[Recipient] = (),
        bcc: Iterable[Recipient] = (),
        reply_to: Iterable[Recipient] = (),
        importance: str = "normal",
        headers: Mapping[str, str] | None = None,
        attachments: Iterable[Source | Attachment] = (),
    ) -> None:
        """Check every part of the message.

        Args:
            subject: The subject line (one line).
            body: The body (text or HTML; tabs and line breaks allowed).
            body_type: ``"text"`` or ``"html"``.
            to: Recipients: ``"a@b.com"``, ``"Name <a@b.com>"`` or ``(name, address)``, or one
                of them alone.
            cc: As ``to``.
            bcc: As ``to``.
            reply_to: As ``to``.
            importance: ``"low"``, ``"normal"`` or ``"high"``.
            headers: Custom internet message headers; names start with ``X-``.
            attachments: Paths or :class:`Attachment` objects (one alone is fine too).

        Raises:
            ValueError: A malformed address, more than 500 recipients, a header that is not an
                ``X-`` header, control characters, an unknown ``body_type`` or
                ``importance``, an unusable attachment file.
            FileNotFoundError: An attachment path does not exist.
            TypeError: An argument of the wrong type.
        """
        self.subject = _no_controls(subject, "subject")
        self.body = _no_controls(body, "body", multiline=True)
        if body_type not in BODY_TYPES:
            raise ValueError(f"body_type must be 'text' or 'html', not {body_type!r}")
        self.body_type = body_type
        self.to = recipients(to, "to")
        self.cc = recipients(cc, "cc")
        self.bcc = recipients(bcc, "bcc")
        self.reply_to = recipients(reply_to, "reply_to")
        count = len(self.to) + len(self.cc) + len(self.bcc)
        if count > RECIPIENTS_MAX:
            raise ValueError(
                f"{count} recipients; Exchange accepts at most {RECIPIENTS_MAX} per message"
            )
        if importance not in IMPORTANCES:
            raise ValueError(f"importance must be 'low', 'normal' or 'high', not {importance!r}")
        self.importance = importance
        self.headers = _headers(headers)
        if isinstance(attachments, (str, bytes, os.PathLike, Attachment)):
            attachments = [attachments]
        self.attachments = [attachment(a) for a in attachments]

    def __repr__(self) -> str:
        return (
            f"Message(subject={self.subject!r}, to={len(self.to)}, cc={len(self.cc)}, "
            f"bcc={len(self.bcc)}, attachments={len(self.attachments)})"
        )

    def json(self, attachments: Iterable[Attachment] = ()) -> dict[str, Any]:
        """Graph's message resource, with these attachments inline (base64).

        Args:
            attachments: The attachments to put inside (small ones).

        Returns:
            The JSON object (a dict).
        """
        doc: dict[str, Any] = {
            "subject": self.subject,
            "body": {"contentType": self.body_type, "content": self.body},
            "importance": self.importance,
        }
        for key, value in (
            ("toRecipients", self.to),
            ("ccRecipients", self.cc),
            ("bccRecipients", self.bcc),
            ("replyTo", self.reply_to),
        ):
            if value:
                doc[key] = value
        if self.headers:
            doc["internetMessageHeaders"] = [
                {"name": k, "value": v} for k, v in self.headers.items()
            ]
        files = [a.file_json() for a in attachments]
        if files:
            doc["attachments"] = files
        return doc

    def split_attachments(self, room: int) -> tuple[list[Attachment], list[Attachment]]:
        """Split the attachments into those inside the first JSON request and those added after.

        Args:
            room: The request's size limit, in bytes.

        Returns:
            ``(inline, later)``: ``inline`` keeps the request under ``room`` bytes; large
            attachments are always in ``later`` (upload sessions).
        """
        inline: list[Attachment] = []
        later: list[Attachment] = []
        used = self.base_size()
        for a in self.attachments:
            if a.small and used + a.json_size <= room:
                inline.append(a)
                used += a.json_size
            else:
                later.append(a)
        return inline, later

    def base_size(self) -> int:
        """Bytes of the JSON without attachments (an upper bound).

        Returns:
            The size in bytes.
        """
        return len(dumps(self.json())) + 200


def dumps(doc: object) -> bytes:
    """Compact UTF-8 JSON: non-ASCII as is (Graph reads UTF-8; \\u escapes would grow it)."""
    import json

    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    if headers is None:
        return {}
    if not hasattr(headers, "items"):
        raise TypeError("headers must be a mapping of str to str")
    out: dict[str, str] = {}
    for name, value in headers.items():
        _no_controls(name, "header name")
        if not name[:2].lower() == "x-" or len(name) < 3 or not set(name) <= _TOKEN:
            raise ValueError(
                f"custom header {name!r}: Graph takes only X- headers (letters, digits, '-')"
            )
        out[name] = _no_controls(value, f"header {name} value")
    return out


def mime_bytes(mime: object) -> bytes:
    """RFC 5322 bytes from bytes or an email.message.EmailMessage (or Message)."""
    if isinstance(mime, (bytes, bytearray, memoryview)):
        data = bytes(mime)
    else:
        from email.message import Message as _StdMessage

        if not isinstance(mime, _StdMessage):
            raise TypeError("mime must be bytes or an email.message.EmailMessage")
        from email import policy

        data = mime.as_bytes(policy=policy.SMTP)
    if not data.strip():
        raise ValueError("mime must not be empty")
    if b"\x00" in data:
        raise ValueError("mime must not contain NUL bytes")
    return data

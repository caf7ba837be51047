"""FakeGraph: a real loopback HTTP/1.1 server that behaves like Microsoft Graph's send endpoint.

It is meant for graphsend's own tests and benchmarks and for the test suites of programs that use
graphsend. Nothing is mocked: clients talk to a real socket, so connection reuse, resets, stalls,
TLS verification and timeouts all behave as they would against Graph.

    from graphsend.testing import FakeGraph

    with FakeGraph(latency=0.05, mailbox_concurrency_limit=4) as graph:
        draft = graph.create_draft(subject="Quarterly report")
        graph.fail_next(503, retry_after=2)          # the first send gets a 503
        ...  # point the client at graph.base_url with token graph.token
        assert [m.id for m in graph.sent_items()] == [draft]

What it serves (``{v}`` is ``v1.0`` or ``beta``, ``{me}`` is ``me`` or ``users/{user}`` with a
UPN or id, each segment percent-decoded once), with Graph's shapes and status codes:

* ``POST /{v}/{me}/messages/{id}/send``: moves the draft to Sent Items, ``202 Accepted``.
* ``POST /{v}/{me}/messages``: a new draft from a message JSON (every field is stored: subject,
  body, recipients, replyTo, importance, internetMessageHeaders, singleValueExtendedProperties,
  inline fileAttachments) or from base64 MIME (``Content-Type: text/plain``); ``201``.
* ``POST .../messages/{id}/createReply``, ``/createReplyAll``, ``/createForward``: the draft
  Graph makes ("RE: "/"FW: " subject, recipients from the original, the comment above the
  quoted original, a forward's attachments); ``201``.
* ``POST .../messages/{id}/attachments`` (a fileAttachment under 3 MB), ``GET`` the list.
* ``POST .../messages/{id}/attachments/createUploadSession``, then ``PUT`` byte ranges to the
  pre-authenticated ``uploadUrl`` (``/uploads/...`` on this server; ``GET`` gives the status,
  ``DELETE`` cancels). The last chunk answers ``201`` with a ``Location`` naming the attachment.
* ``POST /{v}/{me}/sendMail``: JSON ``{"message", "saveToSentItems"}`` or base64 MIME; ``202``.
* ``GET``, ``PATCH``, ``DELETE .../messages/{id}`` (``$select``, ``$expand=attachments``);
  ``GET /{v}/{me}/mailFolders/{inbox|drafts|sentitems}/messages`` lists a folder (``$select``,
  ``$top``, and ``$filter`` on a single-value extended property).

Every message keeps every field and every attachment's bytes: :meth:`FakeGraph.delivered`,
:meth:`FakeGraph.sent_items` and :meth:`FakeGraph.drafts` return :class:`Message` records that
show exactly what a recipient would get.

Errors use Graph's body shape and headers. See :class:`FakeGraph` for the rules and the fault
injection API, and run ``python -m graphsend.testing --help`` to serve from the command line.

Only the standard library is needed, except for HTTPS mode, which makes a certificate with the
``cryptography`` package (``pip install 'graphsend[testing]'``).
"""

from ._cli import main
from ._fakegraph import FakeGraph
from ._records import Attachment, DraftKind, IdStyle, Message, Recipient, RecordedRequest
from ._records import Outcome as Outcome  # RecordedRequest.outcome's type, for annotations

__all__ = [
    "Attachment",
    "DraftKind",
    "FakeGraph",
    "IdStyle",
    "Message",
    "Recipient",
    "RecordedRequest",
    "main",
]

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

What it serves (``{v}`` is ``v1.0`` or ``beta``, ``{user}`` a UPN or id, percent-decoded once):

* ``POST /{v}/me/messages/{id}/send`` and ``POST /{v}/users/{user}/messages/{id}/send``: moves the
  draft to Sent Items and answers ``202 Accepted`` with an empty body, like Graph.
* ``POST /{v}/me/messages`` (and ``/users/{user}/messages``): creates a draft from an optional JSON
  body (``subject``), answers ``201`` with the message as JSON. This lets a client in another
  process (a benchmark, the demo) make drafts.
* ``GET /{v}/me/mailFolders/{drafts|sentitems}/messages``: lists a folder as ``{"value": [...]}``.

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

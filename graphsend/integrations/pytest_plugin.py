"""pytest fixtures for code that sends mail with graphsend.

Installed with graphsend (the ``pytest11`` entry point), so in any test suite:

    def test_report_is_sent(fake_graph):
        draft = fake_graph.create_draft(subject="Report")
        my_app.send_report(draft, base_url=fake_graph.base_url, token=fake_graph.token)
        assert [m.subject for m in fake_graph.sent_items()] == ["Report"]

``fake_graph`` is a started :class:`graphsend.testing.FakeGraph` over plain HTTP;
``fake_graph_https`` serves HTTPS with a throwaway CA at ``.ca_bundle`` (skipped when the
``cryptography`` package, from ``graphsend[testing]``, is missing). Both are function-scoped and
stopped after the test. Keyword arguments for FakeGraph can come from a marker:

    @pytest.mark.fake_graph(latency=0.05, mailbox_concurrency_limit=4)
    def test_throttling(fake_graph): ...

``@pytest.mark.fake_graph(http2=True)`` with ``fake_graph_https`` serves HTTP/2 as Graph does (ALPN
``h2``; needs the ``h2`` package, also in ``graphsend[testing]``).

The fixtures serve the compose operations too (drafts, replies, attachments, upload sessions,
sendMail): assert on what went out with ``fake_graph.delivered()``, whose messages carry every
field and every attachment's bytes.

This module stays cheap to import: FakeGraph is imported only when a fixture is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from graphsend.testing import FakeGraph

__all__ = ["fake_graph", "fake_graph_https"]


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``fake_graph`` marker (pytest calls this hook)."""
    config.addinivalue_line(
        "markers",
        "fake_graph(**kwargs): keyword arguments for the FakeGraph of the fake_graph and "
        "fake_graph_https fixtures (latency, mailbox_concurrency_limit, token, default_user...)",
    )


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("fake_graph")
    if marker is None:
        return {}
    if marker.args:
        raise TypeError("@pytest.mark.fake_graph takes keyword arguments only")
    return dict(marker.kwargs)


@pytest.fixture
def fake_graph(request: pytest.FixtureRequest) -> Iterator[FakeGraph]:
    """A running FakeGraph over HTTP on 127.0.0.1, stopped after the test.

    Keyword arguments for :class:`~graphsend.testing.FakeGraph` come from
    ``@pytest.mark.fake_graph(...)``.

    Yields:
        The started server: point the client at ``.base_url`` with ``.token``.

    Raises:
        TypeError: The marker has positional arguments.
    """
    from graphsend.testing import FakeGraph

    options = _options(request)
    options.setdefault("https", False)
    with FakeGraph(**options) as graph:
        yield graph


@pytest.fixture
def fake_graph_https(request: pytest.FixtureRequest) -> Iterator[FakeGraph]:
    """A running FakeGraph over HTTPS; pass ``.ca_bundle`` to the client.

    Skipped without the ``cryptography`` package (``pip install 'graphsend[testing]'``).
    ``@pytest.mark.fake_graph(http2=True)`` serves HTTP/2.

    Yields:
        The started server, with ``.base_url``, ``.token`` and ``.ca_bundle``.

    Raises:
        TypeError: The marker has positional arguments.
    """
    pytest.importorskip(
        "cryptography", reason="fake_graph_https needs graphsend[testing] (cryptography)"
    )
    from graphsend.testing import FakeGraph

    options = _options(request)
    options["https"] = True
    with FakeGraph(**options) as graph:
        yield graph

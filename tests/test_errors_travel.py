"""Exceptions and Receipts that cross process boundaries (issue 13): rebuilt from their args the
way Celery's JSON result backend does it (``cls(*args)`` after a JSON round trip), by pickle,
and under their public module name. Errors come from real answers of FakeGraph."""

from __future__ import annotations

import json
import pickle
import sys

import pytest

import graphsend
from graphsend.integrations import celery as gs_celery
from graphsend.testing import FakeGraph

PUBLIC_ERRORS = [
    graphsend.SendError,
    graphsend.GraphError,
    graphsend.BadRequestError,
    graphsend.AuthenticationError,
    graphsend.PermissionDeniedError,
    graphsend.NotFoundError,
    graphsend.ConflictError,
    graphsend.ThrottledError,
    graphsend.ServerError,
    graphsend.ServiceUnavailableError,
    graphsend.TransportError,
    graphsend.TimeoutError,
    graphsend.LimiterError,
]


def _like_celery_json(err: BaseException) -> BaseException:
    """What Celery's JSON backend stores and rebuilds: module, class name, args as JSON; then
    ``getattr(sys.modules[module], name)(*args)``."""
    stored = json.loads(
        json.dumps(
            {
                "exc_type": type(err).__qualname__,
                "exc_module": type(err).__module__,
                "exc_message": list(err.args),
            }
        )
    )
    cls = getattr(sys.modules[stored["exc_module"]], stored["exc_type"])
    return cls(*stored["exc_message"])


def _fields(err: BaseException) -> dict[str, object]:
    return dict(vars(err))


def _real_errors(graph: FakeGraph) -> list[graphsend.SendError]:
    client = graphsend.Client(
        graph.token, base_url=graph.base_url, retry=graphsend.Retry(max_attempts=1)
    )
    errors: list[graphsend.SendError] = []
    for status in (400, 403, 404, 409, 429, 500, 503):
        graph.fail_next(status)
        try:
            client.send(graph.create_draft())
        except graphsend.SendError as exc:
            errors.append(exc)
    graph.token = "another-token"
    try:
        client.send(graph.create_draft())
    except graphsend.SendError as exc:
        errors.append(exc)
    graph.stop()
    try:
        client.send("AAMkADx")
    except graphsend.SendError as exc:
        errors.append(exc)
    return errors


def test_every_public_error_is_named_by_its_public_module() -> None:
    for cls in PUBLIC_ERRORS:
        assert cls.__module__ == "graphsend"
        assert getattr(graphsend, cls.__name__) is cls
    assert graphsend.Receipt.__module__ == "graphsend"


def test_real_errors_survive_json_and_pickle_with_every_field() -> None:
    with FakeGraph() as graph:
        token = graph.token  # what the Client sends
        errors = _real_errors(graph)
    kinds = {type(e) for e in errors}
    assert graphsend.ThrottledError in kinds and graphsend.TransportError in kinds
    assert graphsend.AuthenticationError in kinds and graphsend.NotFoundError in kinds
    for err in errors:
        for back in (_like_celery_json(err), pickle.loads(pickle.dumps(err))):
            assert type(back) is type(err)
            assert str(back) == str(err)
            assert _fields(back) == _fields(err)
            assert back.may_have_sent == err.may_have_sent
            assert back.client_request_id == err.client_request_id
        assert token not in json.dumps(list(err.args))  # no token in what travels
    throttled = next(e for e in errors if isinstance(e, graphsend.ThrottledError))
    back = _like_celery_json(throttled)
    assert isinstance(back, graphsend.ThrottledError)
    assert back.status == 429 and back.retry_after == throttled.retry_after
    assert back.request_id and back.request_id == throttled.request_id


def test_constructed_errors_round_trip_and_keep_their_constructor() -> None:
    made = [
        graphsend.SendError("x", may_have_sent=True, client_request_id="c", attempts=3),
        graphsend.NotFoundError(404, code="ErrorItemNotFound", request_id="r", retry_after=2.5),
        graphsend.TimeoutError("timed out", curl_code=28, may_have_sent=True),
        graphsend.LimiterError("no slot"),
    ]
    for err in made:
        err.args = (f"{err.args[0]}; reworded",)  # what settle() and others do
        back = _like_celery_json(err)
        assert type(back) is type(err) and str(back) == str(err)
        assert _fields(back) == _fields(err)
    # The ordinary constructors are untouched: a two-argument call with a plain dict is not
    # mistaken for a rebuild.
    assert graphsend.SendError("only text", may_have_sent=False).args[0] == "only text"
    assert str(graphsend.GraphError(418)) == "418 no error code: no message (request-id: none)"


def test_receipts_and_batches_travel_through_kombus_json() -> None:
    from kombu.utils.json import dumps, loads

    receipt = graphsend.Receipt(202, "req", "crid", "Sun, 29 Nov 2026 23:00:00 GMT", 0.012)
    err = graphsend.NotFoundError(404, request_id="r404", client_request_id="c404")
    back = loads(dumps(gs_celery.encode([receipt, err])))
    assert back[0] == receipt and isinstance(back[0], graphsend.Receipt)
    assert isinstance(back[1], graphsend.NotFoundError) and back[1].request_id == "r404"
    assert loads(dumps(gs_celery.encode(receipt))) == receipt
    # Read without kombu's decoder (raw JSON from the backend): results() rebuilds them.
    raw = json.loads(json.dumps(gs_celery.encode([receipt, err])))
    rebuilt = gs_celery.results(raw)
    assert rebuilt[0] == receipt and type(rebuilt[1]) is graphsend.NotFoundError
    assert pickle.loads(pickle.dumps(receipt)) == receipt


def test_send_task_refuses_autoretry() -> None:
    celery = pytest.importorskip("celery")
    app = celery.Celery("t", broker="redis://127.0.0.1:1/0")
    with pytest.raises(ValueError, match="autoretry"):
        gs_celery.send_task(app, lambda: graphsend.Client("t"), autoretry_for=(Exception,))

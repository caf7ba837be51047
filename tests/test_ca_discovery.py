"""Which CA certificates verify the server (graphsend/_rules/ca.py): ca_bundle=, else
SSL_CERT_FILE, else CURL_CA_BUNDLE; the binary wheel (whose libcurl has no CA store compiled in)
then looks for a well-known system bundle, then certifi, and otherwise fails the first HTTPS send
with an error that names these options.

Each case runs in a subprocess with exactly the CA variables it sets (this machine's environment
may set both), sending to a FakeGraph over HTTPS; the test asserts on what FakeGraph received.
The wheel's mode is the wheel's own marker module (graphsend._wheel), put in place in that
subprocess, with the list of system paths pointed at files the test writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from graphsend._rules import ca
from graphsend.testing import FakeGraph

pytest.importorskip("cryptography")

_SCRIPT = r"""
import asyncio, json, sys, types
spec = json.loads(sys.argv[1])
if spec.get("wheel"):
    # What packaging/build-wheel.sh adds to the wheel: this libcurl has no CA store of its own.
    sys.modules["graphsend._wheel"] = types.ModuleType("graphsend._wheel")
if spec.get("no_certifi"):
    sys.modules["certifi"] = None  # import certifi raises ImportError, as when not installed
import graphsend
from graphsend._rules import ca
if "system_bundles" in spec:
    ca.SYSTEM_BUNDLES = tuple(spec["system_bundles"])
out = {}
def attempt(name, call):
    try:
        out[name] = {"status": call().status}
    except graphsend.SendError as exc:
        out[name] = {"error": type(exc).__name__, "curl_code": getattr(exc, "curl_code", None),
                     "may_have_sent": exc.may_have_sent, "message": str(exc)}
    except (OSError, ValueError) as exc:
        out[name] = {"error": type(exc).__name__, "message": str(exc)}
kwargs = {"ca_bundle": spec["ca_bundle"]} if "ca_bundle" in spec else {}
try:
    client = graphsend.Client(spec["token"], base_url=spec["base_url"], **kwargs)
except (OSError, ValueError) as exc:
    print(json.dumps({"construct": {"error": type(exc).__name__, "message": str(exc)}}))
    sys.exit(0)
out["ca_bundle"] = client._options["ca_bundle"]
drafts = spec["drafts"]
attempt("send", lambda: client.send(drafts[0]))
if len(drafts) > 1:
    attempt("send_again", lambda: client.send(drafts[1]))
    def many():
        (result,) = client.send_many([drafts[2]])
        if isinstance(result, graphsend.SendError):
            raise result
        return result
    attempt("send_many", many)
    async def use_async():
        async with graphsend.AsyncClient(spec["token"], base_url=spec["base_url"], **kwargs) as c:
            return await c.send(drafts[3])
    attempt("async_send", lambda: asyncio.run(use_async()))
client.close()
print(json.dumps(out))
"""


def run(graph: FakeGraph, env: dict[str, str] | None = None, **spec: object) -> dict:
    """Run one case in a fresh interpreter with only the CA variables given in ``env``."""
    clean = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "CURL_CA_BUNDLE")}
    spec = {"base_url": graph.base_url, "token": graph.token, **spec}
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(spec)],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def graph() -> Iterator[FakeGraph]:
    with FakeGraph(https=True) as g:
        yield g


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A valid CA bundle that does not hold FakeGraph's CA."""
    from graphsend.testing._certificates import write_certificates

    ca, _, _ = write_certificates(str(tmp_path_factory.mktemp("other-ca")), "127.0.0.1")
    return ca


def sent(graph: FakeGraph, drafts: list[str]) -> list[str]:
    ids = {m.id for m in graph.sent_items()}
    return [d for d in drafts if d in ids]


def untrusted(result: dict) -> bool:
    """The send failed on the certificate (curl 60) before anything went out."""
    return result.get("curl_code") == 60 and result["may_have_sent"] is False


# ------------------------------------------------------------------ every build


def test_ssl_cert_file_names_the_ca_to_trust(graph: FakeGraph) -> None:
    drafts = graph.create_drafts(4)
    out = run(graph, {"SSL_CERT_FILE": graph.ca_bundle}, drafts=drafts)
    assert out["ca_bundle"] == graph.ca_bundle
    statuses = [out[k].get("status") for k in ("send", "send_again", "send_many", "async_send")]
    assert statuses == [202] * 4, out
    assert sent(graph, drafts) == drafts


def test_curl_ca_bundle_names_the_ca_to_trust(graph: FakeGraph) -> None:
    (draft,) = graph.create_drafts(1)
    out = run(graph, {"CURL_CA_BUNDLE": graph.ca_bundle}, drafts=[draft])
    assert out["send"] == {"status": 202}
    assert sent(graph, [draft]) == [draft]


def test_ssl_cert_file_comes_before_curl_ca_bundle(graph: FakeGraph, other_ca: str) -> None:
    first, second = graph.create_drafts(2)
    out = run(graph, {"SSL_CERT_FILE": graph.ca_bundle, "CURL_CA_BUNDLE": other_ca}, drafts=[first])
    assert out["send"] == {"status": 202}
    out = run(
        graph, {"SSL_CERT_FILE": other_ca, "CURL_CA_BUNDLE": graph.ca_bundle}, drafts=[second]
    )
    assert untrusted(out["send"]), out
    assert sent(graph, [first, second]) == [first]


def test_ca_bundle_argument_comes_before_the_variables(graph: FakeGraph, other_ca: str) -> None:
    first, second = graph.create_drafts(2)
    env = {"SSL_CERT_FILE": other_ca, "CURL_CA_BUNDLE": other_ca}
    out = run(graph, env, drafts=[first], ca_bundle=graph.ca_bundle)
    assert out["send"] == {"status": 202}
    # ... also in the wheel's mode, and the other way round.
    out = run(
        graph, {"SSL_CERT_FILE": graph.ca_bundle}, drafts=[second], ca_bundle=other_ca, wheel=True
    )
    assert untrusted(out["send"]), out
    assert sent(graph, [first, second]) == [first]


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "CURL_CA_BUNDLE"])
def test_a_variable_naming_a_bad_file_is_an_error_that_names_it(
    graph: FakeGraph, tmp_path: object, variable: str
) -> None:
    missing = os.path.join(str(tmp_path), "missing.pem")
    out = run(graph, {variable: missing}, drafts=[])
    assert out["construct"]["error"] == "FileNotFoundError"
    assert out["construct"]["message"] == f"{variable} not found: {missing}"
    not_pem = os.path.join(str(tmp_path), "not.pem")
    with open(not_pem, "w") as f:
        f.write("hello\n")
    out = run(graph, {variable: not_pem}, drafts=[])
    assert out["construct"]["error"] == "ValueError"
    assert variable in out["construct"]["message"]


def test_an_empty_variable_counts_as_unset(graph: FakeGraph) -> None:
    (draft,) = graph.create_drafts(1)
    out = run(graph, {"SSL_CERT_FILE": "", "CURL_CA_BUNDLE": graph.ca_bundle}, drafts=[draft])
    assert out["send"] == {"status": 202}


def test_plain_http_to_loopback_looks_for_no_ca(tmp_path: object) -> None:
    """A bad variable or no CA at all does not matter where there is no TLS."""
    with FakeGraph() as plain:
        drafts = plain.create_drafts(2)
        missing = os.path.join(str(tmp_path), "missing.pem")
        out = run(plain, {"SSL_CERT_FILE": missing}, drafts=drafts[:1])
        assert out["ca_bundle"] is None and out["send"] == {"status": 202}
        out = run(plain, drafts=drafts[1:], wheel=True, system_bundles=[missing], no_certifi=True)
        assert out["send"] == {"status": 202}
        assert sent(plain, drafts) == drafts


@pytest.mark.skipif(ca.bundled_libcurl(), reason="this is the binary wheel's libcurl")
def test_a_system_build_leaves_the_default_to_its_libcurl(graph: FakeGraph) -> None:
    """No variable: the system libcurl's compiled-in store (the distribution's) is used, not a
    path list: FakeGraph's CA is not in it, so the send is refused as untrusted (60), not as
    'no CA file' (77)."""
    (draft,) = graph.create_drafts(1)
    out = run(graph, drafts=[draft], system_bundles=[graph.ca_bundle])
    assert out["ca_bundle"] is None
    assert untrusted(out["send"]), out
    assert sent(graph, [draft]) == []


# ------------------------------------------------------------------ the wheel's libcurl


def test_wheel_uses_the_first_system_bundle_that_exists(
    graph: FakeGraph, other_ca: str, tmp_path: object
) -> None:
    first, second = graph.create_drafts(2)
    missing = os.path.join(str(tmp_path), "missing.pem")
    out = run(
        graph, drafts=[first], wheel=True, system_bundles=[missing, graph.ca_bundle, other_ca]
    )
    assert out["ca_bundle"] == graph.ca_bundle
    assert out["send"] == {"status": 202}
    out = run(
        graph, drafts=[second], wheel=True, system_bundles=[missing, other_ca, graph.ca_bundle]
    )
    assert out["ca_bundle"] == other_ca
    assert untrusted(out["send"]), out
    assert sent(graph, [first, second]) == [first]


def test_wheel_variables_come_before_the_system_bundles(graph: FakeGraph, other_ca: str) -> None:
    (draft,) = graph.create_drafts(1)
    out = run(
        graph,
        {"SSL_CERT_FILE": graph.ca_bundle},
        drafts=[draft],
        wheel=True,
        system_bundles=[other_ca],
    )
    assert out["send"] == {"status": 202}


def test_wheel_falls_back_to_certifi(graph: FakeGraph, tmp_path: object) -> None:
    certifi = pytest.importorskip("certifi")
    (draft,) = graph.create_drafts(1)
    missing = os.path.join(str(tmp_path), "missing.pem")
    out = run(graph, drafts=[draft], wheel=True, system_bundles=[missing])
    assert out["ca_bundle"] == certifi.where()
    assert untrusted(out["send"]), out  # certifi's public CAs do not hold FakeGraph's


def test_wheel_without_any_ca_fails_the_first_send_naming_the_options(
    graph: FakeGraph, tmp_path: object
) -> None:
    drafts = graph.create_drafts(4)
    before = len(graph.requests)
    missing = os.path.join(str(tmp_path), "missing.pem")
    out = run(graph, drafts=drafts, wheel=True, system_bundles=[missing], no_certifi=True)
    # The Client was made; every way to send fails before anything goes out, and says what to do.
    for way in ("send", "send_again", "send_many", "async_send"):
        result = out[way]
        assert result["error"] == "TransportError", (way, result)
        assert result["curl_code"] == 77 and result["may_have_sent"] is False
        for option in ("ca_bundle=", "SSL_CERT_FILE", "CURL_CA_BUNDLE", "certifi", missing):
            assert option in result["message"], (way, option, result["message"])
    assert len(graph.requests) == before
    assert sent(graph, drafts) == []

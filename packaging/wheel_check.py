"""`make wheel-check`: the built wheel, installed into a fresh venv in a minimal root file system
(no libcurl, no compiler), sends over HTTPS to a FakeGraph running here; each check below must
pass. Run by packaging/wheel-check.sh with the dev venv's Python (FakeGraph needs cryptography
and h2); the sends themselves run under chroot, with the root file system's own Python.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator

from graphsend.testing import FakeGraph

BUNDLED_LICENCES = ("openssl-LICENSE.txt", "nghttp2-COPYING", "curl-COPYING")
DEBIAN_BUNDLE = "etc/ssl/certs/ca-certificates.crt"  # what ca-certificates installs in the rootfs
CHECK_DIR = "/tmp/graphsend-wheel-check"  # inside the rootfs
VENV = "/opt/graphsend-wheel-check"  # inside the rootfs, made afresh on every run

passed: list[str] = []
failed: list[str] = []


def check(name: str, ok: bool, detail: object = "") -> None:
    (passed if ok else failed).append(name)
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"), flush=True)


def chroot(rootfs: str, *argv: str, env: dict[str, str] | None = None) -> str:
    """Run argv inside the root file system with a clean environment; return its stdout."""
    base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    proc = subprocess.run(
        [shutil.which("chroot") or "/usr/sbin/chroot", rootfs, *argv],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc.stdout


def smoke(rootfs: str, spec: dict[str, object], env: dict[str, str] | None = None) -> dict:
    out = chroot(
        rootfs, f"{VENV}/bin/python", f"{CHECK_DIR}/wheel_smoke.py", json.dumps(spec), env=env
    )
    return json.loads(out.strip().splitlines()[-1])


@contextlib.contextmanager
def replaced(path: str, content: bytes | None) -> Iterator[None]:
    """Put ``content`` at ``path`` (None: no file there) for the block, then restore it."""
    backup = path + ".wheel-check-backup"
    had = os.path.lexists(path)
    if had:
        os.replace(path, backup)
    try:
        if content is not None:
            with open(path, "wb") as f:
                f.write(content)
        yield
    finally:
        if os.path.lexists(path):
            os.remove(path)
        if had:
            os.replace(backup, path)


def tool(name: str) -> str:
    """A tool of the venv that packaging/build-wheel.sh made (auditwheel, twine)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here, "..", "build", "wheel", "tools", "bin", name)


def auditwheel_tag(wheel: str) -> str:
    out = subprocess.run(
        [tool("auditwheel"), "show", wheel], capture_output=True, text=True, check=True
    ).stdout
    m = re.search(r'consistent with the following platform tag:\s*"([^"]+)"', out)
    return m.group(1) if m else out


OFFLINE = ["--no-index", "--no-cache-dir", "--disable-pip-version-check"]
# One Client.send over HTTPS; prints the status, the _native attribute named, _native's file.
SEND = (
    "import sys, graphsend; from graphsend import _native; "
    "t, u, ca, d, what = sys.argv[1:]; "
    "c = graphsend.Client(t, base_url=u, ca_bundle=ca); "
    "print(c.send(d).status, getattr(_native, what), _native.__file__)"
)


def install_and_send(
    python: str, tmp: str, package: list[str], graph: FakeGraph, report: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    """A fresh venv in tmp, ``package`` pip-installed into it offline, then one send of a new
    draft to graph from it: (pip's process, what the send printed and its errors)."""
    subprocess.run([python, "-m", "venv", f"{tmp}/venv"], check=True)
    pip = subprocess.run(
        [f"{tmp}/venv/bin/pip", "install", "-q", *OFFLINE, *package],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if pip.returncode != 0:
        return pip, ""
    draft = graph.create_draft()
    argv = [graph.token, graph.base_url, graph.ca_bundle or "", draft, report]
    out = subprocess.run(
        [f"{tmp}/venv/bin/python", "-c", SEND, *argv],
        capture_output=True,
        text=True,
        cwd=tmp,
        timeout=60,
    )
    if graph.send_count(draft) != 1:
        return pip, "the draft was not sent exactly once: " + out.stdout + out.stderr[-1000:]
    return pip, out.stdout + out.stderr[-1000:]


def check_sdist_here(sdist: str, wheels: str) -> None:
    """Install the sdist into a fresh venv on this machine (system libcurl) and send over HTTPS."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, FakeGraph(https=True) as graph:
        pip, out = install_and_send(
            sys.executable, tmp, ["--find-links", wheels, sdist], graph, "limited_api"
        )
        if pip.returncode != 0:
            check("sdist builds from source against the system libcurl", False, pip.stderr[-2000:])
            return
        check(
            "sdist builds from source against the system libcurl and sends over HTTPS",
            out.startswith("202 False ") and out.split()[2].startswith(tmp),
            out,
        )


def check_other_pythons(wheel: str) -> None:
    """The one abi3 wheel on every CPython from 3.10 that pyenv has here (3.10 is the oldest its
    cp310 tag claims): a fresh venv each, one send over HTTPS with its bundled libcurl."""
    import tempfile

    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = {}
    for python in sorted(glob.glob(f"{root}/versions/3.1[0-9]*/bin/python3")):
        version = os.path.basename(os.path.dirname(os.path.dirname(python)))
        found.setdefault(".".join(version.split(".")[:2]), python)
    if not found:
        print("     (no pyenv Pythons here: the wheel ran on the root file system's Python only)")
        return
    with FakeGraph(https=True) as graph:
        for minor, python in sorted(found.items(), key=lambda kv: int(kv[0].split(".")[1])):
            with tempfile.TemporaryDirectory() as tmp:
                pip, out = install_and_send(python, tmp, [wheel], graph, "ssl_version")
            check(
                f"the wheel installs and sends on CPython {minor}",
                pip.returncode == 0 and out.startswith("202 OpenSSL/"),
                pip.stderr[-1000:] + out,
            )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rootfs", required=True)
    ap.add_argument("--wheel", required=True)
    ap.add_argument("--sdist", required=True)
    ap.add_argument("--wheels", required=True, help="a folder with a setuptools wheel")
    args = ap.parse_args()
    rootfs, wheel = os.path.realpath(args.rootfs), os.path.realpath(args.wheel)
    sdist, wheels = os.path.realpath(args.sdist), os.path.realpath(args.wheels)
    started = time.monotonic()
    print(f"wheel-check: {os.path.basename(wheel)} ({os.path.getsize(wheel)} bytes)")

    # The wheel itself: its manylinux tag and the licence texts of what it bundles.
    tag = auditwheel_tag(wheel)
    m = re.fullmatch(r"manylinux_2_(\d+)_x86_64", tag)
    check("auditwheel show: manylinux_2_28 or older", bool(m and int(m.group(1)) <= 28), tag)
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = next(z.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    headers = metadata.split("\n\n", 1)[0]  # the README follows the first blank line
    licences = [n for n in names if "/licenses/" in n]
    check(
        "bundled licence texts in .dist-info/licenses and named in METADATA",
        all(any(n.endswith(f"licenses/bundled/{f}") for n in licences) for f in BUNDLED_LICENCES)
        and all(f"License-File: bundled/{f}" in headers for f in BUNDLED_LICENCES),
        licences,
    )
    twine = subprocess.run(
        [tool("twine"), "check", "--strict", wheel, sdist], capture_output=True, text=True
    )
    check("twine check --strict: the wheel and sdist", twine.returncode == 0, twine.stdout)
    check("the wheel's own LICENSE too", any(n.endswith("licenses/LICENSE") for n in licences))
    # PyPI refuses a wheel whose License-File (a path under .dist-info/licenses/) is not in it.
    named = re.findall(r"^License-File: (.+)$", headers, re.MULTILINE)
    check(
        "every License-File in METADATA is in .dist-info/licenses/",
        bool(named)
        and all(any(n.endswith(f".dist-info/licenses/{f}") for n in names) for f in named),
        named,
    )

    # The root file system: Python, no libcurl, no C compiler.
    libcurls = glob.glob(f"{rootfs}/usr/lib/**/libcurl*", recursive=True) + glob.glob(
        f"{rootfs}/lib/**/libcurl*", recursive=True
    )
    compilers = [c for c in ("gcc", "cc", "clang", "tcc") if glob.glob(f"{rootfs}/usr/bin/{c}*")]
    check("root file system has no libcurl", not libcurls, libcurls)
    check("root file system has no C compiler", not compilers, compilers)

    # A fresh venv, the wheel installed offline (it has no dependencies).
    check_dir = rootfs + CHECK_DIR
    shutil.rmtree(check_dir, ignore_errors=True)
    shutil.rmtree(rootfs + VENV, ignore_errors=True)
    os.makedirs(check_dir)
    shutil.copy(wheel, check_dir)
    shutil.copy(os.path.join(os.path.dirname(__file__), "wheel_smoke.py"), check_dir)
    chroot(rootfs, "python3", "-m", "venv", VENV)
    chroot(
        rootfs,
        f"{VENV}/bin/pip",
        "install",
        "-q",
        "--no-index",
        "--no-cache-dir",
        "--disable-pip-version-check",
        f"{CHECK_DIR}/{os.path.basename(wheel)}",
    )
    installed = glob.glob(f"{rootfs}{VENV}/lib/python3*/site-packages/graphsend-*.dist-info")
    check(
        "licence texts installed with the package",
        bool(installed)
        and all(os.path.isfile(f"{installed[0]}/licenses/bundled/{f}") for f in BUNDLED_LICENCES),
        installed,
    )

    with FakeGraph(https=True, http2=True) as graph:
        assert graph.ca_bundle is not None
        with open(graph.ca_bundle, "rb") as f:
            ca_pem = f.read()
        with open(f"{check_dir}/ca.pem", "wb") as f:
            f.write(ca_pem)
        base = {"base_url": graph.base_url, "token": graph.token}

        def sent(drafts: list[str]) -> list[str]:
            ids = {m.id for m in graph.sent_items()}
            return [d for d in drafts if d in ids]

        # 1. SSL_CERT_FILE names FakeGraph's CA: every way to send works, over HTTP/2 and 1.1.
        drafts = graph.create_drafts(6)
        report = smoke(
            rootfs,
            {"mode": "all", **base, "drafts": drafts},
            env={"SSL_CERT_FILE": f"{CHECK_DIR}/ca.pem"},
        )
        facts = {k: v for k, v in report.items() if k != "results"}
        print(f"     in the root file system: {json.dumps(facts)}")
        check(
            "imported from the fresh venv, abi3 build",
            report["native_file"].startswith(VENV) and report["limited_api"] is True,
            report,
        )
        check(
            "bundled libcurl with OpenSSL and HTTP/2",
            report["tls"].startswith("OpenSSL/") and report["http2"] is True,
            report,
        )
        results = report["results"]
        check(
            "SSL_CERT_FILE: Client.send, send_many, http2=False, send_message, AsyncClient sent",
            [r.get("status") for r in results] == [202] * 6 and sent(drafts) == drafts,
            results,
        )
        versions = {r.http_version for r in graph.requests if "/send" in r.path}
        check("over HTTP/2 and HTTP/1.1", versions == {"HTTP/2", "HTTP/1.1"}, versions)

        # 2. No variable: the first well-known system bundle is used. Debian's (from the
        # ca-certificates package) does not hold FakeGraph's CA: the bundled libcurl read it
        # and refused the certificate (60), rather than finding no CA file at all (77).
        draft = graph.create_draft()
        report = smoke(rootfs, {"mode": "one", **base, "drafts": [draft]})
        (r,) = report["results"]
        check(
            "no variable: Debian's bundle is used (FakeGraph's CA is not in it: curl error 60)",
            report["ca_bundle"] == "/" + DEBIAN_BUNDLE
            and r.get("curl_code") == 60
            and r["may_have_sent"] is False
            and not sent([draft]),
            report,
        )
        # ... and with FakeGraph's CA at Debian's path, the send goes through.
        with replaced(f"{rootfs}/{DEBIAN_BUNDLE}", ca_pem):
            (r,) = smoke(rootfs, {"mode": "one", **base, "drafts": [draft]})["results"]
        check(
            "no variable: the CA at Debian's well-known path is trusted",
            r.get("status") == 202 and sent([draft]) == [draft],
            r,
        )

        # 3. No variable, no system bundle, no certifi: a clear error at the first send,
        # naming the options; nothing reached the server.
        draft = graph.create_draft()
        before = len(graph.requests)
        with replaced(f"{rootfs}/{DEBIAN_BUNDLE}", None):
            (r,) = smoke(rootfs, {"mode": "one", **base, "drafts": [draft]})["results"]
        message = r.get("message", "")
        check(
            "no CA anywhere: TransportError naming ca_bundle=, SSL_CERT_FILE, certifi",
            r.get("type") == "TransportError"
            and r["may_have_sent"] is False
            and all(w in message for w in ("ca_bundle=", "SSL_CERT_FILE", "certifi"))
            and len(graph.requests) == before,
            r,
        )

    # The sdist: where libcurl's headers and a compiler exist (here), it builds and sends; in
    # the root file system (neither), pip stops with setup.py's message, not a compiler error.
    shutil.copy(sdist, check_dir)
    for f in glob.glob(f"{wheels}/*.whl"):
        shutil.copy(f, check_dir)
    proc = subprocess.run(
        [
            shutil.which("chroot") or "/usr/sbin/chroot",
            rootfs,
            f"{VENV}/bin/pip",
            "install",
            "--no-index",
            "--find-links",
            CHECK_DIR,
            "--no-cache-dir",
            "--force-reinstall",
            f"{CHECK_DIR}/{os.path.basename(sdist)}",
        ],
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    check(
        "sdist without libcurl's headers: pip fails with setup.py's message",
        proc.returncode != 0
        and "graphsend needs libcurl's development files" in proc.stdout + proc.stderr
        and "error: command" not in proc.stdout + proc.stderr,
        (proc.returncode, (proc.stdout + proc.stderr)[-2000:]),
    )
    check_sdist_here(sdist, wheels)
    check_other_pythons(wheel)

    print(
        f"wheel-check: {len(passed)} passed, {len(failed)} failed "
        f"in {time.monotonic() - started:.1f}s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

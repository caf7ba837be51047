"""Describe the machine and the software under test, for the results header."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any

from .common import REPO_DIR, cpu_sets

PEERS = (
    "pycurl", "requests", "httpx", "urllib3", "aiohttp", "msgraph-sdk", "azure-identity",
    "h2", "matplotlib",
)  # fmt: skip
# What the peers run on, and what decides their results: httpx's connection pool and the
# sniffio it imports per request (S3), h2/hpack for HTTP/2, aiohttp's C parts, the SDK's layers.
# pycurl's libcurl is in its version string ("pycurl" in describe()).
TRANSITIVE = (
    "httpcore", "h11", "anyio", "sniffio", "hpack", "hyperframe", "certifi", "idna",
    "charset-normalizer", "aiohappyeyeballs", "multidict", "yarl", "frozenlist", "propcache",
    "msgraph-core", "microsoft-kiota-http", "microsoft-kiota-abstractions", "azure-core",
    "msal", "cryptography",
)  # fmt: skip


def _cpu_model() -> str:
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or "unknown"
    name = fields.get("model name", "unknown")
    extra = [f"family {fields['cpu family']} model {fields['model']}"] if "model" in fields else []
    if "cpu MHz" in fields:
        extra.append(f"{float(fields['cpu MHz']):.0f} MHz")
    if "hypervisor" in fields.get("flags", "").split():
        extra.append("virtual machine")
    return f"{name} ({', '.join(extra)})" if extra else name


def _tree() -> str:
    """The graphsend commit measured, and whether its sources had uncommitted changes."""
    try:
        git = ["git", "-C", str(REPO_DIR)]
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "csrc", "graphsend", "setup.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        changed = sorted({line[3:].split("/")[0] for line in dirty if line.strip()})
        return head + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def _libcurl() -> str:
    try:
        return subprocess.run(
            ["curl-config", "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _graphsend() -> str:
    try:
        import graphsend
        from graphsend import _native

        return f"{graphsend.__version__} (libcurl {getattr(_native, 'libcurl_version', '?')})"
    except Exception as e:
        return f"not importable ({type(e).__name__})"


def _pycurl() -> str:
    try:
        import pycurl

        return str(pycurl.version)
    except ImportError:
        return "not installed"


def _pinning() -> str:
    sets = cpu_sets()
    if sets is None:
        return "none"
    return f"servers on CPU {sorted(sets[0])}, clients on CPU {sorted(sets[1])}"


def _versions(names: tuple[str, ...]) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def describe(nginx_version: str) -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "os": _os_name(),
        "python": sys.version.split()[0],
        "libcurl (C programs, build)": _libcurl(),
        "graphsend": _graphsend(),
        "graphsend tree": _tree(),
        "pycurl": _pycurl(),
        "nginx": nginx_version,
        "load_average_at_start": os.getloadavg(),
        "pinning": _pinning(),
        "versions": _versions(PEERS),
        "transitive_versions": _versions(TRANSITIVE),
    }

"""Describe the machine and the software under test, for the results header."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any

PEERS = (
    "pycurl", "requests", "httpx", "urllib3", "aiohttp", "msgraph-sdk", "azure-identity",
    "h2", "matplotlib",
)  # fmt: skip


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


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


def describe(nginx_version: str) -> dict[str, Any]:
    versions = {}
    for name in PEERS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "os": _os_name(),
        "python": sys.version.split()[0],
        "libcurl (C programs, build)": _libcurl(),
        "graphsend": _graphsend(),
        "pycurl": _pycurl(),
        "nginx": nginx_version,
        "load_average_at_start": os.getloadavg(),
        "versions": versions,
    }

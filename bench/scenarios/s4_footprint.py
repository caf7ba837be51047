"""S4: the cost of having it: import time, RSS after import, and what installing it brings in.

Import time is measured two ways in fresh interpreters (median of several, after one warm-up
run so bytecode caches exist as they do after pip install): `python -X importtime` (cumulative
time of the modules the statement imported, startup modules excluded) and the wall time of the
import statement itself. RSS is the interpreter's VmRSS after the import minus a bare
interpreter's. Packages and size come from the installed distributions' metadata: the
requirement closure (markers evaluated for this interpreter) and the files each one recorded.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from ..common import REPO_DIR, pin_to
from . import Settings, median

STATEMENTS = {
    "graphsend": "import graphsend",
    "pycurl": "import pycurl",
    "urllib3": "import urllib3",
    "requests": "import requests",
    "httpx": "import httpx",
    "aiohttp": "import aiohttp",
    "msgraph-sdk": "from msgraph import GraphServiceClient",
    "msgraph-sdk + azure-identity": (
        "from azure.identity import ClientSecretCredential\nfrom msgraph import GraphServiceClient"
    ),
}
DISTRIBUTIONS = {
    "graphsend": ["graphsend"],
    "msgraph-sdk": ["msgraph-sdk"],  # it requires azure-identity itself
    "requests": ["requests"],
    "httpx": ["httpx"],
    "aiohttp": ["aiohttp"],
}

PROBE = """\
import time
t0 = time.perf_counter_ns()
{stmt}
dt = time.perf_counter_ns() - t0
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS:"))
print(dt, rss)
"""
_IMPORTTIME = re.compile(r"^import time:\s*(\d+) \|\s*(\d+) \|( *)(\S+)")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # users' installs have bytecode caches
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    return env


def _python(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_DIR,
        env=_env(),
        capture_output=True,
        text=True,
        preexec_fn=pin_to("client"),
    )


def _top_level(stderr: str) -> dict[str, int]:
    """Top-level modules in -X importtime output -> cumulative microseconds."""
    out: dict[str, int] = {}
    for line in stderr.splitlines():
        m = _IMPORTTIME.match(line)
        if m and len(m.group(3)) == 1:  # one space after the bar: not nested
            out[m.group(4)] = int(m.group(2))
    return out


def import_cost(stmt: str, runs: int) -> dict[str, Any]:
    startup = set(_top_level(_python(["-X", "importtime", "-c", "pass"]).stderr))
    _python(["-c", stmt])  # warm-up: writes bytecode caches where missing
    importtime, wall, rss = [], [], []
    base_rss = []
    for _ in range(runs):
        r = _python(["-X", "importtime", "-c", stmt])
        if r.returncode != 0:
            return {"na": r.stderr.strip().splitlines()[-1] if r.stderr else "import failed"}
        mods = _top_level(r.stderr)
        importtime.append(sum(v for k, v in mods.items() if k not in startup) / 1000)
        p = _python(["-c", PROBE.format(stmt=stmt)])
        ns, kb = p.stdout.split()
        wall.append(int(ns) / 1e6)
        rss.append(int(kb))
        b = _python(["-c", PROBE.format(stmt="pass")])
        base_rss.append(int(b.stdout.split()[1]))
    return {
        "importtime_ms": median(importtime),
        "wall_ms": median(wall),
        "rss_mb": median([float(x) for x in rss]) / 1024,
        "rss_delta_mb": (median([float(x) for x in rss]) - median([float(x) for x in base_rss]))
        / 1024,
    }


def _requirement_names(dist: metadata.Distribution) -> list[str]:
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip vendors it
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    names = []
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            names.append(req.name)
    return names


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist_size(dist: metadata.Distribution, name: str) -> int:
    if name == "graphsend":  # editable install: count the package directory itself
        pkg = REPO_DIR / "graphsend"
        return sum(p.stat().st_size for p in pkg.rglob("*") if p.is_file())
    total = 0
    for f in dist.files or []:
        path = Path(str(f.locate()))
        if path.is_file():
            total += path.stat().st_size
    return total


def closure(roots: list[str]) -> dict[str, Any]:
    seen: dict[str, int] = {}
    missing: list[str] = []
    stack = [_canonical(r) for r in roots]
    while stack:
        name = stack.pop()
        if name in seen or name in missing:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        seen[name] = _dist_size(dist, name)
        stack.extend(_canonical(n) for n in _requirement_names(dist))
    return {
        "packages": len(seen),
        "size_mb": sum(seen.values()) / 1e6,
        "names": sorted(seen),
        "missing": missing,
    }


def run(settings: Settings, log: Any = print) -> dict[str, Any]:
    imports = {name: import_cost(stmt, settings.s4_runs) for name, stmt in STATEMENTS.items()}
    installs = {name: closure(roots) for name, roots in DISTRIBUTIONS.items()}
    log(
        "S4 import: "
        + ", ".join(
            f"{n} {r['importtime_ms']:.1f}ms" if "importtime_ms" in r else f"{n} n/a"
            for n, r in imports.items()
        )
    )
    log("S4 install: " + ", ".join(f"{n} {r['packages']} pkgs" for n, r in installs.items()))
    return {"imports": imports, "installs": installs, "runs": settings.s4_runs}

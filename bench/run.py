"""Run the benchmark suite and write bench/results/ (results.json, results.md, results.png).

    python -m bench.run [--quick] [--only s1,s3] [--out DIR]

Every number in one results file comes from one run; ratios are computed within that run.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import report
from .common import RESULTS_DIR
from .machine import describe
from .scenarios import (
    Settings,
    s1_sequential,
    s2_threads,
    s3_bulk,
    s4_footprint,
    s5_steadiness,
)
from .servers import Nginx

ALL = ("s1", "s2", "s3", "s4", "s5")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short run (under two minutes)")
    ap.add_argument("--only", default=",".join(ALL), help="comma-separated scenarios to run")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(ALL)
    if unknown:
        ap.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    settings = Settings.make(args.quick)
    nginx = Nginx()
    results: dict[str, Any] = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "machine": describe(nginx.version()),
        "settings": settings.__dict__,
    }
    log(f"{results['mode']} run on {results['machine']['cpu']}, Python {platform.python_version()}")
    t0 = time.monotonic()
    with nginx as ep:
        if "s1" in only:
            results["s1"] = s1_sequential.run(ep, settings, log)
        if "s2" in only:
            results["s2"] = s2_threads.run(ep, settings, log)
        if "s3" in only:
            results["s3"] = s3_bulk.run(settings, log)
        if "s5" in only:
            results["s5"] = s5_steadiness.run(ep, settings, log)
    if "s4" in only:  # no server needed
        results["s4"] = s4_footprint.run(settings, log)
    results["seconds"] = time.monotonic() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    md = report.write(results, args.out)
    log(f"done in {results['seconds']:.0f} s: {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

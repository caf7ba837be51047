"""The five scenarios, one module each; Settings holds the knobs that --quick turns down."""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    quick: bool
    s1_rounds: int  # interleaved rounds per client and protocol
    s1_round_seconds: float  # each round sized to take about this long
    s2_threads: tuple[int, ...]
    s2_rounds: int
    s2_latency_sends: int  # sends per thread per round against the 50 ms server
    s2_round_seconds: float  # against nginx
    s2_peers: bool  # also run the peers' threaded runners (context)
    s3_rounds: int  # warm bulk rounds per client, after one cold round
    s3_round_timeout: float  # a bulk round slower than this stops that client (reported as >)
    s3_client_budget: float  # seconds of warm rounds per client; slower ones get fewer rounds
    s4_runs: int  # fresh interpreters per import measurement
    s5_sends: int  # leak check (Client.send): RSS after this many sends minus after 1,000
    s5_sends_other: int  # leak check for the other graphsend entry points
    s5_gil_seconds: float
    s5_gil_peers: tuple[str, ...]  # peers that get the GIL probe too
    seed: int = 1

    @classmethod
    def make(cls, quick: bool) -> Settings:
        if quick:
            return cls(
                quick=True,
                s1_rounds=5,
                s1_round_seconds=0.06,
                s2_threads=(1, 2, 4, 8, 16),
                s2_rounds=2,
                s2_latency_sends=6,
                s2_round_seconds=0.15,
                s2_peers=False,
                s3_rounds=2,
                s3_round_timeout=6.0,
                s3_client_budget=8.0,
                s4_runs=3,
                s5_sends=100_000,
                s5_sends_other=20_000,
                s5_gil_seconds=0.5,
                s5_gil_peers=("pycurl", "requests.Session"),
            )
        return cls(
            quick=False,
            s1_rounds=15,
            s1_round_seconds=0.25,
            s2_threads=(1, 2, 4, 8, 16),
            s2_rounds=5,
            s2_latency_sends=20,
            s2_round_seconds=0.5,
            s2_peers=True,
            s3_rounds=7,
            s3_round_timeout=90.0,
            s3_client_budget=60.0,
            s4_runs=9,
            s5_sends=100_000,
            s5_sends_other=100_000,
            s5_gil_seconds=3.0,
            s5_gil_peers=("pycurl", "requests.Session", "httpx.Client", "urllib3.PoolManager"),
        )


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def shuffled(names: list[str], rng: random.Random) -> list[str]:
    """A fresh order each round, so slow drift of the machine spreads over every client."""
    out = list(names)
    rng.shuffle(out)
    return out

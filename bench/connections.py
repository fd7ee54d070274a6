"""1,000 concurrent connections on a cached route: p50/p99/max and every error, per variant.

    python -m bench.connections            # 2 rounds x 3 variants x 20 s (about 4 minutes)
    python -m bench.connections --quick    # 1 round of 5 s each (under a minute after seeding)

Starts its own redis-server, a seeded PostgreSQL database ``bench_<random>`` on ``--postgres``
(dropped at the end) and the service (``python app.py``, 2 workers, Redis cache), then runs
``wrk -c1000 -t2 --latency`` on the feed's first page (a cache hit) once per variant, in
alternating order per round: the service's defaults (``BACKLOG`` 2048, every waiting connection
accepted per loop pass), ``ACCEPT_ALL=false`` (libuv's one accept per pass, as a bare Sanic
app) and ``BACKLOG=100`` (Sanic's own default).  For each run it records the listening
socket's backlog as the kernel reports it (``ss``), the kernel's listen-queue overflow counters
(``/proc/net/netstat``, machine-wide), the open-file limits the server and wrk got, and
``net.core.somaxconn`` (a backlog above it is capped by the kernel).  Writes
``bench/results/connections.md`` / ``.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import machine
from bench.client import Client
from bench.database import BenchDatabase
from bench.procs import RedisServer, wait_for_quiet
from bench.resources import (RESULTS, AcceptQueueSampler, child_nofile,
                             connections_per_process, counter_delta, kernel_settings,
                             listen_backlog, listen_counters, mib, nofile_limits, raise_nofile,
                             service, write_results)
from bench.workloads import HIT_PATH
from bench.wrk import ensure_wrk, run_wrk

log = logging.getLogger("bench.connections")

P99_TARGET_MS = 1000.0
WRK_TIMEOUT_S = 10
"""wrk's per-request timeout: long enough to see SYN retries (1, 3, 7 s) as latency."""


@dataclass(frozen=True)
class Plan:
    users: int
    posts: int
    rounds: int
    duration: float

    @classmethod
    def full(cls) -> Plan:
        return cls(users=2_000, posts=20_000, rounds=2, duration=20)

    @classmethod
    def quick(cls) -> Plan:
        return cls(users=500, posts=5_000, rounds=1, duration=5)


VARIANT_ENV = ("BACKLOG", "ACCEPT_ALL")
"""The settings a variant may set; unset (the service's defaults) unless it names them."""


def variant_env(variant: str) -> dict[str, str]:
    """``default`` leaves every setting unset; a number sets BACKLOG; ``NAME=value`` sets one.

    >>> variant_env("100"), variant_env("ACCEPT_ALL=false")
    ({'BACKLOG': '100'}, {'ACCEPT_ALL': 'false'})
    """
    if variant == "default":
        return {}
    name, sep, value = variant.partition("=")
    if not sep:
        return {"BACKLOG": str(int(variant))}
    if name not in VARIANT_ENV:
        raise ValueError(f"unknown variant setting {name!r} (one of {', '.join(VARIANT_ENV)})")
    return {name: value}


def met(run: dict[str, Any]) -> bool:
    """The target: p99 within 1 s and not a single error of any kind."""
    return run["latency_ms"]["p99"] <= P99_TARGET_MS and run["error_total"] == 0


def measure(db: BenchDatabase, redis_url: str, *, backlog: str, round_no: int, plan: Plan,
            args: argparse.Namespace, hits: Path, log_dir: Path) -> dict[str, Any]:
    server = service(f"connections-{backlog}-r{round_no}", workers=args.workers,
                     database_url=db.url, redis_url=redis_url, log_dir=log_dir,
                     env=variant_env(backlog), drop_env=VARIANT_ENV)
    with server:
        with Client(server.base_url) as client:
            for _ in range(3):
                warm = client.get(HIT_PATH)
        effective = listen_backlog(server.port)
        busy = wait_for_quiet(max_wait=10.0)
        counters = listen_counters()
        split: dict[int, int] = {}
        # Half-way through the run: how the 1,000 connections are spread over the workers.
        timer = threading.Timer(plan.duration / 2, lambda: split.update(
            connections_per_process(server.port)))
        timer.start()
        started = time.monotonic()
        with AcceptQueueSampler(server.port) as accept_queue:
            result = run_wrk(server.base_url, "paths", duration=plan.duration,
                             threads=args.threads, connections=args.connections,
                             timeout_s=WRK_TIMEOUT_S, env={"BENCH_PATHS": str(hits)},
                             extra_args=("--latency",), preexec_fn=raise_nofile())
        overflow = counter_delta(counters, listen_counters())
        timer.cancel()
        workers = sorted((n for pid, n in split.items() if pid in server.pids()), reverse=True)
        run = {"backlog_env": backlog, "round": round_no, "effective_backlog": effective,
               "warm": f"{warm.status} X-Cache={warm.x_cache or '-'}",
               "cpu_busy_before": round(busy, 2), "kernel_counters": overflow,
               "server_rss_mib": mib(server.rss()), "server_fds": server.fds(),
               "connections_per_worker": workers,
               "accept_queue": accept_queue.summary(started),
               **result.as_dict()}
    run["met"] = met(run)
    lat = run["latency_ms"]
    log.info("%s round %d: backlog %s, %.0f req/s, p50 %.1f ms p99 %.1f ms max %.1f ms, "
             "errors %s non-2xx %d, kernel %s, connections per worker %s", backlog, round_no,
             effective, run["rps"], lat["p50"], lat["p99"], lat["max"], run["errors"],
             run["non_2xx"], overflow, workers)
    return run


def _row(run: dict[str, Any]) -> str:
    lat, err = run["latency_ms"], run["errors"]
    counters = run["kernel_counters"]
    hit = run["hit_rate"]
    return (f"| {run['backlog_env']} | {run['effective_backlog']} | {run['round']} | "
            f"{run['rps']:,.0f} | {lat['p50']:.1f} | {lat['p99']:.1f} | {lat['max']:.1f} | "
            f"{err['connect']} | {err['read']} | {err['write']} | {err['timeout']} | "
            f"{run['non_2xx']} | {'' if hit is None else f'{100 * hit:.1f}%'} | "
            f"{counters.get('ListenOverflows', '')} | {counters.get('TCPSynRetrans', '')} | "
            f"{counters.get('TCPTimeouts', '')} | {counters.get('SoftnetDrops', '')} | "
            f"{' / '.join(map(str, run.get('connections_per_worker') or [])) or '-'} | "
            f"{_queue(run.get('accept_queue'))} | "
            f"{run.get('cpu_busy_before', '')} | {'yes' if run['met'] else '**no**'} |")


def _queue(summary: dict[str, Any] | None) -> str:
    if not summary:
        return "-"
    return f"max {summary['max']}, last at {summary['last_nonempty_s']:.1f} s"


def markdown(runs: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# 1,000 concurrent connections", "",
        f"{meta['started']}, `{meta['command']}`, commit `{meta['machine']['commit']}`; "
        f"{meta['seed']}.", "",
        f"Service: `python app.py`, {meta['workers']} workers, Redis cache (the bench's own "
        f"redis-server); load: `wrk -t{meta['threads']} -c{meta['connections']} "
        f"-d{meta['duration']:.0f}s --timeout {WRK_TIMEOUT_S}s --latency` on `{HIT_PATH}` (a "
        "cache hit after warming); percentiles from wrk's histogram.  Target: p99 <= 1 s and "
        "zero errors (connect, read, write, timeout, non-2xx).", "",
        "System: " + ", ".join(f"`{k}` = {v}" for k, v in meta["kernel"].items())
        + f"; open files: bench {meta['nofile']['bench']}, server and wrk raised to "
        f"{meta['nofile']['children']} (`resource.setrlimit` in their `preexec_fn`).  A "
        "backlog above `net.core.somaxconn` is capped by the kernel; \"backlog (ss)\" is what "
        "the listening socket got.", "",
        "| variant | backlog (ss) | round | req/s | p50 ms | p99 ms | max ms | connect "
        "| read | write | timeout | non-2xx | hit rate | ListenOverflows | TCPSynRetrans | "
        "TCPTimeouts | softnet drops | connections per worker | accept queue | CPU busy "
        "before | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_row(run) for run in runs]
    lines += ["", "Kernel counters over the run, machine-wide (other processes on the machine may "
              "add to them): ListenOverflows, connections refused because the accept queue was "
              "full; TCPSynRetrans, SYNs sent again after no answer (clients retry after 1, 3, "
              "7 s); TCPTimeouts, retransmission timeouts of any kind; softnet drops, packets "
              "dropped before TCP because a CPU's input backlog (`netdev_max_backlog`) was "
              "full.  Connections per worker: established connections each worker held "
              "half-way through the run (`ss -tnp`).  Accept queue: the largest number of "
              "connections the kernel had established but the server had not yet accepted "
              "(`ss -ltn` Recv-Q, sampled every 0.2 s), and the last second of the run it was "
              "not empty.  CPU busy before: the share of "
              "both cores other work used just before the run (the machine is shared; the bench "
              "waits up to 10 s for it to fall below 35%)."]
    lines += [f"- {note}" for note in meta["notes"]]
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.connections", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one round of 5 s per variant")
    parser.add_argument("--postgres", default=os.environ.get(
        "BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432"),
        help="PostgreSQL server to create the bench database on (default %(default)s)")
    parser.add_argument("--database", default=None, help="reuse this seeded bench_* database")
    parser.add_argument("--backlogs", "--variants", nargs="+",
                        default=["default", "ACCEPT_ALL=false", "100"],
                        help="service settings to compare: 'default' (none set), a BACKLOG "
                             "number, or ACCEPT_ALL=false")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--duration", type=float, default=None, help="seconds per wrk run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="connections", help="results file name")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    plan = Plan.quick() if args.quick else Plan.full()
    plan = Plan(plan.users, plan.posts, args.rounds or plan.rounds,
                args.duration or plan.duration)
    ensure_wrk()
    started = datetime.now(UTC)
    raw_dir = args.out / "raw" / f"connections-{started:%Y%m%dT%H%M%S}"
    log_dir = raw_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    hits = raw_dir / "hits.txt"
    hits.write_text(HIT_PATH + "\n")
    db = (BenchDatabase(args.postgres, args.database) if args.database
          else BenchDatabase.create(args.postgres))
    runs: list[dict[str, Any]] = []
    notes: list[str] = []
    described = machine.describe(None, db.server_version())  # the commit measured, up front
    try:
        if args.database:
            seed = f"database {args.database} (existing)"
        else:
            seconds = db.seed(users=plan.users, posts=plan.posts, jobs=200, follows=2_000)
            seed = f"PostgreSQL seeded with {plan.users:,} users, {plan.posts:,} posts in " \
                   f"{seconds:.0f} s"
        with RedisServer("redis-connections", log_dir=log_dir) as redis_server:
            for round_no in range(1, plan.rounds + 1):
                order = args.backlogs if round_no % 2 else list(reversed(args.backlogs))
                for backlog in order:
                    runs.append(measure(db, redis_server.url, backlog=backlog,
                                        round_no=round_no, plan=plan, args=args, hits=hits,
                                        log_dir=log_dir))
        notes += backlog_notes(runs)
        meta = {"started": f"{started:%Y-%m-%d %H:%M} UTC",
                "command": " ".join(["python -m bench.connections",
                                     *(sys.argv[1:] if argv is None else argv)]),
                "seed": seed, "workers": args.workers, "threads": args.threads,
                "connections": args.connections, "duration": plan.duration,
                "kernel": kernel_settings(),
                "nofile": {"bench": "%d/%d" % nofile_limits(),
                           "children": child_nofile(raise_nofile())},
                "notes": notes, "machine": described}
        write_results(args.name, markdown(runs, meta), {"meta": meta, "runs": runs}, args.out)
    finally:
        if not args.database:
            db.drop()
    return 0 if runs and all(r["met"] for r in runs if r["backlog_env"] == "default") else 1


def backlog_notes(runs: list[dict[str, Any]]) -> list[str]:
    """Say so when the default and BACKLOG=100 runs got the same listen queue."""
    seen: dict[str, set[Any]] = {}
    for run in runs:
        seen.setdefault(run["backlog_env"], set()).add(run["effective_backlog"])
    if "default" in seen and "100" in seen and seen["default"] == seen["100"]:
        return [f"The default and BACKLOG=100 runs listened with the same backlog "
                f"({sorted(seen['default'], key=str)}): this commit does not read BACKLOG."]
    return []


if __name__ == "__main__":
    sys.exit(main())

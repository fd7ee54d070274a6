"""A burst of 200 concurrent logins while hits are served: RSS, hit latency, login outcomes.

    python -m bench.login_burst            # 4 variants x 1 and 2 workers (about 10 minutes)
    python -m bench.login_burst --quick    # the defaults, 1 worker, shorter windows (< 1 min)

Starts a seeded PostgreSQL database ``bench_<random>`` on ``--postgres`` (dropped at the end), a
fresh redis-server and service (``python app.py``, Redis cache) per configuration: the
service's defaults, the hash gate only (attempt limits lifted), unguarded (the behaviour before
the guards) and a control burst of cache hits instead of logins (``VARIANTS``).  wrk requests
the feed's first page (a cache hit) throughout, paced to ``--rate`` requests/s over 16
connections (``lua/timed.lua`` logs each response's send time and latency).  After a quiet
baseline window, 200 connections are opened and then all send ``POST /api/auth/login`` for one
seeded user at once (every
``--wrong-every``-th with a wrong password).  Reported side by side from that one wrk run: the
hit route's p50/p99/max before, during (first login sent to last answered) and after the burst;
the service's RSS (all its processes, sampled from /proc every 100 ms) before vs its peak during
the burst; and the logins' outcomes (200 / 401 / 429, whether each 429 carries Retry-After).
Writes ``bench/results/login_burst.md`` / ``.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import machine
from bench.client import Client
from bench.database import BenchDatabase
from bench.login_burst_report import CONTROL, markdown
from bench.procs import RedisServer, Server, wait_for_quiet
from bench.resources import RESULTS, RssSampler, mib, percentile, service, write_results
from bench.workloads import HIT_PATH
from bench.wrk import WrkProcess
from models.seed import SEED_PASSWORD
from settings import Settings

log = logging.getLogger("bench.login_burst")

LOAD_THREADS = 16  # one connection per wrk thread: lua/timed.lua pairs each response with its send
SETTING_WORDS = ("hash", "login", "auth", "attempt", "rate")
"""Settings whose names contain one of these are recorded with each configuration."""
UNLIMITED_RATE = "100000/minute"
VARIANTS: dict[str, dict[str, str]] = {
    # The service as configured by default: hash gate and attempt limits.
    "defaults": {},
    # Only the hash gate: the attempt limits lifted, so every login reaches the gate.
    "gate-only": {"LOGIN_RATE_PER_CLIENT": UNLIMITED_RATE,
                  "LOGIN_RATE_PER_USERNAME": UNLIMITED_RATE},
    # The behaviour before the guards: asyncio.to_thread's default pool ran min(32, cores + 4)
    # = 6 hashes at once on 2 cores, every other login queued without bound.
    "unguarded": {"LOGIN_RATE_PER_CLIENT": UNLIMITED_RATE,
                  "LOGIN_RATE_PER_USERNAME": UNLIMITED_RATE,
                  "AUTH_MAX_CONCURRENT_HASHES": "6", "AUTH_MAX_WAITING_HASHES": "100000"},
}
"""Service environments compared in one run (``--variants``)."""
VARIANTS[CONTROL] = {}
"""Not logins: the same burst of 200 fresh connections each sending ``GET /api/posts`` (a hit),
to tell what any 200 simultaneous new clients cost the hit route from what logins cost."""


@dataclass(frozen=True)
class Plan:
    workers: tuple[int, ...]
    variants: tuple[str, ...]
    baseline_s: float
    after_s: float

    @classmethod
    def full(cls) -> Plan:
        return cls(workers=(1, 2), variants=("defaults", "gate-only", "unguarded", CONTROL),
                   baseline_s=15, after_s=8)

    @classmethod
    def quick(cls) -> Plan:
        return cls(workers=(1,), variants=("defaults",), baseline_s=6, after_s=4)


# --- pure logic (unit-tested) --------------------------------------------------------------

def parse_timed(lines: Iterable[str]) -> list[tuple[int, int, int]]:
    """``lua/timed.lua`` lines ``t_send_us latency_us status`` as tuples (bad lines skipped)."""
    out: list[tuple[int, int, int]] = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            out.append((int(parts[0]), int(parts[1]), int(parts[2])))
    return out


def window_stats(samples: Iterable[tuple[int, int, int]], start_us: int,
                 end_us: int) -> dict[str, Any]:
    """Latency percentiles (ms) and non-2xx of the requests *sent* in ``[start_us, end_us)``."""
    latencies: list[float] = []
    non_2xx = 0
    for t_send, latency, status in samples:
        if start_us <= t_send < end_us:
            latencies.append(latency / 1000)
            non_2xx += not 200 <= status < 300
    seconds = max(1e-9, (end_us - start_us) / 1e6)
    return {"requests": len(latencies), "rps": round(len(latencies) / seconds, 1),
            "p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
            "max": max(latencies, default=0.0), "non_2xx": non_2xx,
            "seconds": round(seconds, 2)}


def parse_response_head(raw: bytes) -> tuple[int, dict[str, str]]:
    """Status code and lower-cased headers of a raw HTTP/1.1 response (0 when unreadable)."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return 0, {}
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


@dataclass
class Login:
    """One login of the burst: what was sent and what came back."""

    correct: bool
    status: int = 0
    retry_after: str | None = None
    error: str = ""
    connect_s: float = 0.0
    sent: float = 0.0
    answered: float = 0.0

    @property
    def seconds(self) -> float:
        return self.answered - self.sent if self.answered else 0.0


def summarise_logins(logins: list[Login]) -> dict[str, Any]:
    """Counts by status (and by whether the password was right), Retry-After on 429s."""
    by_status = Counter(str(x.status) if x.status else f"error: {x.error}" for x in logins)
    correct = Counter(str(x.status or "error") for x in logins if x.correct)
    wrong = Counter(str(x.status or "error") for x in logins if not x.correct)
    limited = [x for x in logins if x.status == 429]
    retry_values = sorted({x.retry_after for x in limited if x.retry_after is not None})
    times = [x.seconds * 1000 for x in logins if x.status]
    expected = {True: (200, 429), False: (401, 429)}
    unexpected = sum(1 for x in logins if x.status and x.status not in expected[x.correct])
    return {"sent": len(logins), "by_status": dict(sorted(by_status.items())),
            "correct_password": dict(sorted(correct.items())),
            "wrong_password": dict(sorted(wrong.items())),
            "status_429": len(limited),
            "status_429_with_retry_after": sum(1 for x in limited if x.retry_after is not None),
            "retry_after_values": retry_values[:20],
            "unexpected": unexpected,
            "latency_ms": {"p50": percentile(times, 50), "p99": percentile(times, 99),
                           "max": max(times, default=0.0)},
            "connect_max_s": round(max((x.connect_s for x in logins), default=0.0), 3)}


def relevant_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The service's settings about hashing, logins and rate limits, as it will read them."""
    settings = Settings.from_env(env)
    return {k: v for k, v in asdict(settings).items()
            if any(word in k for word in SETTING_WORDS) and "secret" not in k}


# --- the burst ------------------------------------------------------------------------------

async def _one(port: int, body: bytes | None, login: Login, go: asyncio.Event,
               connected: list[int], timeout: float) -> None:
    if body is None:  # the control: a cache hit instead of a login
        request = (f"GET {HIT_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                   "Connection: close\r\n\r\n").encode()
    else:
        request = (f"POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                   "Connection: close\r\n\r\n").encode() + body
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port),
                                                timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        login.error = type(exc).__name__
        connected.append(0)
        return
    login.connect_s = time.monotonic() - started
    connected.append(1)
    try:
        await go.wait()
        login.sent = time.monotonic()
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
        login.answered = time.monotonic()
        login.status, headers = parse_response_head(raw)
        login.retry_after = headers.get("retry-after")
        if not login.status:
            login.error = "no response"
    except (OSError, asyncio.TimeoutError) as exc:
        login.error = type(exc).__name__
    finally:
        writer.close()


async def _burst(port: int, username: str, count: int, wrong_every: int,
                 timeout: float, control: bool) -> list[Login]:
    logins: list[Login] = []
    go = asyncio.Event()
    connected: list[int] = []
    tasks = []
    for i in range(count):
        correct = not (wrong_every and (i + 1) % wrong_every == 0)
        body = json.dumps({"username": username,
                           "password": SEED_PASSWORD if correct else "wrong-password"}).encode()
        login = Login(correct)
        logins.append(login)
        tasks.append(asyncio.create_task(_one(port, None if control else body, login, go,
                                              connected, timeout)))
    while len(connected) < count:  # every connection open (or failed) before any login is sent
        await asyncio.sleep(0.01)
    go.set()
    await asyncio.gather(*tasks)
    return logins


def burst(port: int, username: str, *, count: int, wrong_every: int, timeout: float = 60.0,
          control: bool = False) -> list[Login]:
    """Open ``count`` connections, then send a login on each at the same moment (with
    ``control``, a GET of the cached feed page instead)."""
    return asyncio.run(_burst(port, username, count, wrong_every, timeout, control))


# --- one configuration ------------------------------------------------------------------------

def _timed_samples(log_dir: Path) -> list[tuple[int, int, int]]:
    samples: list[tuple[int, int, int]] = []
    for path in sorted(log_dir.glob("timed-*.log")):
        with path.open() as lines:
            samples += parse_timed(lines)
    return samples


def _user(db: BenchDatabase, offset: int) -> str:
    return str(db.fetch("SELECT username FROM users ORDER BY id OFFSET $1 LIMIT 1",
                        offset)[0]["username"])


def measure(db: BenchDatabase, *, workers: int, variant: str, plan: Plan,
            args: argparse.Namespace, raw_dir: Path, log_dir: Path) -> dict[str, Any]:
    env = {**VARIANTS[variant], **dict(kv.split("=", 1) for kv in args.env)}
    hits = raw_dir / "hits.txt"
    hits.write_text(HIT_PATH + "\n")
    slug = variant.replace(" ", "-")
    timed_dir = raw_dir / f"timed-{slug}-{workers}w"
    timed_dir.mkdir(parents=True, exist_ok=True)
    for old in timed_dir.glob("timed-*.log"):
        old.unlink()
    user, warm_user = _user(db, 0), _user(db, 1)
    with RedisServer(f"redis-login-{slug}-{workers}w", log_dir=log_dir) as redis_server, \
            service(f"login-burst-{slug}-{workers}w", workers=workers, database_url=db.url,
                    redis_url=redis_server.url, log_dir=log_dir, env=env,
                    drop_env=VARIANTS["unguarded"]) as server:
        settings = relevant_settings(server.env)
        warm = _warm(server, warm_user)
        wait_for_quiet(max_wait=10.0)
        delay_ms = max(0, round(1000 * LOAD_THREADS / args.rate)) if args.rate else 0
        with RssSampler(server) as rss:
            load = WrkProcess(server.base_url, "timed", threads=LOAD_THREADS,
                              connections=LOAD_THREADS,
                              duration=plan.baseline_s + plan.after_s + 120,
                              env={"BENCH_PATHS": str(hits), "BENCH_LOG_DIR": str(timed_dir),
                                   "BENCH_DELAY_MS": str(delay_ms)})
            try:
                t_load = time.monotonic()
                time.sleep(plan.baseline_s)
                t_burst = time.monotonic()
                logins = burst(server.port, user, count=args.logins,
                               wrong_every=0 if variant == CONTROL else args.wrong_every,
                               control=variant == CONTROL)
                t_burst_end = max([x.answered for x in logins if x.answered] or [t_burst])
                time.sleep(plan.after_s)
                t_end = time.monotonic()
            finally:
                wrk = load.stop()
        after_rss = server.rss()
    samples = _timed_samples(timed_dir)
    first_sent = min([x.sent for x in logins if x.sent] or [t_burst])
    us = 1_000_000

    def at(t: float) -> int:
        return int(t * us)

    windows = {
        "before": window_stats(samples, at(t_load + 1), at(t_burst)),
        "during": window_stats(samples, at(first_sent), at(t_burst_end)),
        # The same length for every variant: "during" of the control is a few ms long.
        "first_second": window_stats(samples, at(first_sent), at(first_sent + 1)),
        "after": window_stats(samples, at(t_burst_end + 1), at(t_end)),
    }
    rss_before = rss.mean(t_load + 1, t_burst)
    rss_peak = rss.peak(t_burst, t_burst_end + 1)
    result = {
        "variant": variant, "workers": workers, "user": user, "settings": settings, "env": env,
        "warm": warm,
        "rate_target": args.rate, "delay_ms": delay_ms, "wrk": wrk.as_dict(),
        "windows": windows,
        "p99_ratio": round(windows["during"]["p99"] / windows["before"]["p99"], 2)
        if windows["before"]["p99"] else None,
        "burst_seconds": round(t_burst_end - first_sent, 2),
        "rss_mib": {"before_mean": mib(rss_before), "before_peak": mib(rss.peak(t_load, t_burst)),
                    "peak_during": mib(rss_peak), "peak_minus_before": mib(rss_peak - rss_before),
                    "after_stop_load": mib(after_rss)},
        "logins": summarise_logins(logins),
    }
    log.info("%s %dw: burst %.1f s, logins %s; hit p99 before %.1f ms during %.1f ms after "
             "%.1f ms; RSS %.0f -> peak %.0f MiB", variant, workers, result["burst_seconds"],
             result["logins"]["by_status"], windows["before"]["p99"], windows["during"]["p99"],
             windows["after"]["p99"], mib(rss_before), mib(rss_peak))
    return result


def _warm(server: Server, username: str) -> str:
    """Warm the hit route and log in once as another user (argon2's first use, not timed)."""
    with Client(server.base_url) as client:
        for _ in range(3):
            hit = client.get(HIT_PATH)
        login = client.request("POST", "/api/auth/login",
                               body={"username": username, "password": SEED_PASSWORD})
    return f"GET {HIT_PATH}: {hit.status} X-Cache={hit.x_cache or '-'}; warm login {login.status}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.login_burst", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 worker, shorter windows")
    parser.add_argument("--postgres", default=os.environ.get(
        "BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432"),
        help="PostgreSQL server to create the bench database on (default %(default)s)")
    parser.add_argument("--workers", type=int, nargs="+", default=None)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None,
                        help="service environments to compare (default: all; --quick: defaults)")
    parser.add_argument("--logins", type=int, default=200, help="concurrent logins in the burst")
    parser.add_argument("--wrong-every", type=int, default=10,
                        help="every Nth login has a wrong password (0: none)")
    parser.add_argument("--rate", type=int, default=1500,
                        help="hit requests/s wrk aims at (0: as fast as it can)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the service (repeatable)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="login_burst", help="results file name")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    plan = Plan.quick() if args.quick else Plan.full()
    plan = Plan(tuple(args.workers or plan.workers), tuple(args.variants or plan.variants),
                plan.baseline_s, plan.after_s)
    started = datetime.now(UTC)
    raw_dir = args.out / "raw" / f"login_burst-{started:%Y%m%dT%H%M%S}"
    log_dir = raw_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    db = BenchDatabase.create(args.postgres)
    described = machine.describe(None, db.server_version())  # the commit measured, up front
    try:
        seconds = db.seed(users=200, posts=2_000, jobs=50, follows=400)
        runs = [measure(db, workers=w, variant=v, plan=plan, args=args, raw_dir=raw_dir,
                        log_dir=log_dir) for w in plan.workers for v in plan.variants]
        notes: list[str] = []
        meta = {"started": f"{started:%Y-%m-%d %H:%M} UTC",
                "command": " ".join(["python -m bench.login_burst",
                                     *(sys.argv[1:] if argv is None else argv)]),
                "seed": f"PostgreSQL seeded with 200 users, 2,000 posts in {seconds:.0f} s",
                "rate": args.rate, "threads": LOAD_THREADS, "baseline_s": plan.baseline_s,
                "logins": args.logins,
                "wrong_every": args.wrong_every, "notes": notes,
                "machine": described}
        write_results(args.name, markdown(runs, meta), {"meta": meta, "runs": runs}, args.out)
    finally:
        db.drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

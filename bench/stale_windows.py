"""Stale windows: ``stale-while-revalidate`` across a real TTL, ``stale-if-error`` with
PostgreSQL really stopped.

    python -m bench.stale_windows            # 1 then 2 workers (about 4 minutes)
    python -m bench.stale_windows --quick    # 2 workers, small data (under 2 minutes)

Everything it uses is its own: a throwaway PostgreSQL cluster (``bench/pgcluster.py``) seeded
with ``models.seed``, and per worker count a redis-server and the service (``python app.py``,
default settings: Redis with the hot tier, ``DATABASE_RETRY_SECONDS=3``). The feed's TTL
(``cache_rules.FEED_TTL``, 30 s, the shortest of the service's read routes) is waited out, not
shortened. One run per worker count:

1. **stale-while-revalidate**: the feed's first pages and a few posts are stored at once, then
   wrk (``lua/swr.lua``, paced) reads them from then until ``--after`` seconds past the feed's
   TTL, logging each answer's send time, latency, ``X-Cache`` and URL. Each feed page's answers
   are split at its own expiry: p50/p99 before vs after (``STALE`` answers included), each
   key's first answer after it, and every ``SET`` Redis received (``MONITOR``) tells which
   worker process refreshed which key how often. The refresh lock is per process
   (``middleware/refresh.py``): with N workers a key is refreshed once by each worker that
   found it stale before the first refresh was stored, so "exactly one" is per process, and
   1..N in all.
2. **stale-if-error**: other authors' lists stored at the start (past both the TTL and the
   revalidate window when probed: ``fwd=stale``) and about 20 s later (within the revalidate
   window: ``STALE`` at once), and two posts (fresh); then a PATCH of the newest post clears
   the feed, the post and its author's list, the bodies of which were captured just before;
   then ``pg_ctl stop -m fast``. Each URL is then requested ``--rounds`` times: current routes
   must answer 200 with the body stored before (client errors: 0), invalidated ones anything
   but their pre-write body (invalidated entries served: 0). PostgreSQL is started again.

Writes ``bench/results/stale_windows.md`` / ``.json``; exits 1 when a target is not met.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from bench import machine
from bench.client import Client
from bench.database import BenchDatabase
from bench.pgcluster import Cluster
from bench.procs import RedisServer
from bench.resources import RESULTS, service, write_results
from bench.soak import login
from bench.stale_watch import SetWatcher, stats_delta, worker_stats
from bench.stale_windows_check import (Probe, outage_summary, read_logs, refresh_verdict,
                                       refreshes_per_key, split_at_expiry, targets)
from bench.stale_windows_report import markdown
from bench.wrk import WrkProcess
from cache_rules import FEED_TTL, MAX_STALE_WHILE_REVALIDATE, STALE_IF_ERROR
from middleware.keys import canonical_query, response_key
from settings import Settings

log = logging.getLogger("bench.stale_windows")

FEED_QUERY = ("author", "limit", "cursor")
SWR_WINDOW = min(FEED_TTL, MAX_STALE_WHILE_REVALIDATE)


@dataclass(frozen=True)
class Plan:
    users: int
    posts: int
    feed_pages: int
    load_posts: int
    lists: int
    """Author lists per outage group."""
    rate: int
    threads: int
    after_s: float
    rounds: int

    @classmethod
    def full(cls) -> Plan:
        return cls(users=2_000, posts=20_000, feed_pages=5, load_posts=5, lists=5, rate=400,
                   threads=8, after_s=25, rounds=4)

    @classmethod
    def quick(cls) -> Plan:
        return cls(users=300, posts=3_000, feed_pages=3, load_posts=3, lists=3, rate=200,
                   threads=4, after_s=20, rounds=2)


def cache_key(url: str, namespace: str) -> str:
    parts = urlsplit(url)
    allowed = FEED_QUERY if parts.path == "/api/posts" else ()
    return response_key(namespace, parts.path, canonical_query(parts.query, allowed))


class Run:
    """One worker count: its redis-server, its service, its measurements."""

    def __init__(self, plan: Plan, cluster: Cluster, db: BenchDatabase, workers: int,
                 raw_dir: Path, namespace: str) -> None:
        self.plan, self.cluster, self.db, self.workers = plan, cluster, db, workers
        self.raw_dir, self.namespace = raw_dir, namespace
        self.log_dir = raw_dir / "logs"

    def warm(self, url: str) -> bytes:
        """Store ``url``'s entry (a miss: Redis is new); its body and when it was stored."""
        started = time.monotonic()
        with Client(self.server.base_url) as client:
            reply = client.get(url)
        self.stored[url] = time.monotonic()
        if reply.status != 200 or reply.x_cache != "MISS":
            raise RuntimeError(f"warming {url}: {reply.status} {reply.x_cache} "
                               f"{reply.body[:200]!r}")
        self.miss_ms.append((self.stored[url] - started) * 1000)
        # Nothing changes the data before the bench's own write: these are the bodies any
        # later answer must equal (stale or not), or, once the write cleared them, must not.
        self.bodies[url] = reply.body
        return reply.body

    def urls(self) -> None:
        """The feed's first pages (stored now: their expiries start the run), the post to
        edit and its author, the posts and the other authors' lists to read."""
        plan = self.plan
        self.stored: dict[str, float] = {}
        self.bodies: dict[str, bytes] = {}
        self.miss_ms: list[float] = []
        self.feed = ["/api/posts?limit=20"]
        page = json.loads(self.warm(self.feed[0]))
        newest = page["items"][0]
        for _ in range(plan.feed_pages - 1):
            self.feed.append(f"/api/posts?limit=20&cursor={quote(page['next_cursor'])}")
            page = json.loads(self.warm(self.feed[-1]))
        with Client(self.server.base_url) as client:
            self.edited = newest["id"]
            self.author = newest["author"]["username"]
            self.token = login(client, self.author)
        ids = [r["id"] for r in self.db.fetch(
            "SELECT id FROM posts WHERE id <> $1 ORDER BY created_at DESC LIMIT $2",
            self.edited, plan.load_posts + 2)]
        self.load_posts = [f"/api/posts/{i}" for i in ids[:plan.load_posts]]
        self.fresh_posts = [f"/api/posts/{i}" for i in ids[plan.load_posts:]]
        names = [r["username"] for r in self.db.fetch(
            "SELECT u.username FROM users u WHERE u.username <> $1 AND EXISTS (SELECT 1 FROM "
            "posts p WHERE p.author_id = u.id) ORDER BY u.id LIMIT $2", self.author,
            2 * plan.lists)]
        self.lists_old = [f"/api/posts?author={quote(n)}" for n in names[:plan.lists]]
        self.lists_recent = [f"/api/posts?author={quote(n)}" for n in names[plan.lists:]]
        self.invalidated = [f"/api/posts/{self.edited}",
                            f"/api/posts?author={quote(self.author)}", *self.feed]

    def run(self) -> dict[str, Any]:
        with RedisServer(f"redis-{self.workers}w", log_dir=self.log_dir) as redis, \
                service(f"stale-{self.workers}w", workers=self.workers,
                        database_url=self.db.url, redis_url=redis.url,
                        log_dir=self.log_dir) as self.server:
            self.redis = redis
            self.urls()
            return {"workers": self.workers, **self.revalidate(), **self.outage()}

    # -- stale-while-revalidate ----------------------------------------------------------------

    def revalidate(self) -> dict[str, Any]:
        plan, load = self.plan, [*self.feed, *self.load_posts]
        for url in [*self.load_posts, *self.fresh_posts, *self.lists_old,
                    *self.invalidated[:2]]:
            self.warm(url)
        self.warmed_old = time.monotonic()
        expiry_us = {load.index(url) + 1: int((self.stored[url] + FEED_TTL) * 1e6)
                     for url in self.feed}
        stats_before = worker_stats(self.server.base_url, self.workers)
        paths = self.raw_dir / f"swr-{self.workers}w.paths"
        paths.write_text("\n".join(load) + "\n")
        wrk_dir = self.raw_dir / f"swr-{self.workers}w"
        wrk_dir.mkdir(parents=True, exist_ok=True)
        seconds = max(expiry_us.values()) / 1e6 + plan.after_s - time.monotonic()
        delay_ms = round(1000 * plan.threads / plan.rate)
        with SetWatcher(self.redis.port, f"{self.namespace}:r:") as watch:
            wrk = WrkProcess(self.server.base_url, "swr", duration=seconds, threads=plan.threads,
                             connections=plan.threads,
                             env={"BENCH_PATHS": str(paths), "BENCH_LOG_DIR": str(wrk_dir),
                                  "BENCH_DELAY_MS": str(delay_ms)})
            # The second outage group: within the revalidate window when PostgreSQL is down.
            time.sleep(max(0.0, self.warmed_old + 20 - time.monotonic()))
            for url in self.lists_recent:
                self.warm(url)
            result = wrk.stop(interrupt=False)
        stats_after = worker_stats(self.server.base_url, self.workers)
        swr = split_at_expiry(read_logs(wrk_dir), expiry_us)
        per_key = refreshes_per_key(watch.sets, {cache_key(u, self.namespace): u
                                                 for u in self.feed})
        others = sum(1 for _, _, key in watch.sets
                     if key in {cache_key(u, self.namespace) for u in self.load_posts})
        log.info("%d workers: p99 %.2f ms before the TTL, %.2f ms after (%s); refreshes %s",
                 self.workers, swr["before"]["p99_ms"], swr["after"]["p99_ms"],
                 swr["after"]["x_cache"], per_key)
        stats = stats_delta(stats_before, stats_after)
        return {"swr": swr, "wrk": result.as_dict(), "rate": plan.rate, "threads": plan.threads,
                "seconds": round(seconds, 1),
                "miss_ms": {"p50": round(sorted(self.miss_ms)[len(self.miss_ms) // 2], 2),
                            "max": round(max(self.miss_ms), 2)},
                "refreshes_per_key": per_key,
                "refresh": refresh_verdict(per_key, self.workers, stats),
                "post_stores_during_load": others, "worker_stats": stats}

    # -- stale-if-error ------------------------------------------------------------------------

    def outage(self) -> dict[str, Any]:
        plan = self.plan
        groups = {"current (past the revalidate window)": self.lists_old,
                  "current (within the revalidate window)": self.lists_recent,
                  "current (fresh)": self.fresh_posts, "invalidated": self.invalidated}
        stats_before = worker_stats(self.server.base_url, self.workers)
        with Client(self.server.base_url) as client:
            reply = client.request("PATCH", f"/api/posts/{self.edited}",
                                   headers={"Authorization": f"Bearer {self.token}"},
                                   body={"content": f"edited by the stale-windows bench "
                                                    f"({self.workers} workers)"})
        if reply.status != 200:
            raise RuntimeError(f"PATCH: {reply.status} {reply.body[:200]!r}")
        stopped = time.monotonic()
        self.cluster.stop_server()
        stop_s = time.monotonic() - stopped
        # Past the TTL and the revalidate window: only stale-if-error may answer them.
        time.sleep(max(0.0, self.warmed_old + FEED_TTL + SWR_WINDOW + 1 - time.monotonic()))
        probes: list[Probe] = []
        started = time.monotonic()
        threads = [threading.Thread(target=self._probe, args=(group, url, self.bodies[url], probes))
                   for group, urls in groups.items() for url in urls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(plan.rounds * 60)
        probing_s = time.monotonic() - started
        self.cluster.start()
        after = self._wait_healthy()
        stats_after = worker_stats(self.server.base_url, self.workers)
        return {"outage": outage_summary(probes),
                "outage_probes": [asdict(p) | {"kind": p.kind} for p in probes],
                "outage_timing": {"pg_stop_s": round(stop_s, 2),
                                  "probes_from_stop_s": round(started - stopped, 1),
                                  "probing_s": round(probing_s, 1)},
                "after_restart": after,
                "outage_worker_stats": stats_delta(stats_before, stats_after)}

    def _probe(self, group: str, url: str, before: bytes, probes: list[Probe]) -> None:
        for _ in range(self.plan.rounds):
            sent = time.monotonic()
            try:
                with Client(self.server.base_url, timeout=30) as client:
                    reply = client.get(url)
                probes.append(Probe(group, url, reply.status, reply.x_cache,
                                    reply.headers.get("cache-status", ""),
                                    time.monotonic() - sent, reply.body == before))
            except Exception as exc:  # noqa: BLE001 - a transport failure is a client error
                probes.append(Probe(group, url, 0, "", "", time.monotonic() - sent, False,
                                    type(exc).__name__))

    def _wait_healthy(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with Client(self.server.base_url) as client:
            while time.monotonic() < deadline:
                reply = client.get(f"/api/posts/{self.edited}")
                if reply.status == 200:
                    return {"edited_post_status": 200,
                            "shows_the_edit": b"stale-windows bench" in reply.body,
                            "x_cache": reply.x_cache}
                time.sleep(0.5)
        return {"edited_post_status": reply.status, "shows_the_edit": False}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.stale_windows", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small data, 2 workers only")
    parser.add_argument("--workers", default=None,
                        help="comma-separated worker counts (default 1,2; 2 with --quick)")
    parser.add_argument("--after", type=float, default=None,
                        help="seconds of load past the feed's TTL (default 25; 20 with --quick)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="stale_windows", help="results file name")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    plan = Plan.quick() if args.quick else Plan.full()
    if args.after is not None:
        plan = Plan(**{**asdict(plan), "after_s": args.after})
    workers = [int(w) for w in (args.workers or ("2" if args.quick else "1,2")).split(",")]
    started = datetime.now(UTC)
    raw_dir = args.out / "raw" / f"stale-windows-{started:%Y%m%dT%H%M%S}"
    (raw_dir / "logs").mkdir(parents=True, exist_ok=True)
    described = machine.describe(None, "")
    namespace = "rc"
    runs = []
    with Cluster(log_dir=raw_dir / "logs") as cluster:
        db = BenchDatabase.create(cluster.server_url)
        seconds = db.seed(users=plan.users, posts=plan.posts, jobs=plan.users // 10,
                          follows=plan.users * 2)
        seed = (f"a throwaway PostgreSQL {db.server_version()} cluster seeded with "
                f"{plan.users:,} users, {plan.posts:,} posts in {seconds:.0f} s")
        for count in workers:
            runs.append(Run(plan, cluster, db, count, raw_dir, namespace).run())
    all_targets = [t for r in runs
                   for t in targets(r["swr"], r["refresh"], r["outage"], r["workers"])]
    meta = {"started": f"{started:%Y-%m-%d %H:%M} UTC",
            "command": " ".join(["python -m bench.stale_windows",
                                 *(sys.argv[1:] if argv is None else argv)]),
            "plan": asdict(plan), "seed": seed, "feed_ttl": FEED_TTL,
            "stale_while_revalidate": SWR_WINDOW, "stale_if_error": STALE_IF_ERROR,
            "database_retry_seconds": float(os.environ.get(
                "DATABASE_RETRY_SECONDS", Settings.database_retry_seconds)),
            "raw_dir": str(raw_dir), "machine": described}
    payload = {"meta": meta, "targets": all_targets, "runs": runs}
    write_results(args.name, markdown(payload), payload, args.out)
    for target in all_targets:
        log.info("target %-60s %s (%s) %s", target["name"], target["measured"],
                 target["required"], "met" if target["met"] else "NOT met")
    return 0 if all(t["met"] for t in all_targets) else 1


if __name__ == "__main__":
    sys.exit(main())

"""A soak: minutes of mixed load with a Redis restart and a PostgreSQL restart in the middle.

    python -m bench.soak --minutes 10      # the documented run (about 12 minutes in all)
    python -m bench.soak --quick           # a smoke run: 45 s of load (under 2 minutes)

Everything it uses is its own: a throwaway PostgreSQL cluster (``bench/pgcluster.py``: initdb
in a temporary directory, a free loopback port) seeded with ``models.seed``, a redis-server, and
the service (``python app.py``, 2 workers, Redis cache).  wrk runs ``lua/soak.lua`` (the bench's
mixed workload, paced to ``--rate`` requests/s: Zipf reads of every cached route, every 20th
request a PATCH) in phases: warm-up, steady, Redis restart (stopped, then started empty on the
same port), PostgreSQL restart (``pg_ctl restart -m fast``), steady again.  Every read of a
written post is checked against the last write acknowledged before that read was sent
(``bench/stale.py``); every non-2xx response is logged with its send time, so 5xx inside a
restart window are told from 5xx outside it; probes (``/health``, ``/health/detailed``, an
uncached feed page, a PATCH) record exactly what the service answers during each restart.
The service's RSS and open file descriptors, PostgreSQL's connections to the database and
Redis's clients are taken after the warm-up (the baseline), around each restart, and after
the load stops and settles; each must end back at its baseline (``soak_check.Tolerance``).
Writes ``bench/results/soak.md`` / ``.json``; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from bench import machine, stale, workloads
from bench.client import Client
from bench.database import BenchDatabase
from bench.pgcluster import Cluster
from bench.procs import RedisServer
from bench.resources import RESULTS, service, write_results
from bench.soak_check import (Probe, Snapshot, Tolerance, compare, count_5xx, first_success_after,
                              outage, parse_errors, probe_answers, split_by_window)
from bench.soak_report import markdown
from bench.workloads import WRITE_EVERY, WritablePost
from bench.wrk import LUA_DIR, WrkProcess, run_wrk
from models.seed import SEED_PASSWORD

log = logging.getLogger("bench.soak")

LOAD_THREADS = 16  # one connection per wrk thread (the stale check needs it: see lua/mixed.lua)
PHASES = (("steady", 0.3), ("redis-restart", 0.2), ("postgres-restart", 0.2),
          ("steady-after", 0.3))
GRACE_S = 2.0
"""How long after recovery a restart window still runs (requests already in flight)."""


@dataclass(frozen=True)
class Plan:
    users: int
    posts: int
    scale: float
    sequence: int
    warmup_s: float
    settle_s: float
    event_at_s: float
    redis_down_s: float

    @classmethod
    def full(cls) -> Plan:
        return cls(users=2_000, posts=20_000, scale=0.25, sequence=100_000, warmup_s=30,
                   settle_s=20, event_at_s=10, redis_down_s=5)

    @classmethod
    def quick(cls) -> Plan:
        return cls(users=300, posts=3_000, scale=0.1, sequence=20_000, warmup_s=5,
                   settle_s=5, event_at_s=3, redis_down_s=3)


class Prober:
    """Threads that each send one kind of request over and over while a restart happens."""

    def __init__(self, base_url: str, requests: dict[str, Callable[[Client], Any]],
                 interval: float = 0.05) -> None:
        self.base_url = base_url
        self.requests = requests
        self.interval = interval
        self.probes: list[Probe] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(kind,), daemon=True,
                                          name=f"probe-{kind}") for kind in requests]

    def _run(self, kind: str) -> None:
        with Client(self.base_url, timeout=10) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    reply = self.requests[kind](client)
                    body = reply.body[:160].decode("utf-8", "replace")
                    probe = Probe(kind, sent, time.monotonic() - sent, reply.status,
                                  body if reply.status >= 300 else "")
                except OSError as exc:  # http.client errors are OSErrors or HTTPException
                    probe = Probe(kind, sent, time.monotonic() - sent, 0, "", type(exc).__name__)
                except Exception as exc:  # noqa: BLE001 - http.client.HTTPException and kin
                    probe = Probe(kind, sent, time.monotonic() - sent, 0, "", type(exc).__name__)
                self.probes.append(probe)
                self._stop.wait(self.interval)

    def __enter__(self) -> Prober:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


class Soak:
    """One soak run: owns the cluster, Redis, the service and the results as they come."""

    def __init__(self, args: argparse.Namespace, plan: Plan, raw_dir: Path) -> None:
        self.args = args
        self.plan = plan
        self.raw_dir = raw_dir
        self.log_dir = raw_dir / "logs"
        self.snapshots: list[Snapshot] = []
        self.phases: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.next_base = 0
        self.delay_ms = max(0, round(1000 * LOAD_THREADS / args.rate)) if args.rate else 0

    # -- measurements --------------------------------------------------------------------------

    def snapshot(self, label: str) -> Snapshot:
        pg: int | None = None
        clients: int | None = None
        try:
            pg = int(self.db.fetch("SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
                                   "AND pid <> pg_backend_pid()", self.db.name)[0][0])
        except Exception as exc:  # noqa: BLE001 - recorded as unreadable (None)
            log.warning("pg_stat_activity unreadable: %s", exc)
        try:
            conn = redis.Redis.from_url(self.redis.url, socket_timeout=5)
            try:
                clients = int(conn.info("clients")["connected_clients"]) - 1  # not ourselves
            finally:
                conn.close()
        except redis.RedisError as exc:
            log.warning("Redis INFO unreadable: %s", exc)
        snap = Snapshot(label, time.monotonic(), self.server.rss(), self.server.fds(),
                        len(self.server.pids()), pg, clients)
        self.snapshots.append(snap)
        log.info("snapshot %-28s RSS %.1f MiB, fds %d, processes %d, PostgreSQL %s, Redis %s",
                 label, snap.rss_mib, snap.fds, snap.processes, pg, clients)
        return snap

    # -- phases --------------------------------------------------------------------------------

    def _set_versions(self, client: Client, base: int) -> None:
        for item in self.items:
            for attempt in range(1, 6):
                try:
                    workloads.write_version(client, item, base)
                    break
                except (RuntimeError, OSError) as exc:
                    self.notes.append(f"setting post {item.id} to version {base} failed "
                                      f"(attempt {attempt}): {exc}")
                    time.sleep(1)
            else:
                raise RuntimeError(f"could not set post {item.id} to version {base}")

    def run_phase(self, name: str, seconds: float,
                  event: Callable[[float], dict[str, Any]] | None = None) -> dict[str, Any]:
        self.next_base += 1_000_000
        base = self.next_base
        with Client(self.server.base_url) as client:
            self._set_versions(client, base)
        phase_dir = self.raw_dir / f"phase-{len(self.phases)}-{name}"
        phase_dir.mkdir(parents=True, exist_ok=True)
        env = {"BENCH_PATHS": str(self.files.mixed), "BENCH_LUA_DIR": str(LUA_DIR),
               "BENCH_ITEMS": str(self.files.items_file(self.items, base)),
               "BENCH_WRITE_EVERY": str(WRITE_EVERY), "BENCH_LOG_DIR": str(phase_dir),
               "BENCH_DELAY_MS": str(self.delay_ms)}
        started = time.monotonic()
        load = WrkProcess(self.server.base_url, "soak", duration=seconds, threads=LOAD_THREADS,
                          connections=LOAD_THREADS, env=env)
        info: dict[str, Any] = {}
        try:
            if event is not None:
                with Prober(self.server.base_url, self._probe_requests()) as prober:
                    time.sleep(max(0.0, started + self.plan.event_at_s - time.monotonic()))
                    info = event(started)
                    time.sleep(max(0.0, started + seconds + 0.5 - time.monotonic()))
                info = self._describe_event(info, prober.probes)
                self.events.append(info)
        finally:
            result = load.stop(interrupt=False)
        errors = []
        for path in sorted(phase_dir.glob("errors*.log")):
            with path.open() as lines:
                errors += parse_errors(lines)
        report = stale.check_dir(phase_dir, {i.id: base for i in self.items})
        phase = {"name": name, "seconds": round(seconds, 1), "started": started,
                 "wrk": result.as_dict(), "stale": report.as_dict(), "errors": errors,
                 "event": info.get("name")}
        self.phases.append(phase)
        counts = result.counts
        log.info("phase %-17s %7.0f req/s p99 %7.1f ms, 5xx %d, socket errors %d, hit rate %s, "
                 "writes %d, reads checked %d, stale %d", name, result.rps,
                 result.latency_ms["p99"], counts.get("s5xx", 0), result.socket_errors,
                 result.hit_rate, counts.get("writes", 0), report.reads_checked,
                 len(report.stale))
        return phase

    def _probe_requests(self) -> dict[str, Callable[[Client], Any]]:
        misses = iter(self.files.misses.read_text().split())
        headers = {"Authorization": f"Bearer {self.probe_post.token}"}
        counter = iter(range(10**9))
        return {
            "health": lambda c: c.get("/health"),
            "health-detailed": lambda c: c.get("/health/detailed"),
            "uncached-read": lambda c: c.get(next(misses)),
            "write": lambda c: c.request(
                "PATCH", f"/api/posts/{self.probe_post.id}", headers=headers,
                body={"content": f"probe write {next(counter)}"}),
        }

    def _describe_event(self, info: dict[str, Any], probes: list[Probe]) -> dict[str, Any]:
        start, done = info["start"], info["done"]
        recovered = max((t for t in (first_success_after(probes, kind, done) for kind in (
            "uncached-read", "write")) if t is not None), default=None)
        end = (recovered if recovered is not None else done) + GRACE_S
        info.update(window=(start, end), recovered_after_s=None if recovered is None
                    else round(recovered - start, 2),
                    answers=probe_answers(probes, start, end),
                    outage_s={kind: outage(probes, kind, start - 0.5)
                              for kind in ("health", "health-detailed", "uncached-read", "write")},
                    probes=len(probes))
        return info

    # -- events --------------------------------------------------------------------------------

    def restart_redis(self, phase_start: float) -> dict[str, Any]:
        self.snapshot("before Redis restart")
        start = time.monotonic()
        self.redis.stop()
        time.sleep(self.plan.redis_down_s)
        self.redis.start()
        done = time.monotonic()
        log.info("Redis stopped and started empty on port %d (down %.1f s)", self.redis.port,
                 done - start)
        return {"name": "redis restart", "start": start, "done": done,
                "action": f"redis-server stopped (SIGTERM), started again empty on the same "
                          f"port after {self.plan.redis_down_s:.0f} s",
                "down_s": round(done - start, 2)}

    def restart_postgres(self, phase_start: float) -> dict[str, Any]:
        self.snapshot("before PostgreSQL restart")
        start = time.monotonic()
        if self.args.pg_down_seconds:
            self.cluster.stop_server()
            time.sleep(self.args.pg_down_seconds)
            self.cluster.start()
            action = (f"pg_ctl stop -m fast, {self.args.pg_down_seconds:g} s down, "
                      "pg_ctl start")
        else:
            self.cluster.restart()
            action = "pg_ctl restart -m fast"
        done = time.monotonic()
        log.info("PostgreSQL: %s took %.2f s", action, done - start)
        return {"name": "postgres restart", "start": start, "done": done, "action": action,
                "down_s": round(done - start, 2)}

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> None:
        args, plan = self.args, self.plan
        total = args.minutes * 60
        with Cluster(log_dir=self.log_dir) as cluster:
            self.cluster = cluster
            self.db = BenchDatabase.create(cluster.server_url)
            seconds = self.db.seed(users=plan.users, posts=plan.posts, jobs=plan.users // 10,
                                   follows=plan.users * 2)
            self.seed = (f"a throwaway PostgreSQL {self.db.server_version()} cluster seeded with "
                         f"{plan.users:,} users, {plan.posts:,} posts in {seconds:.0f} s")
            self.files = workloads.build(self.db, self.raw_dir / "workloads",
                                         sequence_length=plan.sequence, scale=plan.scale)
            with RedisServer("redis-soak", log_dir=self.log_dir) as self.redis, \
                    service("soak", workers=args.workers, database_url=self.db.url,
                            redis_url=self.redis.url, log_dir=self.log_dir) as self.server:
                self._run_load(total)

    def _run_load(self, total: float) -> None:
        plan = self.plan
        with Client(self.server.base_url) as client:
            tokens: dict[str, str] = {}
            for item in self.files.items:
                if item.username not in tokens:
                    tokens[item.username] = login(client, item.username)
            self.items = [WritablePost(i.id, i.username, tokens[i.username])
                          for i in self.files.items]
            probe_row = self.db.fetch(
                "SELECT p.id, u.username FROM posts p JOIN users u ON u.id = p.author_id "
                "WHERE u.username <> ALL($1::text[]) ORDER BY p.id LIMIT 1",
                [i.username for i in self.items])[0]
            self.probe_post = WritablePost(probe_row["id"], probe_row["username"],
                                           login(client, probe_row["username"]))
        run_wrk(self.server.base_url, "paths", duration=300,
                env={"BENCH_PATHS": str(self.files.universe), "BENCH_ONCE": "1"})
        self.snapshot("after pre-warming")
        self.run_phase("warm-up", plan.warmup_s)
        time.sleep(plan.settle_s)
        self.baseline = self.snapshot("baseline (warm, idle)")
        events = {"redis-restart": self.restart_redis, "postgres-restart": self.restart_postgres}
        for name, share in PHASES:
            self.run_phase(name, total * share, events.get(name))
            self.snapshot(f"after {name}")
        time.sleep(plan.settle_s)
        self.final = self.snapshot("final (load stopped, settled)")

    def results(self) -> dict[str, Any]:
        checks = compare(self.baseline, self.final, Tolerance())
        windows = {e["name"]: tuple(e["window"]) for e in self.events}
        all_errors = [e for p in self.phases for e in p["errors"]]
        by_window = split_by_window(all_errors, windows)
        measured = [p for p in self.phases if p["name"] != "warm-up"]
        stale_reads = sum(p["stale"]["stale_reads"] for p in self.phases)
        checked = sum(p["stale"]["reads_checked"] for p in self.phases)
        socket_outside = sum(sum(v for k, v in p["wrk"]["errors"].items() if k != "status")
                             for p in measured if p["event"] is None)
        targets = [
            {"name": "stale reads (every phase)", "measured": f"{stale_reads} of {checked:,} "
             "checked reads", "required": "0", "met": stale_reads == 0},
            {"name": "5xx outside the restart windows",
             "measured": str(count_5xx(by_window["outside"])), "required": "0",
             "met": count_5xx(by_window["outside"]) == 0},
            *({"name": f"5xx inside the {name} window", "measured": str(count_5xx(by_window[name])),
               "required": "0 (the issue's target)", "met": count_5xx(by_window[name]) == 0}
              for name in windows),
            {"name": "wrk socket errors in the steady phases", "measured": str(socket_outside),
             "required": "0", "met": socket_outside == 0},
            *({"name": f"{c.name} back to baseline", "measured": f"{c.baseline} -> {c.final}",
               "required": c.allowed, "met": c.ok} for c in checks),
        ]
        starts = sorted(e["start"] for e in self.events)
        for event in self.events:
            # The 5xx of this restart: sent from 1 s before it to the next restart (or the end).
            until = min([t for t in starts if t > event["start"]] or [float("inf")])
            offsets = sorted(e.sent_us / 1e6 - event["start"] for e in all_errors
                             if e.status >= 500 and event["start"] - 1 <= e.sent_us / 1e6 < until)
            event["wrk_5xx_sent_at_s"] = [round(x, 2) for x in offsets[:200]]
            event["wrk_5xx_count"] = len(offsets)
            event["wrk_5xx_last_s"] = round(offsets[-1], 2) if offsets else None
        for phase in self.phases:
            phase["errors_by_status"] = _status_counts(phase.pop("errors"))
        return {"targets": targets, "checks": [c.as_dict() for c in checks],
                "errors_by_window": {k: dict(v) for k, v in by_window.items()},
                "phases": self.phases, "events": self.events,
                "snapshots": [asdict(s) | {"rss_mib": s.rss_mib} for s in self.snapshots],
                "tolerance": asdict(Tolerance()), "notes": self.notes}


def _status_counts(errors: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for error in errors:
        out[str(error.status)] = out.get(str(error.status), 0) + 1
    return out


def login(client: Client, username: str, attempts: int = 10) -> str:
    """``workloads.login``, waiting out a 429 (login attempt limits) as its Retry-After asks."""
    for _ in range(attempts):
        reply = client.request("POST", "/api/auth/login",
                               body={"username": username, "password": SEED_PASSWORD})
        if reply.status == 429:
            time.sleep(min(30.0, float(reply.headers.get("retry-after", "1") or 1)))
            continue
        if reply.status != 200:
            raise RuntimeError(f"login of {username}: {reply.status} {reply.body[:200]!r}")
        return str(reply.json()["token"])
    raise RuntimeError(f"login of {username}: still 429 after {attempts} attempts")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=None,
                        help="minutes of measured load (default 10; 0.75 with --quick)")
    parser.add_argument("--quick", action="store_true", help="small data, 45 s of load")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=int, default=1200,
                        help="requests/s wrk aims at over its 16 connections (0: unpaced)")
    parser.add_argument("--pg-down-seconds", type=float, default=0.0,
                        help="instead of pg_ctl restart: stop PostgreSQL, wait this long, start")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="soak", help="results file name")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    plan = Plan.quick() if args.quick else Plan.full()
    if args.minutes is None:
        args.minutes = 0.75 if args.quick else 10.0
    started = datetime.now(UTC)
    raw_dir = args.out / "raw" / f"soak-{started:%Y%m%dT%H%M%S}"
    (raw_dir / "logs").mkdir(parents=True, exist_ok=True)
    described = machine.describe(None, "")  # the commit measured, before anything can change it
    soak = Soak(args, plan, raw_dir)
    soak.run()
    results = soak.results()
    meta = {"started": f"{started:%Y-%m-%d %H:%M} UTC",
            "command": " ".join(["python -m bench.soak", *(sys.argv[1:] if argv is None
                                                           else argv)]),
            "minutes": args.minutes, "workers": args.workers, "rate": args.rate,
            "delay_ms": soak.delay_ms, "threads": LOAD_THREADS, "seed": soak.seed,
            "plan": asdict(plan), "grace_s": GRACE_S, "raw_dir": str(raw_dir),
            "machine": described}
    write_results(args.name, markdown(results, meta), {"meta": meta, **results}, args.out)
    failed = [t["name"] for t in results["targets"] if not t["met"]]
    for target in results["targets"]:
        log.info("target %-45s %-28s (%s) %s", target["name"], target["measured"],
                 target["required"], "met" if target["met"] else "NOT met")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

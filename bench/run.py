"""Run the whole bench and write ``bench/results/latest.md``, ``latest.png`` and ``latest.json``.

    python -m bench.run            # the full run (about 25-30 minutes on 2 cores)
    python -m bench.run --quick    # a smoke run of a minute or two

It creates a PostgreSQL database ``bench_<random>`` on ``--postgres`` (dropped at the end unless
``--keep``), seeds it with ``python -m models.seed``, starts its own redis-servers on free
ports, then runs every configuration (the service with no cache, the memory cache, the Redis
cache and the Redis cache with Redis stopped, on 1 and 2 workers; the limit; the peer) through
the workloads in interleaved rounds, measures how cost grows with the keyspace and profiles the
hit path.  Everything binds 127.0.0.1 and is stopped before it exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import growth, machine, report, stats, workloads
from bench.client import Client
from bench.configs import PEER_VENV, ROOT, Config, all_configs, make_server
from bench.database import BenchDatabase
from bench.measure import MIXED_THREADS, Measurer, Record
from bench.procs import RedisServer
from bench.profile import profile_hits
from bench.wrk import ensure_wrk

log = logging.getLogger("bench")

RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Plan:
    """How big and how long: ``full`` (the documented run) or ``quick`` (a smoke run)."""

    users: int
    posts: int
    jobs: int
    follows: int
    rounds: int
    duration: float
    warmup: float
    workers: tuple[int, ...]
    sequence: int
    scale: float
    growth_sizes: tuple[int, ...]
    growth_writes: int
    flood: int
    flood_seconds: float

    @classmethod
    def full(cls) -> Plan:
        return cls(users=10_000, posts=100_000, jobs=2_000, follows=50_000, rounds=3,
                   duration=8, warmup=2, workers=(1, 2), sequence=100_000, scale=0.25,
                   growth_sizes=(1_000, 1_000_000), growth_writes=200, flood=100_000,
                   flood_seconds=150)

    @classmethod
    def quick(cls) -> Plan:
        return cls(users=1_000, posts=10_000, jobs=200, follows=2_000, rounds=1, duration=3,
                   warmup=1, workers=(1,), sequence=20_000, scale=0.2,
                   growth_sizes=(1_000, 100_000), growth_writes=30, flood=3_000,
                   flood_seconds=20)


def ensure_dependencies() -> None:
    """wrk (apt), the bench's own packages (pip) and the peer's virtualenv."""
    ensure_wrk()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r",  # noqa: S603
                        str(ROOT / "bench" / "requirements.txt")], check=True)
    requirements = ROOT / "bench" / "peer" / "requirements.txt"
    stamp = PEER_VENV / ".installed"
    if stamp.exists() and stamp.stat().st_mtime >= requirements.stat().st_mtime:
        return
    log.info("Creating the peer's virtualenv in %s", PEER_VENV)
    if not (PEER_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)  # noqa: S603
    subprocess.run([str(PEER_VENV / "bin" / "python"), "-m", "pip", "install", "-q",  # noqa: S603
                    "-r", str(requirements)], check=True)
    stamp.touch()


def fetch_limit_body(database_url: str, log_dir: Path, path: Path) -> Path:
    """The service's own first feed page, for the limit to serve byte for byte."""
    server = make_server(Config("no-cache", "service", 1, "off"), log_dir=log_dir,
                         database_url=database_url, redis_url=None, limit_body=path)
    with server, Client(server.base_url) as client:
        reply = client.get("/api/posts")
        if reply.status != 200:
            raise RuntimeError(f"GET /api/posts answered {reply.status}")
        path.write_bytes(reply.body)
    log.info("Feed page: %d bytes", len(reply.body))
    return path


def _median_busy(records: list[Record]) -> str:
    values = sorted(r.cpu_busy_before for r in records if r.cpu_busy_before is not None)
    return f"{100 * values[len(values) // 2]:.0f}%" if values else "n/a"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run of a minute or two")
    parser.add_argument("--postgres", default=os.environ.get(
        "BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432"),
        help="PostgreSQL server to create the bench database on (default %(default)s)")
    parser.add_argument("--database", default=None,
                        help="use this existing, already seeded bench_* database (no seeding)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="where latest.md/.png/.json go (default bench/results)")
    parser.add_argument("--rounds", type=int, default=None, help="override the plan's rounds")
    parser.add_argument("--duration", type=float, default=None,
                        help="override the seconds per wrk run")
    parser.add_argument("--configs", nargs="*", default=None, metavar="NAME",
                        help="run only these configurations (e.g. no-cache raw-asyncpg)")
    parser.add_argument("--workers", type=int, nargs="*", default=None, metavar="N",
                        help="override the plan's worker counts (e.g. 1)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["growth", "flood", "profile"],
                        help="leave out these extra measurements")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="only re-write the markdown and the plot from a saved latest.json")
    return parser


def render(path: Path, out: Path) -> int:
    """Re-write latest.md/.png/.json from a saved run (e.g. after a report change)."""
    saved = json.loads(path.read_text())
    write_results(out, growth=saved.get("growth") or {}, profile=saved.get("profile"),
                  meta=saved["meta"], records=saved["records"])
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.render:
        return render(args.render, args.out)
    plan = Plan.quick() if args.quick else Plan.full()
    if args.rounds or args.duration or args.workers:
        plan = Plan(**{**asdict(plan), "rounds": args.rounds or plan.rounds,
                       "duration": args.duration or plan.duration,
                       "workers": tuple(args.workers or plan.workers)})
    ensure_dependencies()
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    raw_dir = args.out / "raw" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    log_dir = raw_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    load_start = _load()
    notes: list[str] = []
    if args.database:
        db = BenchDatabase(args.postgres, args.database)
        seed_text = f"{args.database} (existing)"
    else:
        db = BenchDatabase.create(args.postgres)
    try:
        if not args.database:
            seconds = db.seed(users=plan.users, posts=plan.posts, jobs=plan.jobs,
                              follows=plan.follows)
            seed_text = (f"PostgreSQL seeded with {plan.users:,} users, {plan.posts:,} posts, "
                         f"{plan.jobs:,} jobs, {plan.follows:,} follows in {seconds:.0f} s")
        files = workloads_for(db, raw_dir, plan)
        limit_body = fetch_limit_body(db.url, log_dir, raw_dir / "feed-page.json")
        records: list[Record] = []
        extra: dict[str, Any] = {}
        profile: dict[str, Any] | None = None
        configs = [c for c in all_configs(plan.workers)
                   if args.configs is None or c.name in args.configs]
        with RedisServer("redis-main", log_dir=log_dir) as redis_main:
            measurer = Measurer(db.url, redis_main, files, log_dir, raw_dir, limit_body,
                                duration=plan.duration, warmup=plan.warmup)
            for round_no in range(1, plan.rounds + 1):
                order = configs if round_no % 2 else list(reversed(configs))
                for config in order:
                    run_with_retry(measurer, config, round_no, records, notes)
                if round_no < plan.rounds:
                    # A run stopped later (the machine is shared, a full run is long) still
                    # leaves the rounds it finished; the final write replaces this one.
                    write_results(args.out, records=[asdict(r) for r in records], growth={},
                                  profile=None, meta=_meta(
                                      argv, plan, started, seed_text, load_start, db, records,
                                      [*notes, f"PARTIAL: {round_no} of {plan.rounds} rounds; "
                                       "growth, flood and profile not run"], round_no))
            extra, profile = _extras(args, plan, db, files, log_dir, raw_dir, limit_body,
                                     redis_main, notes)
        for record in records:
            notes += [n for n in record.notes if n.startswith(("WARNING", "after stopping"))
                      and n not in notes]
        write_results(args.out, records=[asdict(r) for r in records], growth=extra,
                      profile=profile, meta=_meta(argv, plan, started, seed_text, load_start,
                                                  db, records, notes, plan.rounds))
    finally:
        if not args.keep and not args.database:
            db.drop()
    return 0


def _meta(argv: list[str] | None, plan: Plan, started: str, seed_text: str, load_start: str,
          db: BenchDatabase, records: list[Record], notes: list[str],
          rounds: int) -> dict[str, Any]:
    return {"started": started, "command": " ".join(["python -m bench.run", *(
        argv if argv is not None else sys.argv[1:])]), "rounds": rounds,
        "duration": plan.duration,
        "warmup": plan.warmup, "mixed_threads": MIXED_THREADS, "seed": seed_text,
        "load_start": load_start, "load_end": _load(), "notes": notes,
        "cpu_busy": _median_busy(records),
        "machine": machine.describe(PEER_VENV / "bin" / "python", db.server_version())}


def run_with_retry(measurer: Measurer, config: Config, round_no: int, records: list[Record],
                   notes: list[str]) -> None:
    """Run one configuration; if it fails, restart it once for the workloads still missing."""
    for attempt in (1, 2):
        done = {r.workload for r in records if (r.config, r.workers, r.round)
                == (config.name, config.workers, round_no)}
        missing = tuple(w for w in config.workloads if w not in done)
        if not missing:
            return
        try:
            measurer.run_config(config, round_no, records, missing)
            return
        except Exception as exc:  # noqa: BLE001 - one failed config is reported, not fatal
            log.exception("%s failed in round %d (attempt %d)", config.label, round_no, attempt)
            notes.append(f"{config.label} round {round_no} attempt {attempt} failed "
                         f"({', '.join(missing)}): {type(exc).__name__}: {exc}")


def workloads_for(db: BenchDatabase, raw_dir: Path, plan: Plan) -> workloads.WorkloadFiles:
    return workloads.build(db, raw_dir / "workloads", sequence_length=plan.sequence,
                           scale=plan.scale)


def _extras(args: argparse.Namespace, plan: Plan, db: BenchDatabase, files: Any, log_dir: Path,
            raw_dir: Path, limit_body: Path, redis_main: RedisServer,
            notes: list[str]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    extra: dict[str, Any] = {}
    profile = None
    steps = [
        ("growth", lambda: extra.__setitem__("keyspace", growth.keyspace(
            files, database_url=db.url, log_dir=log_dir, limit_body=limit_body,
            sizes=plan.growth_sizes, duration=plan.duration, writes=plan.growth_writes))),
        ("flood", lambda: extra.__setitem__("memory_flood", growth.memory_flood(
            files, database_url=db.url, log_dir=log_dir, limit_body=limit_body,
            count=plan.flood, max_seconds=plan.flood_seconds))),
    ]
    for name, step in steps:
        if name in args.skip:
            continue
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - reported, the rest still runs
            log.exception("%s measurement failed", name)
            notes.append(f"{name} measurement failed: {exc}")
    if "profile" not in args.skip:
        try:
            profile = profile_hits(database_url=db.url, redis_url=redis_main.url,
                                   hits_paths=files.hits, log_dir=log_dir, out_dir=raw_dir,
                                   duration=plan.duration)
        except Exception as exc:  # noqa: BLE001
            log.exception("profiling failed")
            notes.append(f"profiling failed: {exc}")
    return extra, profile


def write_results(out: Path, *, growth: dict[str, Any], profile: dict[str, Any] | None,
                  meta: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Summarise ``records``, check the targets and write latest.md/.png/.json."""
    summaries = stats.summarise(records)
    targets = stats.check_targets(summaries, growth)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(report.markdown(summaries=summaries, targets=targets,
                                                   growth=growth, profile=profile, meta=meta))
    report.plot(summaries, out / "latest.png")
    payload = {"meta": meta, "targets": [asdict(t) for t in targets],
               "summaries": [asdict(s) | {"rps": s.rps} for s in summaries.values()],
               "growth": growth, "profile": profile, "records": records}
    (out / "latest.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    log.info("Wrote %s, latest.png and latest.json", out / "latest.md")
    for target in targets:
        log.info("target %-55s %-22s (%s) %s", target.name, target.measured, target.required,
                 "n/a" if target.met is None else "met" if target.met else "NOT met")


if __name__ == "__main__":
    sys.exit(main())

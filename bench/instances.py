"""The mixed workload on two instances of the service sharing one Redis and one PostgreSQL.

wrk drives one host:port, so each instance gets its own wrk at the same time, half the mixed
workload's threads each (``-t8 -c8``, one connection per thread as in ``lua/mixed.lua``):

- instance A's wrk reads and writes: every ``WRITE_EVERY // 2``-th request is a PATCH, so that
  with both instances serving about as many requests the writes stay about 5% of the total;
- instance B's wrk only reads, the same Zipf sequence from other offsets.

Both log into their own directory and the stale-read check merges them on one clock
(``stale.check_dirs``): every read on B of a post written on A is checked against the writes A
acknowledged before the read was sent.  Then, with the same load running again (not logged),
``bench.probe`` measures how long a write acknowledged on A takes to show on B.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import probe, stale
from bench.client import Client
from bench.configs import Config
from bench.procs import Server, wait_for_quiet
from bench.workloads import WRITE_EVERY, with_tokens, write_version
from bench.wrk import WrkResult, run_wrk

if TYPE_CHECKING:
    from bench.measure import Measurer, Record

log = logging.getLogger(__name__)

NAMES = ("A", "B")
THREADS = 8
"""wrk threads (= connections) per instance: 16 in all, as the 1-instance mixed runs."""
WRITER_EVERY = WRITE_EVERY // 2
PROBE_WRITES = 200
GRACE_US = int(probe.LATE_MS * 1000)


def rotated(paths: Sequence[str], by: int) -> list[str]:
    """``paths`` starting at ``by`` (wrapping): the reader's threads start between the writer's."""
    if not paths:
        return []
    by %= len(paths)
    return [*paths[by:], *paths[:by]]


def combine(results: Mapping[str, WrkResult]) -> dict[str, Any]:
    """Several wrk runs at the same time as one result (the shape of ``WrkResult.as_dict``).

    Requests, errors and counters add up; requests/s is the sum of each run's; a latency
    percentile cannot be merged from percentiles, so each is the worst of the runs'."""
    runs = list(results.values())
    if not runs:
        raise ValueError("no wrk results to combine")
    counts: dict[str, int] = {}
    errors: dict[str, int] = {}
    for run in runs:
        for k, v in run.counts.items():
            counts[k] = counts.get(k, 0) + v
        for k, v in run.errors.items():
            errors[k] = errors.get(k, 0) + v
    hits, misses = counts.get("hit", 0), counts.get("miss", 0)
    return {"requests": sum(r.requests for r in runs),
            "duration_s": max(r.duration_s for r in runs),
            "rps": sum(r.rps for r in runs),
            "latency_ms": {k: max(r.latency_ms.get(k, 0.0) for r in runs)
                           for k in runs[0].latency_ms},
            "errors": errors, "counts": counts,
            "non_2xx": sum(r.non_2xx for r in runs),
            "error_total": sum(r.error_total for r in runs),
            "hit_rate": hits / (hits + misses) if hits + misses else None}


def _load(servers: Sequence[Server], paths: Mapping[str, Path], duration: float, *,
          items: Path | None, log_dirs: Mapping[str, Path] | None = None,
          during: Callable[[], Any] | None = None) -> tuple[dict[str, WrkResult], Any]:
    """One wrk per instance at the same time (writes on the first when ``items``); ``during``
    runs in this thread meanwhile and its result is returned with the wrk results."""
    def one(name: str, server: Server) -> WrkResult:
        env = {"BENCH_PATHS": str(paths[name]), "BENCH_WRITE_EVERY": "0"}
        if name == NAMES[0] and items is not None:
            env.update(BENCH_ITEMS=str(items), BENCH_WRITE_EVERY=str(WRITER_EVERY))
        if log_dirs is not None:
            env["BENCH_LOG_DIR"] = str(log_dirs[name])
        return run_wrk(server.base_url, "mixed", duration=duration, threads=THREADS,
                       connections=THREADS, env=env)

    with ThreadPoolExecutor(len(servers)) as pool:
        futures = {name: pool.submit(one, name, server) for name, server in zip(NAMES, servers)}
        extra = during() if during is not None else None
        return {name: f.result() for name, f in futures.items()}, extra


def measure_mixed(measurer: Measurer, config: Config, servers: Sequence[Server],
                  round_no: int) -> Record:
    """The mixed workload over ``servers`` (writes on the first), checked across instances."""
    from bench.measure import Record, command_calls, diff_calls, route_misses

    files = measurer.files
    writer = servers[0]
    with Client(writer.base_url) as client:
        items = measurer.items(client)
        base = measurer.new_version()
        for item in items:
            write_version(client, item, base)
        if files.probe is None:
            raise RuntimeError("the workload files name no probe post")
        probe_post = with_tokens(client, [files.probe])[0]
    mixed = files.mixed.read_text().split()
    reader_paths = files.directory / "mixed-reader.txt"
    reader_paths.write_text("\n".join(rotated(mixed, len(mixed) // (2 * THREADS))) + "\n")
    paths = {NAMES[0]: files.mixed, NAMES[1]: reader_paths}
    for server in servers:  # one GET of every URL on each: each has its own hot tier to fill
        run_wrk(server.base_url, "paths", duration=300,
                env={"BENCH_PATHS": str(files.universe), "BENCH_ONCE": "1"})
    _load(servers, paths, measurer.warmup, items=None)
    top = measurer.raw_dir / f"stale-{config.name}-{config.workers}w-r{round_no}"
    log_dirs = {name: top / name for name in NAMES[:len(servers)]}
    for directory in log_dirs.values():
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("thread-*.log"):
            old.unlink()
    items_file = files.items_file(items, base)
    misses_before = [route_misses(s) for s in servers]
    before = command_calls(measurer.redis_main.url)
    busy = wait_for_quiet(max_wait=10.0)
    cpu_before = sum(s.cpu_seconds() for s in servers)
    results, _ = _load(servers, paths, measurer.duration, items=items_file, log_dirs=log_dirs)
    cpu = sum(s.cpu_seconds() for s in servers) - cpu_before
    commands = diff_calls(before, command_calls(measurer.redis_main.url))
    misses: dict[str, int] = {}
    for server, earlier in zip(servers, misses_before):
        for route, n in route_misses(server).items():
            misses[route] = misses.get(route, 0) + n - earlier.get(route, 0)
    report = stale.check_dirs(log_dirs, {i.id: base for i in files.items}, grace_us=GRACE_US)
    probe_summary = _probe(measurer, servers, paths, items_file, probe_post)
    record = Record(config.name, config.workers, "mixed", round_no, combine(results),
                    redis_commands=commands, stale=report.as_dict(), server_cpu_s=round(cpu, 3),
                    cpu_busy_before=round(busy, 2), route_misses=misses, probe=probe_summary,
                    instances={name: r.as_dict() for name, r in results.items()})
    record.notes.append(
        f"{config.label}: {len(servers)} instances of {config.workers} worker(s); writes on "
        f"{NAMES[0]} (every {WRITER_EVERY}th of its requests), reads on all")
    return record


def _probe(measurer: Measurer, servers: Sequence[Server], paths: Mapping[str, Path],
           items_file: Path, post: Any) -> dict[str, Any]:
    """The invalidation delay from the first instance to the second, under the same load.

    Twice the measured run's length: under load each write and its reads take tens of
    milliseconds, and the probe wants about a hundred writes per round."""
    duration = max(2 * measurer.duration, 4.0)

    def during() -> list[probe.ProbeWrite]:
        time.sleep(0.5)  # let both wrk processes connect and reach full load
        return probe.run(servers[0].base_url, servers[1].base_url, post, writes=PROBE_WRITES,
                         deadline=time.monotonic() + duration - 1.5)

    _, writes = _load(servers, paths, duration, items=items_file, during=during)
    summary = probe.summarise(writes)
    log.info("probe: %d writes, delay p50 %s ms p99 %s ms max %s ms, %d late old reads",
             summary["writes"], summary.get("p50_ms"), summary.get("p99_ms"),
             summary.get("max_ms"), summary["late_old_reads"])
    return summary

"""How cost grows: hit latency and invalidation time against keyspace size, and the memory
fallback's footprint under a flood of unique query strings.

Keys are added with ``DEBUG POPULATE`` (and removed with SCAN + UNLINK) on the bench's own
throwaway redis-server, started with ``--enable-debug-command yes``; nothing here touches any
other Redis.
"""

from __future__ import annotations

import logging
import statistics
from pathlib import Path
from typing import Any

import redis

from bench.client import Client
from bench.configs import Config, make_server
from bench.measure import BENCH_COMMANDS
from bench.procs import RedisServer
from bench.workloads import WorkloadFiles, WritablePost, with_tokens, write_version
from bench.wrk import run_wrk

log = logging.getLogger(__name__)

FEED_KEY_GLOB = "*:r:GET:/api/posts?*"


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99),
            "mean": statistics.fmean(ordered) * 1000, "count": len(ordered)}


def _usec(client: redis.Redis) -> dict[str, tuple[int, int]]:
    stats = client.info("commandstats")
    return {name: (int(v["calls"]), int(v["usec"])) for k, v in stats.items()
            if (name := k.removeprefix("cmdstat_")) not in BENCH_COMMANDS}


def _usec_per_call(before: dict[str, tuple[int, int]],
                   after: dict[str, tuple[int, int]]) -> dict[str, float]:
    out = {}
    for name, (calls, usec) in after.items():
        c0, u0 = before.get(name, (0, 0))
        if calls > c0:
            out[name] = round((usec - u0) / (calls - c0), 2)
    return out


def feed_key_prefix(client: redis.Redis) -> str:
    """The prefix of the feed's response keys as the cache writes them (``<ns>:r:GET:...?``)."""
    for key in client.scan_iter(match=FEED_KEY_GLOB, count=1000):
        text = key.decode()
        return text[: text.index("?") + 1]
    return "rc:r:GET:/api/posts?"


def time_writes(client: Client, item: WritablePost, count: int, first_version: int) -> list[float]:
    """Seconds of ``count`` sequential PATCHes (each clears the feed's prefixes)."""
    samples = []
    for i in range(count):
        reply = client.request(
            "PATCH", f"/api/posts/{item.id}",
            body={"content": f"[bench:post={item.id}:v={first_version + i}] growth"},
            headers={"Authorization": f"Bearer {item.token}"})
        if reply.status != 200:
            raise RuntimeError(f"PATCH failed: {reply.status} {reply.body[:200]!r}")
        samples.append(reply.seconds)
    return samples


def fill(client: redis.Redis, prefix: str, count: int) -> None:
    """Exactly ``count`` keys named ``<prefix>:<n>``: drop the old ones, then DEBUG POPULATE."""
    batch: list[bytes] = []
    for key in client.scan_iter(match=prefix + ":*", count=10_000):
        batch.append(key)
        if len(batch) >= 10_000:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)
    if count:
        client.execute_command("DEBUG", "POPULATE", count, prefix, 64)


def _median_of(runs: list[dict[str, Any]], *path: str) -> float:
    values = []
    for run in runs:
        value: Any = run
        for step in path:
            value = value[step]
        values.append(float(value))
    return statistics.median(values)


def keyspace(files: WorkloadFiles, *, database_url: str, log_dir: Path, limit_body: Path,
             sizes: tuple[int, ...], duration: float, writes: int,
             repeats: int = 2) -> dict[str, Any]:
    """Hit latency with ``sizes`` unrelated keys; write latency with ``sizes`` keys under the
    feed's prefix.  One redis-server and one 1-worker Redis-backed service for all sizes; the
    sizes alternate ``repeats`` times (small, large, small, large) and medians are reported, so
    that a burst of load from elsewhere on the machine does not pass for growth."""
    hits: dict[str, list[dict[str, Any]]] = {str(n): [] for n in sizes}
    invalidations: dict[str, list[dict[str, Any]]] = {str(n): [] for n in sizes}
    out: dict[str, Any] = {"sizes": list(sizes), "repeats": repeats}
    with RedisServer("redis-growth", log_dir=log_dir) as redis_server:
        rc = redis.Redis.from_url(redis_server.url, socket_timeout=120)
        server = make_server(Config("redis", "service", 1, "redis"), log_dir=log_dir,
                             database_url=database_url, redis_url=redis_server.url,
                             limit_body=limit_body)
        with server, Client(server.base_url) as client:
            items = with_tokens(client, files.items)
            write_version(client, items[0], 1)
            hit_path = files.hits.read_text().strip()
            client.get(hit_path)
            prefix = feed_key_prefix(rc)
            out["prefix"] = prefix
            version = 10
            env = {"BENCH_PATHS": str(files.hits)}
            for _ in range(repeats):
                for size in sizes:
                    fill(rc, "bench:unrelated", size)
                    fill(rc, prefix + "bench-fill", size)
                    client.get(hit_path)
                    run_wrk(server.base_url, "paths", duration=1, env=env)
                    result = run_wrk(server.base_url, "paths", duration=duration, env=env)
                    hits[str(size)].append({"dbsize": rc.dbsize(), **result.as_dict()})
                    time_writes(client, items[0], 10, version)  # warm the write path
                    before = _usec(rc)
                    samples = time_writes(client, items[0], writes, version + 10)
                    version += writes + 20
                    invalidations[str(size)].append({
                        "dbsize": rc.dbsize(), "keys_under_prefix": size,
                        "write_ms": _percentiles(samples),
                        "redis_usec_per_call": _usec_per_call(before, _usec(rc))})
                    log.info("keyspace %d: hit %.0f req/s p50 %.2f ms; write p50 %.2f ms",
                             size, result.rps, result.latency_ms["p50"],
                             invalidations[str(size)][-1]["write_ms"]["p50"])
        rc.close()
    out["hit"] = {size: {"dbsize": runs[-1]["dbsize"],
                         "rps": _median_of(runs, "rps"),
                         "rps_runs": [r["rps"] for r in runs],
                         "latency_ms": {p: _median_of(runs, "latency_ms", p)
                                        for p in ("p50", "p95", "p99")}}
                  for size, runs in hits.items()}
    out["invalidate"] = {size: {"dbsize": runs[-1]["dbsize"], "keys_under_prefix": int(size),
                                "write_ms": {p: _median_of(runs, "write_ms", p)
                                             for p in ("p50", "p95", "p99")},
                                "redis_usec_per_call": runs[-1]["redis_usec_per_call"]}
                         for size, runs in invalidations.items()}
    out["runs"] = {"hit": hits, "invalidate": invalidations}
    return out


def memory_flood(files: WorkloadFiles, *, database_url: str, log_dir: Path, limit_body: Path,
                 count: int, max_seconds: float) -> dict[str, Any]:
    """RSS of a memory-cache service before and after ``count`` unique feed query strings.

    Every one is a miss that queries the database, so the flood stops after one pass or at
    ``max_seconds``; the result says how many were actually sent."""
    lines = (files.misses.read_text().splitlines()
             + files.misses_warmup.read_text().splitlines())[:count]
    flood = files.directory / f"flood-{count}.txt"
    flood.write_text("\n".join(lines) + "\n")
    server = make_server(Config("memory", "service", 1, "memory"), log_dir=log_dir,
                         database_url=database_url, redis_url=None, limit_body=limit_body)
    with server, Client(server.base_url) as client:
        client.get(files.hits.read_text().strip())
        rss_before = server.rss()
        result = run_wrk(server.base_url, "paths", duration=max_seconds,
                         env={"BENCH_PATHS": str(flood), "BENCH_ONCE": "1"})
        rss_after = server.rss()
        cache_stats: Any = None
        reply = client.get("/health/cache")
        if reply.status == 200:
            cache_stats = reply.json()
    return {"unique_query_strings": len(lines), "requests": result.requests,
            "rss_before_mib": round(rss_before / 2**20, 1),
            "rss_after_mib": round(rss_after / 2**20, 1),
            "rss_growth_mib": round((rss_after - rss_before) / 2**20, 1),
            "errors": result.error_total, "health_cache": cache_stats,
            "wrk": result.as_dict()}

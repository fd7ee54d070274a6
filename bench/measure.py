"""Measure one configuration: start it, prepare each workload, run wrk, record the result."""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from prometheus_client.parser import text_string_to_metric_families

from bench import instances, stale
from bench.client import Client
from bench.configs import Config, make_rest_standin, make_server
from bench.procs import RedisServer, Server, wait_for_quiet
from bench.workloads import WRITE_EVERY, WorkloadFiles, WritablePost, with_tokens, write_version
from bench.wrk import run_wrk
from middleware.keys import canonical_query, response_key

log = logging.getLogger(__name__)

MIXED_THREADS = 16  # one connection per wrk thread: see lua/mixed.lua
BENCH_COMMANDS = frozenset({"info", "dbsize", "scan", "unlink", "debug", "hello"})
"""Commands the bench itself sends to Redis: left out of the per-request counts (``hello``:
the handshake of the bench's own connection for ``INFO``; the service's connections are all
open before a measured run starts)."""


def standin_requests(base_url: str) -> int:
    """HTTP requests the REST stand-in has served (``tests.upstash_standin.COUNT_PATH``)."""
    from tests.upstash_standin import COUNT_PATH

    with urllib.request.urlopen(base_url + COUNT_PATH, timeout=5) as reply:
        return int(json.loads(reply.read())["requests"])


@dataclass
class Record:
    """One wrk run of one workload on one configuration in one round."""

    config: str
    workers: int
    workload: str
    round: int
    result: dict[str, Any]
    redis_commands: dict[str, int] | None = None
    stale: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    cpu_busy_before: float | None = None
    """Share of the CPUs other work kept busy just before this run was measured."""
    route_misses: dict[str, int] | None = None
    """Cache misses per route during the measured run (the service's ``/metrics``)."""
    server_cpu_s: float | None = None
    """CPU seconds the server's processes used during the measured run: unlike requests/s,
    barely moved by other work on a shared machine."""
    probe: dict[str, Any] | None = None
    """The invalidation delay probe (``bench.probe``), for a configuration of several
    instances."""
    instances: dict[str, Any] | None = None
    """Each instance's own wrk result, when several ran at once (``result`` combines them)."""
    hot: dict[str, Any] | None = None
    """``stats.hot`` of ``/health/cache`` after the run (one worker's view)."""
    http_requests: int | None = None
    """HTTP requests the REST stand-in served during the run (``upstash-rest``)."""
    entry_bytes: int | None = None
    """``MEMORY USAGE`` of the all-hits URL's entry in Redis after the run (the compression
    pair, which keeps its entries under its own namespace)."""

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.config, self.workers, self.workload)


def command_calls(url: str) -> dict[str, int]:
    """``INFO commandstats`` as ``{command: calls}``, without the bench's own commands."""
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name: int(value["calls"]) for key, value in stats.items()
            if (name := key.removeprefix("cmdstat_")) not in BENCH_COMMANDS}


def route_misses(server: Server) -> dict[str, int]:
    """``cache_lookups_total{outcome="miss"}`` per route, summed over the service's workers.

    Workers write their samples every second (``handlers.metrics.FLUSH_SECONDS``): wait that
    long first, so every worker's last requests are in."""
    time.sleep(1.2)
    with Client(server.base_url) as client:
        text = client.get("/metrics").body.decode()
    out: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "cache_lookups_total" and sample.labels.get("outcome") == "miss":
                route = sample.labels["route"]
                out[route] = out.get(route, 0) + int(sample.value)
    return out


def hot_stats(server: Server) -> dict[str, Any] | None:
    """``stats.hot`` from ``/health/cache`` (answered by one worker), None when absent."""
    with Client(server.base_url) as client:
        reply = client.get("/health/cache")
    try:
        hot = reply.json().get("stats", {}).get("hot")
    except ValueError:
        return None
    return hot if isinstance(hot, dict) else None


def entry_key(namespace: str, path: str) -> str:
    """The Redis key of the response to a GET of ``path`` (``middleware.keys``), keeping every
    query parameter ``path`` has (the all-hits URL carries only ones the feed keys on)."""
    route, _, query = path.partition("?")
    names = [pair.split("=", 1)[0] for pair in query.split("&") if pair]
    return response_key(namespace, route, canonical_query(query, names))


def entry_bytes(url: str, key: str) -> int | None:
    """``MEMORY USAGE`` of ``key`` (exact for a string value), None when it is absent."""
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        usage = client.memory_usage(key, samples=0)
    finally:
        client.close()
    return None if usage is None else int(usage)


def diff_calls(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    changed = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return {k: v for k, v in sorted(changed.items()) if v > 0}


@dataclass
class Measurer:
    """Runs configurations against one database, one Redis and one set of workload files."""

    database_url: str
    redis_main: RedisServer
    files: WorkloadFiles
    log_dir: Path
    raw_dir: Path
    limit_body: Path
    duration: float
    warmup: float
    next_version: int = 1_000_000
    read_header: str = ""
    """``Name: value`` sent with every GET of the current configuration (see _check_cache_off)."""
    _items: list[WritablePost] | None = None
    _standin: Server | None = None
    """The REST stand-in of the configuration being measured (``upstash-rest``)."""

    def run_config(self, config: Config, round_no: int, records: list[Record],
                   workloads: tuple[str, ...] | None = None) -> None:
        """Start ``config``, run its workloads (or ``workloads``) and stop it.

        Each record is appended to ``records`` as soon as it is measured, so a server that
        dies half-way keeps what it had done."""
        wait_for_quiet()
        stopped_redis: RedisServer | None = None
        redis_url = self.redis_main.url
        if config.cache == "redis-down":
            stopped_redis = RedisServer(f"redis-stopped-{config.workers}w-r{round_no}",
                                        log_dir=self.log_dir)
            stopped_redis.start()
            redis_url = stopped_redis.url
        standin = make_rest_standin(redis_url, log_dir=self.log_dir,
                                    name=f"rest-standin-r{round_no}") \
            if config.cache == "rest" else None
        names = instances.NAMES[:config.instances] if config.instances > 1 else ("",)
        servers = [make_server(config, log_dir=self.log_dir, database_url=self.database_url,
                               redis_url=redis_url, limit_body=self.limit_body,
                               peer_prefix=f"peer-r{round_no}-{time.monotonic_ns()}",
                               instance=f"-{name}" if name else "",
                               rest_url=standin.base_url if standin else None)
                   for name in names]
        server = servers[0]
        self._standin = standin
        try:
            if standin is not None:
                standin.start()
            for each in servers:
                each.start()
            notes: list[str] = []
            self.read_header = ""
            if config.kind == "service" and config.cache == "off":
                notes += self._check_cache_off(server, config)
            if config.kind == "raw":
                notes += self._check_raw_bytes(server, config)
            if config.accept_encoding:
                self.read_header = f"Accept-Encoding: {config.accept_encoding}"
            if config.namespace:
                notes += self._check_coding(server, config)
            if stopped_redis is not None:
                notes = self._stop_redis(server, stopped_redis)
            for workload in workloads or config.workloads:
                if len(servers) > 1:
                    record = instances.measure_mixed(self, config, servers, round_no)
                else:
                    record = self._measure(config, server, workload, round_no)
                record.notes += notes
                records.append(record)
                log.info("%-24s %-6s round %d: %8.0f req/s p50 %6.2f ms p99 %7.2f ms "
                         "errors %d hit rate %s", config.label, workload, round_no,
                         record.result["rps"], record.result["latency_ms"]["p50"],
                         record.result["latency_ms"]["p99"], record.result["error_total"],
                         record.result["hit_rate"])
        finally:
            for each in servers:
                each.stop()
            if standin is not None:
                standin.stop()
            if stopped_redis is not None:
                stopped_redis.stop()

    def items(self, client: Client) -> list[WritablePost]:
        if self._items is None:
            self._items = with_tokens(client, self.files.items)
        return self._items

    def _check_cache_off(self, server: Server, config: Config) -> list[str]:
        """Make sure the no-cache configuration really runs uncached.

        When ``CACHE_ENABLED=false`` is not honoured (the cache still answers with X-Cache),
        every GET carries an ``Authorization`` header instead: the cache never reads or stores a
        shared entry for such a request (BYPASS), so each one runs the handler."""
        path = self.files.hits.read_text().strip()
        with Client(server.base_url) as client:
            client.get(path)
            reply = client.get(path)
        if not reply.x_cache:
            return []
        self.read_header = "Authorization: Bearer bench-no-cache"
        with Client(server.base_url) as client:
            check = client.get(path, headers={"Authorization": "Bearer bench-no-cache"})
        return [f"WARNING: {config.label}: CACHE_ENABLED=false was not honoured (X-Cache: "
                f"{reply.x_cache}); every GET of this configuration carries an Authorization "
                f"header instead, which the cache bypasses (X-Cache: {check.x_cache or '-'})"]

    def _check_raw_bytes(self, server: Server, config: Config) -> list[str]:
        """The raw reference must answer the feed's first page with the service's bytes."""
        with Client(server.base_url) as client:
            reply = client.get(self.files.hits.read_text().strip())
        if reply.status == 200 and reply.body == self.limit_body.read_bytes():
            return []
        return [f"WARNING: {config.label}: the first feed page differs from the service's "
                f"({reply.status}, {len(reply.body)} bytes): the comparison is not like for like"]

    def _check_coding(self, server: Server, config: Config) -> list[str]:
        """The compression pair: a hit must come in the coding the configuration is about
        (``br`` when compressing and asked for it, none otherwise)."""
        path = self.files.hits.read_text().strip()
        headers = {"Accept-Encoding": config.accept_encoding} if config.accept_encoding else {}
        with Client(server.base_url) as client:
            for _ in range(2):
                reply = client.get(path, headers=headers)
        coding = reply.headers.get("content-encoding", "")
        wanted = "br" if config.compress and "br" in config.accept_encoding else ""
        seen = (f"{reply.status} X-Cache={reply.x_cache or '-'} "
                f"Content-Encoding={coding or '-'}, {len(reply.body):,} body bytes")
        if coding == wanted and reply.x_cache == "HIT":
            return [f"{config.label}: a warm GET of {path} answered {seen}"]
        return [f"WARNING: {config.label}: a warm GET of {path} answered {seen}; expected a "
                f"HIT with Content-Encoding={wanted or '-'}"]

    def _stop_redis(self, server: Server, redis_server: RedisServer) -> list[str]:
        """Warm the entry into Redis, stop Redis, then trip every worker's breaker."""
        with Client(server.base_url) as client:
            for _ in range(3):
                client.get(self.files.hits.read_text().strip())
        redis_server.stop()
        seen: dict[str, int] = {}
        for _ in range(200):  # a new connection each time, so every worker gets some
            with Client(server.base_url) as client:
                reply = client.get(self.files.hits.read_text().strip())
                key = f"{reply.status} {reply.x_cache}"
                seen[key] = seen.get(key, 0) + 1
        return [f"after stopping Redis, 200 GETs answered: {seen}"]

    def _wrk(self, server: Server, workload: str, paths: Path, duration: float,
             **extra: str) -> Any:
        threads = connections = 1
        script = "paths"
        if workload == "mixed":
            threads = connections = MIXED_THREADS
            script = "mixed"
        else:
            connections = 64
        env = {"BENCH_PATHS": str(paths), "BENCH_READ_HEADER": self.read_header, **extra}
        return run_wrk(server.base_url, script, duration=duration, threads=threads,
                       connections=connections, env=env)

    def _measure(self, config: Config, server: Server, workload: str, round_no: int) -> Record:
        cached = config.kind == "service" and config.cache != "off"
        files = self.files
        notes: list[str] = []
        extra: dict[str, str] = {}
        stale_dir: Path | None = None
        base = 0
        with Client(server.base_url) as client:
            if workload == "hits":
                for _ in range(2):
                    reply = client.get(files.hits.read_text().strip())
                notes.append(f"warm GET: {reply.status} X-Cache={reply.x_cache or '-'}")
                self._wrk(server, "hits", files.hits, self.warmup)
                paths = files.hits
            elif workload == "misses":
                # Warm up on miss traffic: a cached configuration's hits never run the handler,
                # and a server whose handler path is cold costs more per request for a while.
                self._wrk(server, "misses", files.misses_warmup, self.warmup)
                if cached:
                    # A write bumps the feed's generation: entries stored by earlier runs with
                    # the same cursors can no longer be served, so every request misses.
                    items = self.items(client)
                    write_version(client, items[0], self.new_version())
                paths = files.misses
            else:
                items = self.items(client)
                base = self.new_version()
                for item in items:
                    write_version(client, item, base)
                if config.cache != "off":
                    # One GET of every URL: the run then sees no compulsory cold misses.
                    run_wrk(server.base_url, "paths", duration=300,
                            env={"BENCH_PATHS": str(files.universe), "BENCH_ONCE": "1"})
                self._wrk(server, "mixed", files.mixed, self.warmup, BENCH_WRITE_EVERY="0")
                stale_dir = self.raw_dir / f"stale-{config.name}-{config.workers}w-r{round_no}"
                stale_dir.mkdir(parents=True, exist_ok=True)
                for old in stale_dir.glob("thread-*.log"):
                    old.unlink()
                extra = {"BENCH_ITEMS": str(files.items_file(items, base)),
                         "BENCH_WRITE_EVERY": str(WRITE_EVERY), "BENCH_LOG_DIR": str(stale_dir)}
                paths = files.mixed
        watch_routes = workload == "mixed" and cached
        misses_before = route_misses(server) if watch_routes else {}
        watch_redis = config.uses_redis
        before = command_calls(self.redis_main.url) if watch_redis else {}
        standin = self._standin
        http_before = standin_requests(standin.base_url) if standin is not None else None
        # Writes of the mixed workload leave PostgreSQL busy for a while (autovacuum):
        # let that (and other tenants) settle before every measured run, not just per server.
        busy = wait_for_quiet(max_wait=10.0)
        cpu_before = server.cpu_seconds()
        result = self._wrk(server, workload, paths, self.duration, **extra)
        cpu = server.cpu_seconds() - cpu_before
        commands = diff_calls(before, command_calls(self.redis_main.url)) if watch_redis else None
        http_requests = (standin_requests(standin.base_url) - http_before
                         if standin is not None and http_before is not None else None)
        misses = {route: n - misses_before.get(route, 0)
                  for route, n in route_misses(server).items()} if watch_routes else None
        record = Record(config.name, config.workers, workload, round_no, result.as_dict(),
                        redis_commands=commands, notes=notes, server_cpu_s=round(cpu, 3),
                        cpu_busy_before=round(busy, 2),
                        route_misses=misses, http_requests=http_requests)
        if config.cache == "redis-hot":
            record.hot = hot_stats(server)
        if config.namespace and workload == "hits":
            record.entry_bytes = entry_bytes(
                self.redis_main.url, entry_key(config.namespace, files.hits.read_text().strip()))
        if stale_dir is not None:
            report = stale.check_dir(stale_dir, {i.id: base for i in self.files.items})
            record.stale = report.as_dict()
        return record

    def new_version(self) -> int:
        """A version tag above every earlier one (a million apart: room for a run's writes)."""
        self.next_version += 1_000_000
        return self.next_version

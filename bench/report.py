"""Write a bench run as a markdown table and a PNG plot (latency percentiles and throughput)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.stats import Summary, Target, ratio

ORDER = ("limit", "raw-asyncpg", "raw-asyncpg-redis", "peer", "no-cache", "memory", "redis",
         "redis-hot", "redis-hot-2i", "redis-stopped", "redis-hot-plain", "redis-hot-br")
WORKLOAD_TITLES = {"hits": "All hits (the feed's first page, one URL)",
                   "misses": "All misses (a new cursor on every request)",
                   "mixed": "Mixed (Zipf over the cached routes, 5% writes, stale-read check)"}


def _sorted(summaries: Mapping[tuple[str, int, str], Summary], workload: str) -> list[Summary]:
    rows = [s for s in summaries.values() if s.workload == workload]
    return sorted(rows, key=lambda s: (s.workers, ORDER.index(s.config)
                                       if s.config in ORDER else 99))


def _x(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def workload_table(summaries: Mapping[tuple[str, int, str], Summary], workload: str) -> str:
    lines = ["| configuration | workers | req/s (median) | runs | p50 ms | p95 ms | p99 ms | "
             "errors | hit rate | x limit | x peer | server CPU µs/req |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in _sorted(summaries, workload):
        limit = summaries.get(("limit", s.workers, "hits"))
        peer = summaries.get(("peer", s.workers, workload)) or summaries.get(
            ("peer", s.workers, "hits"))
        runs = " / ".join(f"{r:,.0f}" for r in s.rps_runs)
        lines.append(
            f"| {s.config} | {s.workers} | {s.rps:,.0f} | {runs} | {s.latency_ms['p50']:.2f} | "
            f"{s.latency_ms['p95']:.2f} | {s.latency_ms['p99']:.2f} | {s.errors} | "
            f"{_pct(s.hit_rate)} | {_x(ratio(s.rps, limit.rps if limit else None))} | "
            f"{_x(ratio(s.rps, peer.rps if peer else None))} | "
            f"{'' if s.cpu_us_per_request is None else f'{s.cpu_us_per_request:,.0f}'} |")
    return "\n".join(lines)


def targets_table(targets: list[Target]) -> str:
    lines = ["| target (1 worker) | measured | required | met |", "|---|---|---|---|"]
    for t in targets:
        status = "n/a" if t.met is None else ("yes" if t.met else "**no**")
        lines.append(f"| {t.name} | {t.measured} | {t.required} | {status} |")
    return "\n".join(lines)


def _stale_table(summaries: Mapping[tuple[str, int, str], Summary]) -> str:
    lines = ["| configuration | workers | writes acknowledged | reads of written posts checked |"
             " stale reads | stale reads beyond 5 ms | hit rate | cache misses per write |",
             "|---|---|---|---|---|---|---|---|"]
    for s in _sorted(summaries, "mixed"):
        if s.stale_reads is not None:
            per_write = f"{s.misses / s.writes:.1f}" if s.writes and s.hit_rate is not None else ""
            checked = f"{s.reads_checked}"
            if s.stale_by_source:
                checked += " (" + ", ".join(f"{k}: {v.get('reads_checked', 0)}" for k, v in
                                            sorted(s.stale_by_source.items())) + ")"
            late = "" if s.stale_beyond_grace is None else str(s.stale_beyond_grace)
            lines.append(f"| {s.config} | {s.workers} | {s.writes_acknowledged} | "
                         f"{checked} | {s.stale_reads} | {late} | {_pct(s.hit_rate)} | "
                         f"{per_write} |")
    return "\n".join(lines)


def _share(s: Summary) -> str:
    if not s.requests:
        return "n/a"
    return f"{s.writes:,} writes, {100 * s.writes / s.requests:.1f}% of all {s.requests:,} requests"


def _instances_section(summaries: Mapping[tuple[str, int, str], Summary]) -> list[str]:
    """Two instances: the cross-instance stale check and the invalidation delay probe."""
    rows = [s for s in summaries.values() if s.stale_by_source or s.probe]
    out: list[str] = []
    for s in rows:
        out += [f"## Two instances ({s.config}: 1 worker each, one Redis, one PostgreSQL)", "",
                "Two `python app.py` processes on their own ports, each driven by its own wrk at "
                "the same time (`-t8 -c8` each): A's wrk writes (every 10th of its requests a "
                f"PATCH: {_share(s)}; A, which serves the writes, answers fewer requests than "
                "B), B's only reads. Both logs are checked "
                "together on one clock (`CLOCK_MONOTONIC`, shared by every process on this "
                "machine): every read on B is compared with the last write acknowledged on A "
                "before the read was sent. Requests/s above is the sum of both; each latency "
                "percentile is the worse of the two.", ""]
        if s.stale_by_source:
            out += ["| instance | reads of written posts checked | stale reads | "
                    "stale reads beyond 5 ms |", "|---|---|---|---|"]
            out += [f"| {name} | {c.get('reads_checked', 0)} | {c.get('stale_reads', 0)} | "
                    f"{c.get('stale_beyond_grace', 0)} |"
                    for name, c in sorted(s.stale_by_source.items())]
            out.append("")
        pr = s.probe
        if pr:
            delays = ("no write was seen" if pr.get("p50_ms") is None else
                      f"p50 {pr['p50_ms']:.2f} ms, p99 {pr['p99_ms']:.2f} ms, "
                      f"max {pr['max_ms']:.2f} ms (that read was sent p50 "
                      f"{pr.get('sent_p50_ms', 0):.2f} ms, p99 {pr.get('sent_p99_ms', 0):.2f} "
                      f"ms, max {pr.get('sent_max_ms', 0):.2f} ms after the ack)")
            out += ["Invalidation delay, A to B (`bench/probe.py`, under the same two-instance "
                    "load, not logged): the probe PATCHes a post of its own on A, then GETs it "
                    "on B back to back until B shows the new version; the delay runs from A's "
                    "acknowledgement to the end of the first read on B that showed it (so it "
                    "includes that read's own round trip).", "",
                    f"- {pr['writes']} writes ({pr['warm_hits']} with the post a hit on B just "
                    f"before), {pr['reads']} reads of B after them: {delays}; "
                    f"{pr['never_seen']} never seen within 2 s;",
                    f"- reads on B that showed the old content although sent after the ack: "
                    f"{pr['old_reads_after_ack']}; of those sent more than "
                    f"{pr['late_ms']:.0f} ms after it: {pr['late_old_reads']}. With no old "
                    "read after the ack, the delay is the time B took to answer the first read "
                    "(a miss on B: the write cleared its entry), not time B served old "
                    "content.", ""]
    return out


def _route_misses_table(summaries: Mapping[tuple[str, int, str], Summary]) -> str:
    """Cache misses per write, by route: which invalidations the hit rate pays for."""
    rows = [s for s in _sorted(summaries, "mixed") if s.route_misses and s.writes]
    routes = sorted({route for s in rows for route in s.route_misses})
    if not rows:
        return ""
    lines = ["| configuration | workers | " + " | ".join(f"`{r}`" for r in routes) + " | all |",
             "|---|---|" + "---|" * (len(routes) + 1)]
    for s in rows:
        cells = [f"{s.route_misses.get(r, 0) / s.writes:.2f}" for r in routes]
        lines.append(f"| {s.config} | {s.workers} | " + " | ".join(cells) +
                     f" | {sum(s.route_misses.values()) / s.writes:.2f} |")
    return "\n".join(lines)


def raw_table(summaries: Mapping[tuple[str, int, str], Summary]) -> str:
    """The uncached feed (``no-cache``) beside the raw asyncpg reference, per workload."""
    from bench.configs import RAW

    lines = ["| workload | workers | no-cache req/s | raw-asyncpg req/s | req/s ratio | "
             "no-cache CPU µs/req | raw-asyncpg CPU µs/req | CPU/request ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for (config, workers, workload), raw in sorted(summaries.items(),
                                                   key=lambda kv: (kv[0][1], kv[0][2])):
        service = summaries.get(("no-cache", workers, workload))
        if config != RAW or service is None:
            continue
        cpu = (service.cpu_us_per_request, raw.cpu_us_per_request)
        lines.append(
            f"| {workload} | {workers} | {service.rps:,.0f} | {raw.rps:,.0f} | "
            f"{_x(ratio(service.rps, raw.rps))} | "
            + " | ".join("" if v is None else f"{v:,.0f}" for v in cpu)
            + f" | {_x(ratio(*cpu))} |")
    return "\n".join(lines) if len(lines) > 2 else ""


MISS_ROWS = (("raw-asyncpg", "raw-asyncpg"), ("raw-asyncpg-redis", "raw-asyncpg"),
             ("no-cache", "no-cache"), ("redis", "no-cache"), ("redis-hot", "no-cache"),
             ("redis-hot-plain", "no-cache"), ("redis-hot-br", "no-cache"))
"""(configuration, the uncached configuration its misses are compared with)."""


def miss_floor_table(summaries: Mapping[tuple[str, int, str], Summary]) -> str:
    """All misses, 1 worker: what each cache adds to its own uncached handler, in req/s and in
    CPU per request, the least a shared cache can do (``raw-asyncpg-redis``) included."""
    if ("raw-asyncpg-redis", 1, "misses") not in summaries:
        return ""
    lines = ["| configuration | uncached reference | req/s | vs reference | CPU µs/req | "
             "vs reference | CPU added µs/req |", "|---|---|---|---|---|---|---|"]
    for config, reference in MISS_ROWS:
        row, base = summaries.get((config, 1, "misses")), summaries.get((reference, 1, "misses"))
        if row is None or base is None:
            continue
        cpu, base_cpu = row.cpu_us_per_request, base.cpu_us_per_request
        added = "" if cpu is None or base_cpu is None or config == reference \
            else f"{cpu - base_cpu:+,.0f}"
        lines.append(
            f"| {config} | {reference} | {row.rps:,.0f} | {_x(ratio(row.rps, base.rps))} | "
            f"{'' if cpu is None else f'{cpu:,.0f}'} | {_x(ratio(cpu, base_cpu))} | {added} |")
    return "\n".join(lines)


def compression_table(summaries: Mapping[tuple[str, int, str], Summary]) -> str:
    """The compression pair per workload: req/s, CPU, bytes on the wire and Redis memory."""
    from bench.configs import BR, PLAIN, compression_pair

    asked = {c.name: c.accept_encoding or "(none)" for c in compression_pair()}
    lines = ["| workload | configuration | Accept-Encoding | req/s | server CPU µs/req | "
             "bytes per response | Redis MEMORY USAGE of the entry |",
             "|---|---|---|---|---|---|---|"]
    for workload in ("hits", "misses"):
        for name in (PLAIN, BR):
            s = summaries.get((name, 1, workload))
            if s is None:
                continue
            cpu = "" if s.cpu_us_per_request is None else f"{s.cpu_us_per_request:,.0f}"
            wire = "" if s.bytes_per_request is None else f"{s.bytes_per_request:,.0f}"
            entry = "" if s.entry_bytes is None else f"{s.entry_bytes:,}"
            lines.append(f"| {workload} | {name} | `{asked[name]}` | {s.rps:,.0f} | {cpu} | "
                         f"{wire} | {entry} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def _commands_table(summaries: Mapping[tuple[str, int, str], Summary]) -> str:
    lines = ["| configuration | workers | workload | commands per request | by command |",
             "|---|---|---|---|---|"]
    for s in sorted(summaries.values(), key=lambda s: (s.workers, s.workload)):
        if s.redis_commands_per_request is None:
            continue
        detail = ", ".join(f"{k} {v:.2f}" for k, v in s.redis_commands.items() if v >= 0.005)
        lines.append(f"| {s.config} | {s.workers} | {s.workload} | "
                     f"{s.redis_commands_per_request:.2f} | {detail} |")
    return "\n".join(lines)


def _growth_section(growth: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    keyspace = growth.get("keyspace")
    if keyspace:
        out += ["## How cost grows with the keyspace", "",
                f"Keys added with `DEBUG POPULATE`; the feed's key prefix is "
                f"`{keyspace.get('prefix', '?')}`.", "",
                "| keys | Redis DBSIZE | hit req/s | hit p50 ms | hit p99 ms | "
                "write p50 ms | write p95 ms | Redis usec per call (writes) |",
                "|---|---|---|---|---|---|---|---|"]
        for size in keyspace["sizes"]:
            hit = keyspace["hit"].get(str(size), {})
            inv = keyspace["invalidate"].get(str(size), {})
            usec = ", ".join(f"{k} {v}" for k, v in inv.get("redis_usec_per_call", {}).items())
            out.append(
                f"| {size:,} | {inv.get('dbsize', hit.get('dbsize', ''))} | "
                f"{hit.get('rps', 0):,.0f} | {hit.get('latency_ms', {}).get('p50', 0):.2f} | "
                f"{hit.get('latency_ms', {}).get('p99', 0):.2f} | "
                f"{inv.get('write_ms', {}).get('p50', 0):.2f} | "
                f"{inv.get('write_ms', {}).get('p95', 0):.2f} | {usec} |")
        out.append("")
    flood = growth.get("memory_flood")
    if flood:
        out += ["## Memory fallback under a flood of unique query strings", "",
                f"{flood['requests']:,} requests (every one a new cache key: a feed cursor) of "
                f"{flood['unique_query_strings']:,} planned, in "
                f"{flood['wrk']['duration_s']:.0f} s at most, against the memory-only service: RSS "
                f"{flood['rss_before_mib']} MiB before, {flood['rss_after_mib']} MiB after "
                f"(+{flood['rss_growth_mib']} MiB), {flood['errors']} errors.", ""]
        health = flood.get("health_cache")
        if health:
            out += [f"`/health/cache` afterwards: `{health}`", ""]
    return out


def _profile_section(profile: Mapping[str, Any] | None) -> list[str]:
    if not profile:
        return []
    if "error" in profile:
        return ["## Profile of the hit path", "", profile["error"], ""]
    out = ["## Profile of the hit path (py-spy, Redis cache, 1 worker, all hits)", "",
           f"{profile['request_samples']:,} samples inside request handling "
           f"(of {profile['samples']:,}); under the profiler the service did "
           f"{profile['wrk_under_profiler']['rps']:,.0f} req/s.", "",
           "| inclusive time by area | % of request samples |", "|---|---|"]
    out += [f"| {name} | {share} |" for name, share in profile["inclusive_by_area"]]
    out += ["", "| self time: function | % |", "|---|---|"]
    out += [f"| `{name}` | {share} |" for name, share in profile["self_top"]]
    return out + [""]


def markdown(*, summaries: Mapping[tuple[str, int, str], Summary], targets: list[Target],
             growth: Mapping[str, Any], profile: Mapping[str, Any] | None,
             meta: Mapping[str, Any]) -> str:
    machine = meta["machine"]
    lines = [
        "# Bench results", "",
        f"Run {meta['started']} with `{meta['command']}`: {meta['rounds']} interleaved rounds, "
        f"{meta['duration']:.0f} s per wrk run (`wrk -t1 -c64`; the mixed workload "
        f"`-t{meta['mixed_threads']} -c{meta['mixed_threads']}`, one connection per thread for "
        f"exact stale-read timing), after a {meta['warmup']:.0f} s warm-up each; database "
        f"{meta['seed']}. Commit `{machine['commit']}`.", "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB; "
        f"load average at start {meta['load_start']}, at end {meta['load_end']}. Other work on "
        "this machine shares its 2 cores (before each configuration the bench waits up to 15 s "
        "for the CPUs to be at most 35% busy; median busy share seen: "
        f"{meta.get('cpu_busy', 'n/a')}): "
        "compare ratios within this run, not absolute numbers.",
        "", "![latency and throughput](latest.png)", "",
        "## Targets", "", targets_table(targets), ""]
    for workload in ("hits", "misses", "mixed"):
        if any(s.workload == workload for s in summaries.values()):
            lines += [f"## {WORKLOAD_TITLES[workload]}", "", workload_table(summaries, workload),
                      ""]
    optional = (
        ("Uncached feed vs the raw asyncpg reference", raw_table(summaries),
         "`raw-asyncpg` (`bench/raw_app.py`) is a bare Sanic handler sending the feed's own "
         "statements (`models/feed.py`) to an asyncpg pool of the service's size and encoding "
         "the rows with orjson: the same bytes as the service's uncached feed, with no ORM, "
         "middleware or metrics. `hits` is the feed's first page, `misses` a new cursor on "
         "every request; both run uncached here."),
        ("What a miss adds, against the least a shared cache can do",
         miss_floor_table(summaries),
         "`raw-asyncpg-redis` is the raw reference behind a Redis `GET` of the query string "
         "before the query and a `SET` with a TTL after it (redis-py's asyncio client, "
         "hiredis, a pool of 16; `bench/raw_app.py --redis`): no generations, tags, record "
         "format, headers, compression or fallback. Its misses show what the two round trips "
         "of any shared cache cost by themselves."),
        ("Compression in the cache (hot tier, 1 worker)", compression_table(summaries),
         "`redis-hot-plain` stores bodies as they are (`CACHE_COMPRESS_MIN_BYTES` above "
         "`CACHE_MAX_BODY_BYTES`) and is asked without `Accept-Encoding`: the cache before "
         "compression. `redis-hot-br` stores bodies of at least 1 KiB brotli-encoded (the "
         "default) and is asked with `Accept-Encoding: gzip, br`, as browsers ask. Each keeps "
         "its entries under its own `CACHE_NAMESPACE` in the bench's Redis. Bytes per response "
         "are wrk's bytes read over responses (status line, headers and body); the entry's "
         "size is `MEMORY USAGE` of the feed's first page after the all-hits run."),
    )
    for title, table, note in optional:  # sections of configurations a run may leave out
        if table:
            lines += [f"## {title}", "", table, "", note, ""]
    lines += ["## Stale-read verification (mixed workload)", "", _stale_table(summaries), "",
              "Every read of a written post was compared with the last write acknowledged "
              "before the read was sent. A PATCH clears the feed, its author's list and the "
              "post itself, and the next read of each of those misses: with one write in 20 "
              "requests, a 95% hit rate leaves room for about one miss per write. With 2 "
              "workers each memory backend is its worker's own, and the pre-warm (one GET per "
              "URL) warms only the worker that served it.", ""]
    route_table = _route_misses_table(summaries)
    if route_table:
        lines += ["### Cache misses per write, by route (mixed workload, from `/metrics`)", "",
                  route_table, "",
                  "`/api/posts` covers the feed's pages (every PATCH clears all of them: a "
                  "page's posts are only known after its query ran) and the authors' lists.", ""]
    lines += _instances_section(summaries)
    lines += ["## Redis commands per request (`INFO commandstats`)", "",
              _commands_table(summaries), "",
              "`redis` runs with `CACHE_LOCAL=false` (every hit one `MGET`); `redis-hot` with "
              "the hot tier on (`CACHE_LOCAL=true`, the default): a hit the worker's tier "
              "serves sends no command; what remains is the invalidation channel's heartbeat "
              "(`ping`, one a second per worker) and the odd expiry. `redis-stopped` keeps the "
              "default; its Redis is stopped before the runs, so neither tier is in use.", ""]
    http = sorted((s for s in summaries.values() if s.http_requests_per_request is not None),
                  key=lambda s: (s.config, s.workers, s.workload))
    if http:
        lines += ["HTTP requests per request to the REST stand-in (each carries the commands "
                  "above; counted by the stand-in): " + ", ".join(
                      f"{s.config} {s.workload} {s.http_requests_per_request:.2f}"
                      for s in http) + ".", ""]
    hot = [s for s in summaries.values() if s.hot_hits is not None and s.workload == "hits"]
    if hot:
        lines += ["Hot-tier hits counted by `/health/cache` after the all-hits run (the "
                  "answering worker's count since it started, warm-up included; the largest of "
                  "the rounds): " + ", ".join(f"{s.workers} worker(s) {s.hot_hits:,}"
                                              for s in sorted(hot, key=lambda s: s.workers)),
                  ""]
    lines += _growth_section(growth)
    lines += _profile_section(profile)
    notes = meta.get("notes") or []
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["## Versions", "", "| component | version |", "|---|---|"]
    for group in ("service", "peer"):
        for name, version in (machine.get(group) or {}).items():
            lines.append(f"| {group}: {name} | {version} |")
    for name in ("python", "wrk", "redis_server", "postgresql", "kernel"):
        lines.append(f"| {name} | {machine.get(name, '')} |")
    return "\n".join(lines) + "\n"


def plot(summaries: Mapping[tuple[str, int, str], Summary], path: Path) -> None:
    """Throughput (top) and p50/p95/p99 (bottom) per configuration, one column per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = [w for w in ("hits", "misses", "mixed")
                 if any(s.workload == w for s in summaries.values())]
    fig, axes = plt.subplots(2, len(workloads), figsize=(6 * len(workloads), 9), squeeze=False)
    for col, workload in enumerate(workloads):
        rows = _sorted(summaries, workload)
        labels = [f"{s.config}\n{s.workers}w" for s in rows]
        xs = list(range(len(rows)))
        colors = ["#999999" if s.config in {"limit", "raw-asyncpg"}
                  else "#d98c3f" if s.config == "peer" else "#3b75af" for s in rows]
        top = axes[0][col]
        top.bar(xs, [s.rps for s in rows], color=colors)
        top.set_title(WORKLOAD_TITLES[workload].split(" (")[0] + ": requests/s")
        top.set_xticks(xs, labels, fontsize=7)
        top.grid(axis="y", alpha=0.3)
        bottom = axes[1][col]
        width = 0.27
        for i, p in enumerate(("p50", "p95", "p99")):
            bottom.bar([x + (i - 1) * width for x in xs], [s.latency_ms[p] for s in rows],
                       width, label=p)
        bottom.set_yscale("log")
        bottom.set_title("latency (ms, log scale)")
        bottom.set_xticks(xs, labels, fontsize=7)
        bottom.grid(axis="y", alpha=0.3)
        bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""The stale-windows bench's ``stale_windows.md``: targets, then per worker count what
stale-while-revalidate and stale-if-error did."""

from __future__ import annotations

from typing import Any

from bench.stale_windows_check import BOUNDARY_US, FIRST_SECONDS


def _lat(name: str, row: dict[str, Any]) -> str:
    caches = ", ".join(f"{k} {v:,}" for k, v in row["x_cache"].items()) or "none"
    return (f"| {name} | {row['count']:,} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
            f"{row['max_ms']:.2f} | {caches} | {row['errors']} |")


def _counters(stats: dict[str, dict[str, int]]) -> list[str]:
    return [f"| {pid} | " + " | ".join(str(v) for v in counters.values()) + " |"
            for pid, counters in stats.items()]


def _run(run: dict[str, Any]) -> list[str]:
    swr, wrk = run["swr"], run["wrk"]
    n = run["workers"]
    lines = [f"## {n} worker{'s' if n > 1 else ''}", "",
             "### stale-while-revalidate", "",
             f"wrk `-t{run['threads']} -c{run['threads']}`, paced to {run['rate']} requests/s, "
             f"{run['seconds']:.0f} s from just after the entries were stored until past the "
             f"feed's TTL ({wrk['requests']:,} requests, {wrk['rps']:.0f}/s, socket errors "
             f"{sum(v for k, v in wrk['errors'].items() if k != 'status')}). Latency of the "
             f"feed pages (the expiring route), split at each page's own expiry; a miss "
             f"(warming) took {run['miss_ms']['p50']:.1f} ms (p50), {run['miss_ms']['max']:.1f} "
             "ms (max).", "",
             "| feed answers | count | p50 ms | p99 ms | max ms | X-Cache | non-2xx |",
             "|---|---|---|---|---|---|---|",
             _lat("before the TTL", swr["before"]),
             _lat("after the TTL (all)", swr["after"]),
             _lat(f"first {FIRST_SECONDS:.0f} s after the TTL", swr["first"]), "",
             "Each page's first answer after its TTL that was not a fresh hit (without the "
             "stale window: the one that waits for the database): " + "; ".join(
                 f"{v['x_cache']} {v['latency_ms']:.2f} ms" for v in swr["first_per_key"].values())
             + ".", "",
             "Refreshes per key (every `SET` of the key Redis received during the load, by "
             "Redis connection: one per worker process):", ""]
    for url, clients in run["refreshes_per_key"].items():
        per = ", ".join(f"{c}: {k}" for c, k in clients.items()) or "none"
        lines.append(f"- `{url}`: {sum(clients.values())} ({per})")
    lines += ["", f"Stores of the (unexpired) posts during the load: "
              f"{run['post_stores_during_load']}.", "",
              "Each worker's `/health/cache` counters over the load:", "",
              "| pid | hits | misses | stale | stale_on_error | refreshes | refresh_failures "
              "| stores |", "|---|---|---|---|---|---|---|---|",
              *_counters(run["worker_stats"]), "",
              "### stale-if-error (PostgreSQL stopped)", ""]
    timing = run["outage_timing"]
    lines += [f"`pg_ctl stop -m fast` took {timing['pg_stop_s']:.2f} s; probes started "
              f"{timing['probes_from_stop_s']:.1f} s after it and took "
              f"{timing['probing_s']:.1f} s. After PostgreSQL was started again the edited post "
              f"answered {run['after_restart'].get('edited_post_status')} "
              f"(shows the edit: {run['after_restart'].get('shows_the_edit')}).", "",
              "Current routes must answer 200 with the body stored before (pre-write body "
              "served = requests); invalidated ones must not serve it (an error is expected: "
              "the handler cannot reach the database).", "",
              "| routes | URLs | requests | answers | statuses | errors (non-2xx, transport) | "
              "pre-write body served | p50 ms | max ms |", "|---|---|---|---|---|---|---|---|---|"]
    for group, g in run["outage"].items():
        kinds = ", ".join(f"{k} {v}" for k, v in g["kinds"].items())
        statuses = ", ".join(f"{k}: {v}" for k, v in g["statuses"].items())
        lines.append(f"| {group} | {g['urls']} | {g['probes']} | {kinds} | {statuses} | "
                     f"{g['client_errors']} | {g['served_before_write']} | {g['p50_ms']:.0f} | "
                     f"{g['max_ms']:.0f} |")
    lines += ["", "Each worker's `/health/cache` counters over the outage:", "",
              "| pid | hits | misses | stale | stale_on_error | refreshes | refresh_failures "
              "| stores |", "|---|---|---|---|---|---|---|---|",
              *_counters(run["outage_worker_stats"]), ""]
    return lines


def markdown(payload: dict[str, Any]) -> str:
    meta = payload["meta"]
    lines = [
        "# Stale windows", "",
        f"{meta['started']}, `{meta['command']}`, commit `{meta['machine']['commit']}`; "
        f"{meta['seed']}. The feed's TTL is {meta['feed_ttl']} s, `stale-while-revalidate` "
        f"{meta['stale_while_revalidate']} s, `stale-if-error` {meta['stale_if_error']} s "
        f"(`cache_rules.py`); `DATABASE_RETRY_SECONDS` {meta['database_retry_seconds']:g} "
        "(the default). Answers sent from "
        f"{BOUNDARY_US / 1e6:g} s before a page's computed expiry count as after it.", "",
        "\"Exactly one refresh per key\" is per worker process: the refresh lock is "
        "per process (`middleware/refresh.py`), so with N workers each worker that finds the "
        "entry stale before the first refresh is stored refreshes it once (1..N in all). "
        "Current routes during the outage: other authors' lists stored at the start (past "
        "the TTL and the revalidate window when probed: only `stale-if-error` can answer), "
        "about 20 s later (within the revalidate window: answered `STALE` at once, the "
        "background refresh fails) and two posts (fresh hits). Invalidated routes: the post "
        "the bench edited, its author's list and the feed pages, whose pre-write bodies were "
        "captured.", "",
        "| target | measured | required | met |", "|---|---|---|---|",
        *(f"| {t['name']} | {t['measured']} | {t['required']} | "
          f"{'yes' if t['met'] else '**no**'} |" for t in payload["targets"]), ""]
    for run in payload["runs"]:
        lines += _run(run)
    machine = meta["machine"]
    lines += [f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores, Python "
              f"{machine.get('python')}. Raw logs: `{meta['raw_dir']}`.", ""]
    return "\n".join(lines)

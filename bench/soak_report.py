"""The soak's ``soak.md``: targets, phases, what each restart did, resources over time."""

from __future__ import annotations

from typing import Any

from bench.soak_check import count_5xx


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) or "none"


def _phase_row(phase: dict[str, Any]) -> str:
    wrk, st = phase["wrk"], phase["stale"]
    c, lat = wrk["counts"], wrk["latency_ms"]
    socket = sum(v for k, v in wrk["errors"].items() if k != "status")
    return (f"| {phase['name']} | {phase['seconds']:.0f} | {wrk['requests']:,} | "
            f"{wrk['rps']:,.0f} | {lat['p50']:.2f} | {lat['p99']:.2f} | {lat['max']:.1f} | "
            f"{c.get('s2xx', 0):,} | {c.get('s4xx', 0)} | {c.get('s5xx', 0)} | {socket} | "
            f"{_pct(wrk['hit_rate'])} | {c.get('writes', 0):,} ({c.get('write_errors', 0)}) | "
            f"{st['reads_checked']:,} | {st['stale_reads']} |")


def _event(event: dict[str, Any], errors: dict[str, int]) -> list[str]:
    start, end = event["window"]
    lines = [f"**{event['name']}**: {event['action']}; took {event['down_s']:.2f} s; "
             + (f"first successful uncached read and write sent {event['recovered_after_s']:.2f}"
                " s after the restart began" if event["recovered_after_s"] is not None
                else "no successful uncached read and write seen after it")
             + f"; the window counted as this restart's: {end - start:.1f} s (to recovery + "
             "grace).", "",
             f"- wrk responses outside 2xx sent in the window, by status: {_counts(errors)} "
             f"({count_5xx({int(k): v for k, v in errors.items()})} 5xx)."]
    sent_at = event.get("wrk_5xx_sent_at_s") or []
    if sent_at:
        lines.append(f"- wrk 5xx (inside or after the window), sent at (s from the restart): "
                     f"{', '.join(f'{x:+.2f}' for x in sent_at[:40])}"
                     + (f" ... ({event.get('wrk_5xx_count', len(sent_at))} in all, the last "
                        f"sent at {event.get('wrk_5xx_last_s', sent_at[-1]):+.2f} s)"
                        if len(sent_at) > 40 else ""))
    for kind, span in event["outage_s"].items():
        answers = event["answers"].get(kind, {})
        seen = "; ".join(f"`{a[:140]}` x{n}" for a, n in answers.items()) or "none"
        failing = ("never failed" if span is None
                   else f"failed from {span[0]:+.2f} s to {span[1]:+.2f} s")
        lines.append(f"- probe `{kind}`: {failing}; answers in the window: {seen}")
    return lines + [""]


def markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    plan = meta["plan"]
    lines = [
        "# Soak", "",
        f"{meta['started']}, `{meta['command']}`, commit `{meta['machine']['commit']}`; "
        f"{meta['seed']}.", "",
        f"The service (`python app.py`, {meta['workers']} workers, Redis cache on the bench's "
        f"own redis-server) under wrk `lua/soak.lua` ({meta['threads']} connections, "
        + (f"paced to about {meta['rate']} requests/s ({meta['delay_ms']} ms between a "
           "connection's requests)" if meta["rate"] else "unpaced")
        + "): the bench's mixed workload (Zipf over every cached route, every 20th request a "
        "PATCH, each read of a written post checked for staleness).  Phases: warm-up "
        f"{plan['warmup_s']:.0f} s, then {meta['minutes']:g} minute(s) split 30/20/20/30% "
        f"into steady, Redis restart, PostgreSQL restart and steady-after; each restart "
        f"{plan['event_at_s']:.0f} s into its phase.  The baseline is taken after the warm-up "
        f"and {plan['settle_s']:.0f} s idle; the final snapshot after the load stopped and "
        f"{plan['settle_s']:.0f} s idle.", "",
        "| target | measured | required | met |", "|---|---|---|---|",
    ]
    lines += [f"| {t['name']} | {t['measured']} | {t['required']} | "
              f"{'yes' if t['met'] else '**no**'} |" for t in results["targets"]]
    lines += ["", "## Phases", "",
              "| phase | s | requests | req/s | p50 ms | p99 ms | max ms | 2xx | 4xx | 5xx "
              "| socket errors | hit rate | writes (failed) | reads checked | stale |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_phase_row(p) for p in results["phases"]]
    lines += ["", "## Restarts", "",
              "Probes (one thread each, a request every 50 ms): `health` = `GET /health`, "
              "`health-detailed` = `GET /health/detailed` (checks the database), "
              "`uncached-read` = the feed at a cursor never requested before (always a cache "
              "miss, so it needs PostgreSQL), `write` = `PATCH` of a post no wrk thread writes.  "
              "Times are relative to the moment the bench began the restart.", ""]
    windows = results["errors_by_window"]
    for event in results["events"]:
        lines += _event(event, {str(k): v for k, v in windows.get(event["name"], {}).items()})
    outside = {str(k): v for k, v in windows["outside"].items()}
    lines += [f"wrk responses outside 2xx outside every restart window: {_counts(outside)}.",
              "", "## Resources", "",
              "| snapshot | RSS MiB | open fds | processes | PostgreSQL connections | Redis "
              "clients |", "|---|---|---|---|---|---|"]
    for snap in results["snapshots"]:
        lines.append(f"| {snap['label']} | {snap['rss_mib']:.1f} | {snap['fds']} | "
                     f"{snap['processes']} | {_none(snap['pg_connections'])} | "
                     f"{_none(snap['redis_clients'])} |")
    tol = results["tolerance"]
    lines += ["", "RSS and fds: the service's processes summed (main process and workers, "
              "from /proc); PostgreSQL connections: `pg_stat_activity` rows for the database "
              "(not the bench's own); Redis clients: `INFO clients` `connected_clients` less "
              "the bench's own.  Tolerances, final vs baseline: RSS at most "
              f"+{tol['rss_mib']:.0f} MiB or +{100 * tol['rss_fraction']:.0f}% (whichever is "
              "larger: allocator arenas and size-capped caches settle a little higher; a leak "
              f"per request or per reconnect over minutes does not stay that small); fds "
              f"±{tol['fds']} and PostgreSQL connections ±{tol['pg']} (the pool opens "
              f"connections on demand, one fd each); Redis clients ±{tol['redis']} (one "
              "pipelined connection per worker, replaced, not added to, after a restart)."]
    if results["notes"]:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in results["notes"]]
    return "\n".join(lines) + "\n"


def _none(value: int | None) -> str:
    return "unreadable" if value is None else str(value)

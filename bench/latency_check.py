"""Latency check of a deployed service's cached routes: are hits really faster than misses?

    python -m bench.latency_check https://your-app.onrender.com [--samples 20] [--repeat 5]

For each route it requests a URL variant that is probably not cached yet (a ``limit`` value
drawn without replacement, so the first request is usually a miss), then repeats it (hits).
It prints p50/p95/p99 for first and repeated requests and by ``X-Cache`` value, and exits
non-zero when hits are not faster than misses (1) or when it could not tell (2: errors, or no
HIT or no MISS seen).  Standard library only: it runs anywhere Python 3.11 does.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.client import Client

DEFAULT_ROUTES = ("/api/posts", "/api/jobs", "/api/users/list", "/api/jobs/stats")
# Routes whose cache key takes a `limit` parameter: a new value is a new (cold) entry.
VARIABLE_ROUTES = ("/api/posts", "/api/jobs", "/api/users/list")


@dataclass(frozen=True)
class Sample:
    route: str
    phase: str  # "first" or "repeated"
    status: int
    x_cache: str
    ms: float


@dataclass
class Report:
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sequence."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-int(q * len(ordered)) // 100)))
    return ordered[rank - 1]


def describe(values: Sequence[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99)}


def breakdown(samples: Iterable[Sample]) -> dict[str, dict[str, int]]:
    """X-Cache values seen, per phase."""
    out: dict[str, dict[str, int]] = {}
    for s in samples:
        phase = out.setdefault(s.phase, {})
        phase[s.x_cache or "(none)"] = phase.get(s.x_cache or "(none)", 0) + 1
    return out


def verdict(report: Report) -> tuple[int, str]:
    """0 when hits are faster than misses (p50), 1 when not, 2 when it cannot tell."""
    if report.errors:
        return 2, f"{len(report.errors)} request(s) failed: {report.errors[0]}"
    hits = [s.ms for s in report.samples if s.x_cache == "HIT"]
    misses = [s.ms for s in report.samples if s.x_cache == "MISS"]
    if not hits or not misses:
        return 2, (f"need both HIT and MISS responses to compare, saw {len(hits)} HIT and "
                   f"{len(misses)} MISS (is the cache installed? is X-Cache exposed?)")
    hit_p50, miss_p50 = percentile(hits, 50), percentile(misses, 50)
    if hit_p50 < miss_p50:
        return 0, (f"OK: hits p50 {hit_p50:.1f} ms < misses p50 {miss_p50:.1f} ms "
                   f"({miss_p50 / hit_p50:.1f}x faster)")
    return 1, f"FAIL: hits p50 {hit_p50:.1f} ms is not below misses p50 {miss_p50:.1f} ms"


def _variant(route: str, value: int | None) -> str:
    if value is None:
        return route
    return f"{route}{'&' if '?' in route else '?'}limit={value}"


def run_check(base_url: str, *, routes: Sequence[str] = DEFAULT_ROUTES, samples: int = 20,
              repeat: int = 5, timeout: float = 10.0, seed: int | None = None) -> Report:
    """Measure ``samples`` first requests and ``samples * repeat`` repeats per route."""
    rng = random.Random(seed)
    report = Report()
    with Client(base_url, timeout=timeout) as client:
        for route in routes:
            limits: list[int | None]
            if route.split("?")[0] in VARIABLE_ROUTES:
                limits = list(rng.sample(range(1, 101), min(samples, 100)))
            else:
                limits = [None] * samples
            for value in limits:
                url = _variant(route, value)
                for i in range(repeat + 1):
                    phase = "first" if i == 0 else "repeated"
                    try:
                        reply = client.get(url)
                    except OSError as exc:
                        report.errors.append(f"GET {url}: {exc}")
                        break
                    if reply.status != 200:
                        report.errors.append(f"GET {url}: status {reply.status}")
                        break
                    report.samples.append(Sample(route, phase, reply.status, reply.x_cache,
                                                 reply.seconds * 1000))
    return report


def summary(report: Report) -> dict[str, Any]:
    by_phase = {phase: describe([s.ms for s in report.samples if s.phase == phase])
                for phase in ("first", "repeated")}
    by_cache = {value: describe([s.ms for s in report.samples if s.x_cache == value])
                for value in sorted({s.x_cache for s in report.samples})}
    routes = {route: {phase: describe([s.ms for s in report.samples
                                       if s.route == route and s.phase == phase])
                      for phase in ("first", "repeated")}
              for route in dict.fromkeys(s.route for s in report.samples)}
    code, message = verdict(report)
    return {"by_phase": by_phase, "by_x_cache": by_cache, "x_cache_breakdown":
            breakdown(report.samples), "routes": routes, "errors": report.errors,
            "exit_code": code, "verdict": message}


def _row(name: str, stats: dict[str, Any]) -> str:
    if not stats.get("n"):
        return f"  {name:<28} n=0"
    return (f"  {name:<28} n={stats['n']:<5} p50 {stats['p50']:7.1f} ms  "
            f"p95 {stats['p95']:7.1f} ms  p99 {stats['p99']:7.1f} ms")


def render(result: dict[str, Any]) -> str:
    lines = ["First (usually a miss) and repeated (usually a hit) requests:"]
    lines += [_row(phase, stats) for phase, stats in result["by_phase"].items()]
    lines.append("By X-Cache:")
    lines += [_row(value or "(none)", stats) for value, stats in result["by_x_cache"].items()]
    lines.append("Per route:")
    for route, phases in result["routes"].items():
        lines += [_row(f"{route} {phase}", stats) for phase, stats in phases.items()]
    lines.append(f"X-Cache breakdown: {result['x_cache_breakdown']}")
    lines.append(result["verdict"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base_url", help="e.g. https://your-app.onrender.com")
    parser.add_argument("--routes", nargs="+", default=list(DEFAULT_ROUTES))
    parser.add_argument("--samples", type=int, default=20, help="fresh URLs per route")
    parser.add_argument("--repeat", type=int, default=5, help="repeats of each URL")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    if args.samples < 1 or args.repeat < 1:
        parser.error("--samples and --repeat must be at least 1")
    result = summary(run_check(args.base_url, routes=args.routes, samples=args.samples,
                               repeat=args.repeat, timeout=args.timeout))
    print(json.dumps(result, indent=1) if args.json else render(result))
    return int(result["exit_code"])


if __name__ == "__main__":
    sys.exit(main())

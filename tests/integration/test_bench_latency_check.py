"""The deployed-URL latency check against the real service (memory cache) on a loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from app import create_app
from bench.latency_check import main, run_check, summary
from bench.limit_app import create_limit_app
from settings import Settings
from tests.server import running


async def test_first_requests_miss_and_repeats_hit(
        make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings())
    async with running(app) as client:
        base = str(client.base_url)
        report = await asyncio.to_thread(
            run_check, base, routes=["/api/posts", "/api/jobs/stats"], samples=3, repeat=2,
            seed=1)
        result = summary(report)
    assert report.errors == []
    assert len(report.samples) == 2 * 3 * (1 + 2)
    assert all(s.status == 200 for s in report.samples)
    # A fresh `limit` per sample: every first request of the feed misses, every repeat hits.
    feed = [s for s in report.samples if s.route == "/api/posts"]
    assert {s.x_cache for s in feed if s.phase == "first"} == {"MISS"}
    assert {s.x_cache for s in feed if s.phase == "repeated"} == {"HIT"}
    # The stats route has no parameter to vary: only its very first request can miss.
    stats = [s.x_cache for s in report.samples if s.route == "/api/jobs/stats"]
    assert stats[0] == "MISS" and set(stats[1:]) == {"HIT"}
    assert result["x_cache_breakdown"] == {"first": {"MISS": 4, "HIT": 2},
                                           "repeated": {"HIT": 12}}
    # Whatever the timings, the exit code is the verdict on the numbers printed.
    hit_p50 = result["by_x_cache"]["HIT"]["p50"]
    miss_p50 = result["by_x_cache"]["MISS"]["p50"]
    assert result["exit_code"] == (0 if hit_p50 < miss_p50 else 1)


async def test_a_service_without_x_cache_cannot_be_judged(capsys: object) -> None:
    # The bench's bare Sanic reference: fast, but it says nothing about a cache.
    app = create_limit_app(b'{"items": [], "next_cursor": null}')
    async with running(app) as client:
        code = await asyncio.to_thread(main, [str(client.base_url), "--routes", "/api/posts",
                                              "--samples", "2", "--repeat", "1"])
    assert code == 2
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "need both HIT and MISS" in out

"""Summarising py-spy's collapsed stacks of the hit path."""

from __future__ import annotations

import pytest

from bench.profile import area_of, parse_frame, summarise

WORKER = 'process 42:"python app.py";run (sanic/server.py:10);handle_request (handle_request:20)'
RAW = "\n".join([
    # 6 samples in the cache's request hook, below Sanic's (compiled) request handling
    WORKER + ";on_request (middleware/sanic.py:30);lookup (middleware/cache.py:40) 6",
    # 3 samples in redis-py under the cache
    WORKER + ";on_request (middleware/sanic.py:30);execute_command (redis/asyncio/client.py:50) 3",
    # 1 sample in Sanic itself
    WORKER + " 1",
    # start-up, outside request handling: counted in samples, not in shares
    'process 41:"python app.py";<module> (app.py:1);import_module (importlib/__init__.py:2) 7',
    # multiprocessing's manager has a handle_request of its own: not a request
    "serve_client (multiprocessing/managers.py:1);Server.handle_request "
    "(multiprocessing/managers.py:2);_recv (multiprocessing/connection.py:3) 3",
    "garbage line without a count",
])


def test_parse_frame() -> None:
    assert parse_frame("lookup (middleware/cache.py:40)") == ("lookup", "middleware/cache.py")
    assert parse_frame("<module> (app.py)") == ("<module>", "app.py")
    assert parse_frame("weird") == ("weird", "")


@pytest.mark.parametrize("path, area", [
    ("/x/site-packages/sanic/app.py", "sanic"),
    ("/x/site-packages/sanic_routing/router.py", "sanic routing"),
    ("/work/main/middleware/cache.py", "cache middleware"),
    ("/x/redis/asyncio/client.py", "redis-py"),
    ("/x/json/__init__.py", None),
])
def test_area_of(path: str, area: str | None) -> None:
    assert area_of(path) == area


def test_summarise_keeps_request_samples_and_ranks_self_time() -> None:
    summary = summarise(RAW)
    assert summary["samples"] == 20
    assert summary["request_samples"] == 10
    assert summary["self_top"][0] == ("lookup (cache.py)", 60.0)
    assert dict(summary["self_top"])["execute_command (client.py)"] == 30.0
    by_area = dict(summary["inclusive_by_area"])
    assert by_area["sanic"] == 100.0
    assert by_area["cache middleware"] == 90.0
    assert by_area["redis-py"] == 30.0

"""The soak (``bench/soak.py``) as a test: mixed load with a Redis and a PostgreSQL restart.

Deselected by default (setup.cfg: ``-m "not soak"``); run it with

    .venv/bin/python -m pytest -m soak tests/integration/test_soak.py      # 1 minute of load
    SOAK_MINUTES=10 .venv/bin/python -m pytest -m soak tests/integration/test_soak.py

It needs wrk, redis-server and PostgreSQL's initdb/pg_ctl (it starts its own cluster on a free
port).  ``SOAK_STRICT_5XX=1`` also fails on 5xx inside the PostgreSQL restart window (what the
service answers while the database restarts is in the results file either way).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import soak

pytestmark = [pytest.mark.soak, pytest.mark.slow]


def test_soak_with_redis_and_postgres_restarts(tmp_path: Path) -> None:
    minutes = os.environ.get("SOAK_MINUTES", "1")
    code = soak.main(["--quick", "--minutes", minutes, "--out", str(tmp_path)])
    results = json.loads((tmp_path / "soak.json").read_text())
    targets = {t["name"]: t for t in results["targets"]}

    stale = targets["stale reads (every phase)"]
    assert stale["met"], stale
    assert sum(p["stale"]["reads_checked"] for p in results["phases"]) > 1000
    assert targets["5xx outside the restart windows"]["met"], results["errors_by_window"]
    assert targets["5xx inside the redis restart window"]["met"], results["errors_by_window"]
    assert targets["wrk socket errors in the steady phases"]["met"]
    for check in results["checks"]:
        assert check["ok"], check
    # Both restarts happened, and the service served again after each.
    events = {e["name"]: e for e in results["events"]}
    assert set(events) == {"redis restart", "postgres restart"}
    for event in events.values():
        assert event["recovered_after_s"] is not None, event
    after = next(p for p in results["phases"] if p["name"] == "steady-after")
    assert after["wrk"]["hit_rate"] > 0.5  # the cache is back in use after Redis came back
    if os.environ.get("SOAK_STRICT_5XX") == "1":
        assert targets["5xx inside the postgres restart window"]["met"], events
        assert code == 0

"""``python app.py`` as users start it: the listen backlog, refusing to start without
SECRET_KEY on a real database, one warning per setting that does nothing, /metrics's token."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app import create_app
from settings import Settings
from tests.app_process import clean_env, service
from tests.server import free_port, running

ROOT = Path(__file__).resolve().parents[2]


def _listen_backlog(port: int) -> int:
    """The backlog of the socket listening on ``port`` (``ss`` shows it as Send-Q)."""
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout
    return int(out.split()[2])


@pytest.mark.slow
def test_backlog_setting_and_warnings_reach_the_running_service(tmp_path: Path) -> None:
    with service(tmp_path, WORKERS="2", BACKLOG="777", REDIS_POOL_SIZE="10",
                 REDIS_POOL_TIMEOUT="5.0", CACHE_MEMORY_MAX_ENTRY="100") as (base, log_path):
        port = int(base.rsplit(":", 1)[1])
        somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
        assert _listen_backlog(port) == min(777, somaxconn)
        log = log_path.read_text()
    # One line each, from the main process (not one per worker).
    assert log.count("REDIS_POOL_SIZE is set but has no effect") == 1
    assert log.count("REDIS_POOL_TIMEOUT is set but has no effect") == 1
    assert log.count("CACHE_MEMORY_MAX_ENTRY is set but is not a setting of this service; "
                     "did you mean CACHE_MEMORY_MAX_ENTRIES?") == 1


@pytest.mark.slow
def test_the_default_backlog_is_not_sanics_100(tmp_path: Path) -> None:
    with service(tmp_path) as (base, _):
        backlog = _listen_backlog(int(base.rsplit(":", 1)[1]))
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert backlog == min(Settings().backlog, somaxconn) and backlog > 100


def test_a_real_database_without_secret_key_refuses_to_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env=clean_env(PORT=str(free_port()), DATABASE_URL="postgres://u:pw@127.0.0.1:1/db"))
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DATABASE_URL is not the embedded SQLite default" \
        in result.stderr + result.stdout
    assert "pw" not in (result.stderr + result.stdout).replace("password", "")


def test_scripts_serve_defaults_need_no_settings(tmp_path: Path) -> None:
    """The embedded default (what scripts/serve runs) starts with nothing set."""
    with service(tmp_path) as (base, log_path):
        assert httpx.get(f"{base}/api/posts", timeout=5).status_code == 200
    assert "SECRET_KEY is not set: using a random development key" in log_path.read_text()


async def test_metrics_token_guards_metrics_only(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(metrics_token="scrape-me-0123"))
    async with running(app) as client:
        assert (await client.get("/metrics")).status == 401
        wrong = await client.get("/metrics", headers={"authorization": "Bearer nope"})
        assert wrong.status == 401 and wrong.json["error"]["status"] == 401
        ok = await client.get("/metrics", headers={"authorization": "Bearer scrape-me-0123"})
        assert ok.status == 200 and "http_requests_total" in ok.text
        assert (await client.get("/health")).status == 200  # nothing else needs it
        assert (await client.get("/api/posts")).status == 200


async def test_metrics_are_open_without_a_token(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings())
    async with running(app) as client:
        assert (await client.get("/metrics")).status == 200

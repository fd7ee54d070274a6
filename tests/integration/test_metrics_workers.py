"""``/metrics`` of the real service running 2 Sanic workers (the Dockerfile's command).

The service runs as a subprocess, ``sanic app:create_app --factory --workers 2`` on a free
loopback port with a temporary SQLite database; requests on fresh connections are spread over
both workers by the kernel, and one scrape (answered by either worker) must account for all.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from handlers.metrics import FLUSH_SECONDS
from tests.server import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


class Service:
    def __init__(self, proc: subprocess.Popen[str], base_url: str, log_path: Path) -> None:
        self.proc, self.base_url, self.log_path = proc, base_url, log_path

    @property
    def log(self) -> str:
        return self.log_path.read_text()


def _stop(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise
    return proc.returncode


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workers")


@pytest.fixture(scope="module")
def multiproc_dir(tmp_dir: Path) -> Path:
    """A configured PROMETHEUS_MULTIPROC_DIR holding a stale counter from a "previous run"."""
    directory = tmp_dir / "prometheus"
    directory.mkdir()
    stale = MmapedDict(str(directory / "counter_999999.db"))
    stale.write_value(mmap_key("http_requests_total", "http_requests_total",
                               ("method", "route", "status"), ("GET", "/health", "200"),
                               "HTTP requests"), 1000.0, 0.0)
    stale.close()
    return directory


@pytest.fixture(scope="module")
def service(tmp_dir: Path, multiproc_dir: Path) -> Iterator[Service]:
    """The service with 2 workers, shared by this module's tests (the last one stops it)."""
    port = free_port()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("REDIS_", "PROMETHEUS_"))}
    env.update(DATABASE_URL=f"sqlite://{tmp_dir}/service.sqlite3",
               SECRET_KEY="test-secret-key-0123456789abcdef",
               PROMETHEUS_MULTIPROC_DIR=str(multiproc_dir),
               PYTHONPATH=str(ROOT))
    log_path = tmp_dir / "service.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "sanic"), "app:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text()
            # Both workers ready (Sanic's shutdown hangs on a SIGTERM while one still starts).
            if log_path.read_text().count("Worker ready") == 2:
                try:
                    if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
            assert time.monotonic() < deadline, "service did not start:\n" + log_path.read_text()
            time.sleep(0.2)
        yield Service(proc, base_url, log_path)
    finally:
        _stop(proc)


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value)
            for family in text_string_to_metric_families(text) for s in family.samples]


async def test_scrape_counts_requests_served_by_both_workers(service: Service) -> None:
    sent = 0
    scrapes = 0
    per_pid: dict[str, float] = {}
    # No keep-alive: every request is a new connection, accepted by whichever worker is free.
    limits = httpx.Limits(max_keepalive_connections=0, max_connections=16)
    async with httpx.AsyncClient(base_url=service.base_url, limits=limits, timeout=10) as http:
        # The readiness probes already hit /health: count from here, once every worker wrote
        # its tallied samples (each does so every FLUSH_SECONDS).
        await asyncio.sleep(FLUSH_SECONDS + 0.5)
        baseline = samples((await http.get("/metrics")).text)
        scrapes += 1
        for _ in range(30):
            responses = await asyncio.gather(*(http.get("/health") for _ in range(16)))
            assert all(r.status_code == 200 for r in responses)
            sent += len(responses)
            scrape = await http.get("/metrics")
            scrapes += 1
            per_pid = {labels["pid"]: value for name, labels, value in samples(scrape.text)
                       if name == "http_worker_requests"}
            if len(per_pid) == 2 and all(per_pid.values()):
                break
        await asyncio.sleep(FLUSH_SECONDS + 0.5)
        final = await http.get("/metrics")
    assert len(per_pid) == 2 and all(per_pid.values()), f"one worker served all: {per_pid}"
    parsed = samples(final.text)

    def health(name: str, scraped: list[tuple[str, dict[str, str], float]]) -> float:
        (count,) = [value for sample, labels, value in scraped if sample == name
                    and labels == {"method": "GET", "route": "/health", "status": "200"}]
        return count

    # The stale file's 1000 from a "previous run" was removed at start-up.
    assert 1 <= health("http_requests_total", baseline) < 20
    # Merged over both workers' files: every request sent is counted exactly once.
    assert health("http_requests_total", parsed) == \
        health("http_requests_total", baseline) + sent
    assert health("http_request_duration_seconds_count", parsed) == \
        health("http_request_duration_seconds_count", baseline) + sent
    worker_total = sum(value for name, _, value in parsed if name == "http_worker_requests")
    baseline_total = sum(value for name, _, value in baseline if name == "http_worker_requests")
    assert worker_total == baseline_total + sent + scrapes  # earlier scrapes were counted too
    pids = set(re.findall(r"Starting worker \[(\d+)\]", service.log))
    assert set(per_pid) == pids


def test_clean_stop_and_one_log_line_per_event(service: Service) -> None:
    assert _stop(service.proc) == 0
    lines = service.log.splitlines()
    line_format = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [A-Z]+ [\w.]+: ")
    assert all(line_format.match(line) for line in lines), service.log
    assert sum("Database connected: SQLite (" in line for line in lines) == 2
    assert sum("Starting worker" in line for line in lines) == 2
    # Each event once: no line is repeated by a second handler.
    assert len([line for line in lines if "Goin' Fast" in line]) == 1

"""The service in a subprocess, as users start it (``python app.py``, ``uvicorn asgi:app``),
for the tests that need the real entry point (listen backlog, start-up warnings, several
workers, several instances, an ASGI server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.server import free_port

ROOT = Path(__file__).resolve().parents[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the service's own settings, plus ``extra``."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("REDIS_", "CACHE_", "PROMETHEUS_", "DATABASE_", "SECRET_",
                                  "UPSTASH_"))}
    env.update(PYTHONPATH=str(ROOT), HOST="127.0.0.1", **extra)
    return env


@dataclass(frozen=True)
class Running:
    """A started service process: its base URL, its combined stdout/stderr log, the process."""

    base: str
    log_path: Path
    proc: subprocess.Popen[str]


@contextmanager
def launch(argv: Sequence[str], tmp_path: Path, name: str = "service", *,
           ready: tuple[str, ...] = (), started: str = "Worker ready",
           **extra: str) -> Iterator[Running]:
    """``python *argv`` on a free port (``PORT``, and ``{port}`` in ``argv``); yields once the
    log shows ``started`` and each of ``ready`` once per worker and ``/health`` answers. Stops
    it with SIGTERM (SIGKILL after 30 s) unless the test already did."""
    port = free_port()
    log_path = tmp_path / f"{name}.log"
    extra.setdefault("DATABASE_URL", f"sqlite://{tmp_path}/{name}.sqlite3")
    env = clean_env(PORT=str(port), **extra)
    args = [sys.executable, *(arg.format(port=port) for arg in argv)]
    with log_path.open("w") as log:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    workers = int(extra.get("WORKERS", "1"))
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log_path.read_text()
            text = log_path.read_text()
            if all(text.count(marker) >= workers for marker in (started, *ready)):
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
            assert time.monotonic() < deadline, text
            time.sleep(0.2)
        yield Running(base, log_path, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@contextmanager
def service(tmp_path: Path, name: str = "service", *, ready: tuple[str, ...] = (),
            **extra: str) -> Iterator[tuple[str, Path]]:
    """``python app.py`` on a free port; yields (base URL, log path) once every worker logged
    "Worker ready" (and each of ``ready`` once per worker) and ``/health`` answers."""
    with launch(("app.py",), tmp_path, name, ready=ready, **extra) as running:
        yield running.base, running.log_path

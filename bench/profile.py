"""Profile the service's hit path with py-spy and summarise where the time goes.

py-spy launches the service (``py-spy record --subprocesses -- python app.py``): attaching to a
running worker by pid needs ptrace rights that containers often withhold, launching does not.
The summary keeps only samples taken while a request was being handled.
"""

from __future__ import annotations

import logging
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.client import Client
from bench.configs import ROOT, Config, service_env
from bench.procs import Server, free_port
from bench.wrk import run_wrk

log = logging.getLogger(__name__)

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::\d+)?\)$")
AREAS = (("middleware/", "cache middleware"), ("handlers/", "handlers"),
         ("sanic_ext/", "sanic-ext"), ("sanic_routing/", "sanic routing"), ("sanic/", "sanic"),
         ("redis/", "redis-py"), ("tortoise/", "tortoise"), ("pypika", "pypika"),
         ("asyncpg/", "asyncpg"), ("asyncio/", "asyncio"), ("observability/", "observability"),
         ("prometheus_client/", "prometheus-client"))
# Sanic compiles its request path at start-up, so these frames carry their own name as the file
# ("handle_request (handle_request:84)"); multiprocessing's manager has a handle_request too.
REQUEST_FRAMES = ("handle_request (handle_request", "http1_request_header (http1_request_header",
                  "http1_response_header (http1_response_header", "_run_request_middleware (",
                  "_run_response_middleware (")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise RuntimeError("py-spy is missing: pip install -r bench/requirements.txt")
    return found


def parse_frame(frame: str) -> tuple[str, str]:
    """``func (path/file.py:12)`` -> ``("func", "path/file.py")``."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip(), ""
    return match["func"], match["file"]


def area_of(path: str) -> str | None:
    for marker, name in AREAS:
        if marker in path:
            return name
    return None


def summarise(raw: str, top: int = 15) -> dict[str, Any]:
    """Self time per function and inclusive time per area, over request-handling samples."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = request_samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        # py-spy --subprocesses starts each stack with a `process <pid>:"<cmdline>"` frame.
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        if not any(f.startswith(REQUEST_FRAMES) for f in frames):
            continue
        request_samples += count
        func, path = parse_frame(frames[-1])
        self_time[f"{func} ({Path(path).name})"] += count
        for area in {area_of(parse_frame(f)[1]) for f in frames} - {None}:
            inclusive[str(area)] += count

    def share(n: int) -> float:
        return round(100.0 * n / request_samples, 1) if request_samples else 0.0

    return {"samples": total, "request_samples": request_samples,
            "self_top": [(name, share(n)) for name, n in self_time.most_common(top)],
            "inclusive_by_area": [(name, share(n)) for name, n in inclusive.most_common()]}


def profile_hits(*, database_url: str, redis_url: str, hits_paths: Path, log_dir: Path,
                 out_dir: Path, duration: float) -> dict[str, Any]:
    """Record the 1-worker Redis-backed service while wrk runs the all-hits workload."""
    port = free_port()
    raw_file = out_dir / "profile-hits.txt"
    config = Config("redis", "service", 1, "redis")
    env = service_env(config, port=port, database_url=database_url, redis_url=redis_url)
    record_for = int(duration + 25)  # start-up, warm-up and the measured run
    argv = [py_spy(), "record", "--subprocesses", "--nonblocking", "-r", "250",
            "-d", str(record_for), "-f", "raw", "-o", str(raw_file), "--",
            sys.executable, "app.py"]
    server = Server("profile-redis-1w", argv, port=port, env=env, log_dir=log_dir, cwd=ROOT,
                    ready_path="/health")
    with server:
        with Client(server.base_url) as client:
            client.get(hits_paths.read_text().strip())
            client.get(hits_paths.read_text().strip())
        result = run_wrk(server.base_url, "paths", duration=duration,
                         env={"BENCH_PATHS": str(hits_paths)})
        # py-spy writes its file when its duration ends; wait for it before stopping.
        deadline = time.monotonic() + record_for + 30
        while not raw_file.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1)
    if not raw_file.exists():
        return {"error": f"py-spy wrote no profile; see {server.log_path}",
                "wrk": result.as_dict()}
    summary = summarise(raw_file.read_text())
    summary["wrk_under_profiler"] = {"rps": result.rps, "p99_ms": result.latency_ms["p99"]}
    summary["raw_file"] = str(raw_file)
    return summary

"""Cold start of the serverless entry point: what a new Lambda container pays.

    python -m bench.cold_start --redis-url redis://127.0.0.1:6379/0 [--runs 5]
        [--database-url sqlite:///tmp/cold.sqlite3] [--path /api/posts]

Each run is a fresh Python process, as a new container is: it imports ``serverless`` (the
init phase: Sanic, Tortoise, the app built), then invokes ``serverless.handler`` with an API
Gateway v2 event three times: the first invocation starts the app (database pool and schema
check, Redis connection and its restart check) and serves the request, the next two are warm.
The process start (interpreter, before the import) is the wall time the parent saw minus what
the child measured. The database's schema is created by a warm-up run that is not counted.
Prints p50 and max per phase in milliseconds, wall time and this process's CPU time (the
steadier figure on a shared machine; Lambda gives a function CPU in proportion to its memory).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import asyncio, json, sys, time
started, cpu_started = time.perf_counter(), time.process_time()
import serverless
imported, cpu_imported = time.perf_counter(), time.process_time()

def event(path):
    return {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": {"host": "bench.lambda-url.eu-west-1.on.aws"},
            "requestContext": {"http": {"method": "GET", "path": path, "protocol": "HTTP/1.1",
                                        "sourceIp": "203.0.113.7", "userAgent": "bench"},
                               "requestId": "bench", "stage": "$default"},
            "body": None, "isBase64Encoded": False}

times, cpu, caches = [], [], []
for _ in range(3):
    before, cpu_before = time.perf_counter(), time.process_time()
    answer = serverless.handler(event(sys.argv[1]), None)
    times.append(time.perf_counter() - before)
    cpu.append(time.process_time() - cpu_before)
    assert answer["statusCode"] == 200, answer
    caches.append(answer["headers"].get("x-cache"))
print(json.dumps({"child": time.perf_counter() - started, "import": imported - started,
                  "first": times[0], "warm": times[1:], "x_cache": caches,
                  "import_cpu": cpu_imported - cpu_started, "first_cpu": cpu[0],
                  "warm_cpu": cpu[1:]}), flush=True)
# Lambda kills a container; a process that exits must close the app (aiosqlite's thread
# would otherwise keep the interpreter from exiting).
asyncio.get_event_loop().run_until_complete(serverless.app.stop())
"""

PHASES = ("process", "import", "first", "warm")


def run_once(env: dict[str, str], path: str) -> dict[str, float | list[str]]:
    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, path], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    wall = time.perf_counter() - began
    proc.wait(timeout=60)
    child = json.loads(line)
    return {"process": wall - child["child"], "import": child["import"],
            "first": child["first"], "warm": min(child["warm"]), "x_cache": child["x_cache"],
            "import_cpu": child["import_cpu"], "first_cpu": child["first_cpu"],
            "warm_cpu": min(child["warm_cpu"])}


def child_env(redis_url: str, database_url: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("REDIS_", "CACHE_", "PROMETHEUS_", "DATABASE_", "SECRET_"))}
    env.update(PYTHONPATH=str(ROOT), REDIS_URL=redis_url, DATABASE_URL=database_url,
               SECRET_KEY="bench-secret-key-0123456789abcdef", CACHE_NAMESPACE="coldbench",
               LOG_LEVEL="WARNING")
    return env


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--database-url", default=None,
                        help="default: a SQLite file in a temporary directory")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--path", default="/api/posts")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        env = child_env(args.redis_url, args.database_url or f"sqlite://{tmp}/cold.sqlite3")
        run_once(env, args.path)  # creates the schema; not counted
        runs = [run_once(env, args.path) for _ in range(args.runs)]
    print(f"{'phase':<36} {'p50 ms':>8} {'max ms':>8} {'CPU p50 ms':>11}")
    labels = {"process": "interpreter start", "import": "import serverless (init phase)",
              "first": "first invocation (start + request)", "warm": "warm invocation"}
    for phase in PHASES:
        values = [float(run[phase]) * 1000 for run in runs]  # type: ignore[arg-type]
        cpu = [float(run[f"{phase}_cpu"]) * 1000 for run in runs  # type: ignore[arg-type]
               if f"{phase}_cpu" in run]
        cpu_text = f"{median(cpu):>11.1f}" if cpu else f"{'':>11}"
        print(f"{labels[phase]:<36} {median(values):>8.1f} {max(values):>8.1f} {cpu_text}")
    total = [sum(float(run[p]) for p in ("process", "import", "first")) * 1000  # type: ignore
             for run in runs]
    print(f"{'cold start total':<36} {median(total):>8.1f} {max(total):>8.1f}")
    print("X-Cache per run:", " ".join("/".join(run["x_cache"]) for run in runs))  # type: ignore
    return 0


if __name__ == "__main__":
    sys.exit(main())

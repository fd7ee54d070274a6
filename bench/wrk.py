"""Drive load with wrk and parse what its Lua ``done()`` prints.

wrk (the Debian package) is a compiled load generator: a Python client cannot saturate a server
on a 2-core machine.  Each bench script is ``lua/common.lua`` (counters and the JSON ``done()``)
followed by one workload script; the result is one ``BENCH_JSON {...}`` line on stdout.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LUA_DIR = Path(__file__).resolve().parent / "lua"
MARKER = "BENCH_JSON "


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed no result line."""


def ensure_wrk() -> str:
    """The path of wrk, installing the Debian package first when it is missing (as root)."""
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise WrkError("wrk is not installed: `apt-get install wrk` (Debian/Ubuntu)")
    log.info("Installing wrk with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
    path = shutil.which("wrk")
    if not path:
        raise WrkError("apt-get installed wrk but it is not on PATH")
    return path


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles (ms), errors and response counters."""

    requests: int
    duration_s: float
    latency_ms: dict[str, float]
    errors: dict[str, int]
    counts: dict[str, int] = field(default_factory=dict)
    bytes_read: int = 0
    """Bytes wrk read from the server (``summary.bytes``): status lines, headers and bodies."""

    @property
    def bytes_per_request(self) -> float | None:
        """Bytes on the wire per response, headers included; None when nothing was read."""
        return self.bytes_read / self.requests if self.requests and self.bytes_read else None

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def socket_errors(self) -> int:
        return sum(v for k, v in self.errors.items() if k != "status")

    @property
    def non_2xx(self) -> int:
        """Responses outside 2xx (counted by the Lua ``response()``), else wrk's >= 400 count."""
        if self.counts:
            return sum(self.counts.get(k, 0) for k in ("s3xx", "s4xx", "s5xx"))
        return self.errors.get("status", 0)

    @property
    def error_total(self) -> int:
        """Socket errors, timeouts and non-2xx responses together."""
        return self.socket_errors + self.non_2xx

    @property
    def hit_rate(self) -> float | None:
        """HIT / (HIT + MISS) over responses carrying X-Cache; None when none did."""
        hits, misses = self.counts.get("hit", 0), self.counts.get("miss", 0)
        return hits / (hits + misses) if hits + misses else None

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "duration_s": self.duration_s, "rps": self.rps,
                "latency_ms": self.latency_ms, "errors": self.errors, "counts": self.counts,
                "non_2xx": self.non_2xx, "error_total": self.error_total,
                "hit_rate": self.hit_rate, "bytes": self.bytes_read,
                "bytes_per_request": self.bytes_per_request}


def parse_output(stdout: str) -> WrkResult:
    """Read the ``BENCH_JSON`` line printed by ``lua/common.lua``'s ``done()``."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER):])
            break
    else:
        raise WrkError("wrk printed no BENCH_JSON line:\n" + stdout[-2000:])
    latency = {k: v / 1000.0 for k, v in data["latency_us"].items()}
    return WrkResult(requests=int(data["requests"]), duration_s=data["duration_us"] / 1e6,
                     latency_ms=latency, errors={k: int(v) for k, v in data["errors"].items()},
                     counts={k: int(v) for k, v in data.get("counts", {}).items()},
                     bytes_read=int(data.get("bytes", 0)))


def script_text(workload: str) -> str:
    """``common.lua`` followed by ``<workload>.lua``."""
    return (LUA_DIR / "common.lua").read_text() + "\n" + (LUA_DIR / f"{workload}.lua").read_text()


def run_wrk(url: str, workload: str, *, duration: float, threads: int = 1, connections: int = 64,
            env: Mapping[str, str] | None = None, timeout_s: int = 10,
            extra_args: Sequence[str] = (),
            preexec_fn: Callable[[], None] | None = None) -> WrkResult:
    """Run ``wrk`` with the named Lua workload against ``url`` and return its parsed result.

    ``extra_args`` go on wrk's command line (e.g. ``--latency``); ``preexec_fn`` runs in the
    child before exec (e.g. raising its open-file limit for thousands of connections)."""
    wrk = ensure_wrk()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix=f"bench-{workload}-",
                                     delete=False) as script:
        script.write(script_text(workload))
    try:
        argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
                f"--timeout={timeout_s}s", *extra_args, "-s", script.name, url]
        run_env = {**os.environ, "BENCH_THREADS": str(threads), **(env or {})}
        proc = subprocess.run(argv, capture_output=True, text=True, env=run_env,  # noqa: S603
                              timeout=duration + 60, preexec_fn=preexec_fn)
        if proc.returncode != 0:
            raise WrkError(f"wrk exited {proc.returncode}: {proc.stderr[-2000:]}")
        return parse_output(proc.stdout)
    finally:
        os.unlink(script.name)


class WrkProcess:
    """wrk running in the background: ``stop()`` interrupts it (SIGINT: wrk stops early and
    still reports) and returns its parsed result.  For loads that must span an event whose
    length is not known in advance (a login burst, a server restart)."""

    def __init__(self, url: str, workload: str, *, duration: float, threads: int = 1,
                 connections: int = 64, env: Mapping[str, str] | None = None,
                 timeout_s: int = 10, preexec_fn: Callable[[], None] | None = None) -> None:
        wrk = ensure_wrk()
        with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix=f"bench-{workload}-",
                                         delete=False) as script:
            script.write(script_text(workload))
        self._script = script.name
        self.duration = duration
        argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
                f"--timeout={timeout_s}s", "-s", script.name, url]
        run_env = {**os.environ, "BENCH_THREADS": str(threads), **(env or {})}
        self.process = subprocess.Popen(  # noqa: S603 - our own argv
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=run_env,
            preexec_fn=preexec_fn)

    def stop(self, interrupt: bool = True) -> WrkResult:
        """Interrupt wrk now (or, with ``interrupt=False``, wait for its duration to end)."""
        try:
            if interrupt and self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
            stdout, stderr = self.process.communicate(timeout=self.duration + 60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(5)
            os.unlink(self._script)
        if self.process.returncode != 0:
            raise WrkError(f"wrk exited {self.process.returncode}: {stderr[-2000:]}")
        return parse_output(stdout)

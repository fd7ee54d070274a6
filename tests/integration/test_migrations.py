"""Migrations on SQLite and a real PostgreSQL: the upgrade command, ``--fake`` for databases
made by ``generate_schemas``, the start-up rule and the lock two instances share."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from pytest_postgresql.janitor import DatabaseJanitor
from tortoise import Tortoise, connections
from tortoise.migrations.autodetector import MigrationAutodetector

from app import create_app
from models import migrate
from models.db import APPS, ensure_schema, init_database
from models.schema import MIGRATION_LOCK_ID, SchemaNotCurrentError, SchemaState, lock_file
from models.user import User
from settings import Settings
from tests.app_process import ROOT, clean_env
from tests.conftest import PG_HOST, PG_PASSWORD, PG_PORT, PG_USER
from tests.server import running

SECRET = "test-secret-key-0123456789abcdef"
MODEL_TABLES = {"users", "follows", "posts", "jobs", "job_tags"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes empty databases: SQLite files, or PostgreSQL databases dropped after the test."""
    with ExitStack() as stack:
        def make() -> str:
            name = f"test_migrate_{uuid.uuid4().hex[:10]}"
            if request.param == "sqlite":
                return f"sqlite://{tmp_path}/{name}.sqlite3"
            stack.enter_context(DatabaseJanitor(user=PG_USER, host=PG_HOST, port=PG_PORT,
                                                dbname=name, password=PG_PASSWORD or None))
            auth = f"{PG_USER}:{PG_PASSWORD}@" if PG_PASSWORD else f"{PG_USER}@"
            return f"postgres://{auth}{PG_HOST}:{PG_PORT}/{name}"

        yield make


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[None]:
    await init_database(url)
    try:
        yield
    finally:
        await Tortoise.close_connections()


async def query(url: str, sql: str) -> list[tuple[object, ...]]:
    async with opened(url):
        _, rows = await connections.get("default").execute_query(sql)
        return [tuple(row.values()) if isinstance(row, dict) else tuple(row) for row in rows]


async def history(url: str) -> list[tuple[object, ...]]:
    return await query(url, 'SELECT "app", "name" FROM "tortoise_migrations" ORDER BY "id"')


async def catalog(url: str) -> list[tuple[object, ...]]:
    """Tables, columns, types, defaults, indexes, constraints and comments, by name."""
    if url.startswith("sqlite"):
        return await query(url, "SELECT type, name, tbl_name, sql FROM sqlite_master"
                                " WHERE name NOT LIKE 'sqlite_%' ORDER BY 1, 2")
    return [
        *await query(url, "SELECT table_name, column_name, data_type, is_nullable,"
                          " column_default, character_maximum_length"
                          " FROM information_schema.columns WHERE table_schema = 'public'"
                          " ORDER BY 1, 2"),
        *await query(url, "SELECT tablename, indexdef FROM pg_indexes"
                          " WHERE schemaname = 'public' ORDER BY 1, 2"),
        *await query(url, "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
                          " FROM pg_constraint WHERE connamespace = 'public'::regnamespace"
                          " ORDER BY 1, 2"),
        *await query(url, "SELECT c.relname, obj_description(c.oid) FROM pg_class c"
                          " JOIN pg_namespace n ON n.oid = c.relnamespace"
                          " WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1"),
    ]


def without_history(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    return [row for row in rows if "tortoise_migrations" not in map(str, row)]


async def cli(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str]:
    """``python -m models.migrate ARGV`` in this process: exit status and output."""
    capsys.readouterr()
    code = await migrate.run(url, migrate.parser().parse_args(list(argv)))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


async def make_with_generate_schemas(url: str) -> None:
    """A database as versions before migrations made it, with a user in it."""
    async with opened(url):
        await Tortoise.generate_schemas(safe=True)
        await User.create(username="old", email="old@example.com", password_hash="x")


def settings(url: str, **overrides: object) -> Settings:
    return Settings(database_url=url, secret_key=SECRET, **overrides)  # type: ignore[arg-type]


# --- the upgrade command -------------------------------------------------------------------------

async def test_upgrade_migrates_an_empty_database(
        new_database: Callable[[], str], capsys: pytest.CaptureFixture[str]) -> None:
    url = new_database()
    code, out = await cli(capsys, url, "--check")
    assert code == 1 and ": empty, pending: models.0001_initial" in out

    code, out = await cli(capsys, url)
    assert code == 0 and "Applied: models.0001_initial" in out
    assert await history(url) == [("models", "0001_initial")]
    async with opened(url):
        assert await User.all().count() == 0  # the tables exist

    code, out = await cli(capsys, url)
    assert code == 0 and "Nothing to do: the database is up to date" in out
    code, out = await cli(capsys, url, "--check")
    assert code == 0 and ": current" in out


async def test_the_migrated_schema_is_the_one_generate_schemas_made(
        new_database: Callable[[], str], capsys: pytest.CaptureFixture[str]) -> None:
    # What makes --fake safe for existing deployments: same tables, columns, types, defaults,
    # indexes, constraints (by name) and comments.
    migrated, generated = new_database(), new_database()
    assert (await cli(capsys, migrated))[0] == 0
    await make_with_generate_schemas(generated)
    migrated_catalog = await catalog(migrated)
    assert without_history(migrated_catalog) != migrated_catalog  # the history table is there
    assert without_history(migrated_catalog) == await catalog(generated)


async def test_models_and_migrations_agree(tmp_path: Path) -> None:
    # A model changed without `tortoise makemigrations` fails here (and would fail in prod).
    async with opened(f"sqlite://{tmp_path}/detect.sqlite3"):
        assert Tortoise.apps is not None
        writers = await MigrationAutodetector(Tortoise.apps, APPS).changes()
    assert [writer.name for writer in writers] == [], "run: tortoise makemigrations"


def test_tortoises_own_command_reads_the_same_config(tmp_path: Path) -> None:
    # pyproject.toml's [tool.tortoise] -> models.tortoise_config, which reads DATABASE_URL.
    url = f"sqlite://{tmp_path}/cli.sqlite3"
    assert migrate.main(["--database-url", url]) == 0
    result = subprocess.run([sys.executable, "-m", "tortoise", "history"], cwd=ROOT,
                            env=clean_env(DATABASE_URL=url), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "models 0001_initial" in result.stdout


# --- --fake: databases made by generate_schemas --------------------------------------------------

async def test_fake_adopts_a_database_made_by_generate_schemas(
        new_database: Callable[[], str], capsys: pytest.CaptureFixture[str]) -> None:
    url = new_database()
    await make_with_generate_schemas(url)
    async with opened(url):
        with pytest.raises(SchemaNotCurrentError, match=(
                r"no migration history .* `python -m models\.migrate 0001_initial --fake`")):
            await ensure_schema(migrate_pending=True)  # never faked behind the user's back
    code, out = await cli(capsys, url, "--check")
    assert code == 1 and ": untracked" in out

    code, out = await cli(capsys, url, "0001_initial", "--fake")
    assert code == 0 and "Recorded (--fake, no SQL run): models.0001_initial" in out
    assert await history(url) == [("models", "0001_initial")]
    code, out = await cli(capsys, url)
    assert code == 0 and "Nothing to do" in out

    app = create_app(settings(url))
    async with running(app) as http:
        response = await http.get("/api/users/list")
    assert response.status == 200
    assert [user["username"] for user in response.json["items"]] == ["old"]


async def test_fake_refuses_an_empty_database(
        new_database: Callable[[], str], capsys: pytest.CaptureFixture[str]) -> None:
    url = new_database()
    code, out = await cli(capsys, url, "--fake")
    assert code == 2 and "without --fake" in out
    assert not MODEL_TABLES & {str(row[0]) for row in await catalog(url)}


# --- start-up ------------------------------------------------------------------------------------

SECOND_MIGRATION = '''\
from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0001_initial")]
    operations = [
        ops.AddField(model_name="Post", name="note",
                     field=fields.CharField(max_length=40, null=True)),
    ]
'''


@pytest.fixture
def second_migration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The app's migrations plus a 0002 that adds a column, in a package of their own."""
    package = f"migrations_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    initial = ROOT / "models" / "migrations" / "0001_initial.py"
    (tmp_path / package / "0001_initial.py").write_text(initial.read_text())
    (tmp_path / package / "0002_post_note.py").write_text(SECOND_MIGRATION)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(APPS["models"], "migrations", package)
    return "models.0002_post_note"


async def test_startup_migrates_an_empty_database(new_database: Callable[[], str]) -> None:
    url = new_database()
    async with running(create_app(settings(url))) as http:
        assert (await http.get("/api/posts")).status == 200
    assert await history(url) == [("models", "0001_initial")]


async def test_startup_refuses_a_database_that_is_behind(
        new_database: Callable[[], str], second_migration: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    url = new_database()
    assert (await cli(capsys, url, "0001_initial"))[0] == 0  # deployed before 0002 existed

    with pytest.raises(SchemaNotCurrentError) as refused:
        async with running(create_app(settings(url))):
            pytest.fail("served a database that is behind")
    assert str(refused.value).startswith(
        "The database schema is behind the code: 1 migration(s) not applied"
        f" ({second_migration}). Run `python -m models.migrate` with the same DATABASE_URL")
    assert await history(url) == [("models", "0001_initial")]

    code, out = await cli(capsys, url, "--check")
    assert code == 1 and f"behind, pending: {second_migration}" in out
    code, out = await cli(capsys, url)
    assert code == 0 and f"Applied: {second_migration}" in out
    async with running(create_app(settings(url))) as http:
        assert (await http.get("/api/posts")).status == 200
    assert "note" in str(await catalog(url))


async def test_auto_migrate_applies_pending_migrations_at_startup(
        new_database: Callable[[], str], second_migration: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    url = new_database()
    assert (await cli(capsys, url, "0001_initial"))[0] == 0
    async with running(create_app(settings(url, database_auto_migrate=True))) as http:
        assert (await http.get("/api/posts")).status == 200
    assert await history(url) == [("models", "0001_initial"), ("models", "0002_post_note")]
    async with opened(url):
        assert (await ensure_schema()).state is SchemaState.CURRENT

    # The previous version, restarted during a rolling deploy, still starts: with a warning.
    monkeypatch.setitem(APPS["models"], "migrations", "models.migrations")
    async with running(create_app(settings(url))) as http:
        assert (await http.get("/api/posts")).status == 200
    assert (f"migrations this code does not know ({second_migration}): it is newer than this "
            "code") in caplog.text


async def test_fake_without_a_target_fakes_at_most_one_migration(
        new_database: Callable[[], str], second_migration: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    url = new_database()
    await make_with_generate_schemas(url)
    code, out = await cli(capsys, url, "--fake")
    assert code == 2 and "name the last one the database already has" in out
    assert "`0001_initial --fake`" in out
    code, out = await cli(capsys, url, "--check")
    assert code == 1 and ": untracked, pending: models.0001_initial, models.0002_post_note" in out
    assert (await cli(capsys, url, "0001_initial", "--fake"))[0] == 0
    code, out = await cli(capsys, url)
    assert code == 0 and f"Applied: {second_migration}" in out


def test_the_service_process_refuses_with_one_line_naming_the_command(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/behind.sqlite3"
    assert migrate.main(["--database-url", url]) == 0
    asyncio.run(query(url, 'DELETE FROM "tortoise_migrations"'))  # as generate_schemas left it
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60,
                            env=clean_env(DATABASE_URL=url, PORT="0", WORKERS="2"))
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if "CRITICAL" in line]
    assert "CRITICAL app: Not starting: The database has the service's tables" in line
    assert "`python -m models.migrate 0001_initial --fake`" in line
    assert "Worker ready" not in result.stderr


# --- the lock -----------------------------------------------------------------------------------

def _pg_dsn(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


def test_two_upgrades_at_once_migrate_once(new_database: Callable[[], str]) -> None:
    url = new_database()
    # A dry run changes nothing but creates the (empty) history table, as after a first
    # deploy: PostgreSQL's own catalog locks then no longer serialise two first migrations.
    assert migrate.main(["--database-url", url, "--dry-run"]) == 0
    assert asyncio.run(history(url)) == []
    release = _hold_migration_lock(url)
    procs = [subprocess.Popen([sys.executable, "-u", "-m", "models.migrate",
                               "--database-url", url], cwd=ROOT, env=clean_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    try:
        # Both have read an empty database and are about to migrate; they wait for the lock.
        firsts = [proc.stdout.readline() for proc in procs]  # type: ignore[union-attr]
        assert all(": empty, pending: models.0001_initial" in line for line in firsts), firsts
    finally:
        release()
    outputs = [first + proc.communicate(timeout=60)[0] for first, proc in zip(firsts, procs)]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert sorted("Applied: models.0001_initial" in out for out in outputs) == [False, True]
    assert any("Nothing to do" in out for out in outputs), outputs
    assert asyncio.run(history(url)) == [("models", "0001_initial")]


def _hold_migration_lock(url: str) -> Callable[[], None]:
    """Take the lock the command takes, from outside; returns its release."""
    if url.startswith("sqlite"):
        async def path() -> str | None:
            async with opened(url):
                return lock_file(connections.get("default"))

        lock_path = asyncio.run(path())
        assert lock_path
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return lambda: os.close(fd)

    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(_pg_dsn(url)))
    loop.run_until_complete(conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID))

    def release() -> None:
        loop.run_until_complete(conn.close())
        loop.close()

    return release

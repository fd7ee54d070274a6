"""Schema migrations: where a database stands, and bringing it up to date under a lock.

The migrations are tortoise-orm's own (``models/migrations/``, written by ``tortoise
makemigrations``), applied by its ``MigrationExecutor`` and recorded in its
``tortoise_migrations`` table, so ``tortoise history`` and ``tortoise sqlmigrate`` read them.
What this module adds:

- :func:`schema_status`: current, empty, behind, or *untracked* (the service's tables exist but
  no migration is recorded: a database made by ``generate_schemas`` before migrations existed);
- :func:`apply_migrations`: every pending migration and its record in **one transaction**,
  after taking a lock: a PostgreSQL advisory lock, or a file lock beside an SQLite file, so
  two instances (or workers) starting together never both migrate: the second waits, then
  finds nothing to do. A failed migration leaves nothing behind (DDL is transactional on
  both). Migrations that set ``atomic = False`` (``CREATE INDEX CONCURRENTLY``) are therefore
  not supported here; apply those with ``tortoise migrate`` (PostgreSQL).
- :func:`prepare_schema`: the start-up rule (see its docstring).
"""

from __future__ import annotations

import asyncio
import enum
import fcntl
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from tortoise import BaseDBAsyncClient, Tortoise
from tortoise.migrations.executor import MigrationExecutor, MigrationTarget, PlanStep
from tortoise.migrations.graph import MigrationKey
from tortoise.migrations.migration import Migration
from tortoise.migrations.schema_editor import BaseSchemaEditor, SqliteSchemaEditor

log = logging.getLogger(__name__)

UPGRADE_COMMAND = "python -m models.migrate"
"""The one command that upgrades a database (``DATABASE_URL``); named in every refusal."""

MIGRATION_LOCK_ID = 7_461_230_911
"""PostgreSQL advisory lock key held while migrating (any constant: the same in every process)."""


class SchemaState(enum.Enum):
    """Where a database stands against the migrations on disk."""

    CURRENT = "current"
    EMPTY = "empty"
    """None of the service's tables and no recorded migration: safe to create from scratch."""
    BEHIND = "behind"
    """Migrations on disk that the database has not applied."""
    UNTRACKED = "untracked"
    """The service's tables exist but no migration is recorded (made by ``generate_schemas``)."""


@dataclass(frozen=True)
class SchemaStatus:
    """A database against the migrations on disk (:func:`schema_status`)."""

    state: SchemaState
    pending: tuple[str, ...] = ()
    """Migrations to apply, in order (``models.0002_x``)."""
    unknown: tuple[str, ...] = ()
    """Applied in the database but not on disk: the database is ahead of this code."""
    initial: str = ""
    """The first migration's name (what ``--fake`` records for an untracked database)."""


class SchemaNotCurrentError(RuntimeError):
    """The database's schema is behind the code; the message names the command that fixes it."""


def _label(key: MigrationKey | Migration) -> str:
    return f"{key.app_label}.{key.name}"


def sqlite_statements(script: str) -> list[str]:
    """``script`` split into SQLite statements; a ``;`` in a comment or string stays put.

    tortoise-orm 1.1's SQLite schema editor splits on every ``;``, which breaks any table whose
    docstring (stored as a ``/* comment */``) contains one. ``sqlite3.complete_statement`` is
    SQLite's own tokenizer.
    """
    statements, buffer = [], ""
    pieces = script.split(";")
    for piece in pieces[:-1]:
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\r\n;"):
                statements.append(buffer.strip())
            buffer = ""
    rest = (buffer + pieces[-1]).strip()
    if rest.strip(";"):
        statements.append(rest)
    return statements


class _SqliteSchemaEditor(SqliteSchemaEditor):
    async def _run_sql(self, sql: str) -> None:
        if self.collect_sql or not self.atomic_migration:
            await super()._run_sql(sql)
            return
        for statement in sqlite_statements(sql):
            await self.client.execute_query(statement)


class _Executor(MigrationExecutor):
    def _schema_editor(self, atomic: bool = True, collect_sql: bool = False) -> BaseSchemaEditor:
        if self.connection.capabilities.dialect == "sqlite":
            return _SqliteSchemaEditor(self.connection, atomic=atomic, collect_sql=collect_sql)
        return super()._schema_editor(atomic=atomic, collect_sql=collect_sql)


async def _existing_tables(client: BaseDBAsyncClient) -> set[str]:
    if client.capabilities.dialect == "postgres":
        _, rows = await client.execute_query(
            "SELECT table_name AS name FROM information_schema.tables"
            " WHERE table_schema = current_schema()")
    else:
        _, rows = await client.execute_query(
            "SELECT name FROM sqlite_master WHERE type = 'table'")
    return {row["name"] for row in rows}


def _model_tables(apps: dict[str, dict[str, Any]]) -> set[str]:
    registry = Tortoise.apps
    assert registry is not None, "Tortoise.init() first"
    return {model._meta.db_table for model in registry.get_models_iterable()
            if model._meta.app in apps}


async def schema_status(client: BaseDBAsyncClient, apps: dict[str, dict[str, Any]]
                        ) -> SchemaStatus:
    """Compare the database on ``client`` with the migrations of ``apps`` (Tortoise's apps
    config, each with its ``migrations`` module)."""
    executor = _Executor(client, apps)
    plan = await executor.plan()  # reads tortoise_migrations; a missing table reads as none
    disk = executor.loader.disk_migrations
    applied = {key for key in executor.loader.applied_migrations if key.app_label in apps}
    roots = [key for label in apps for key in executor.loader.graph.root_nodes(label)]
    pending = tuple(_label(step.migration) for step in plan if not step.backward)
    unknown = tuple(sorted(_label(key) for key in applied - set(disk)))
    initial = roots[0].name if roots else ""
    if not pending:
        state = SchemaState.CURRENT
    elif applied:
        state = SchemaState.BEHIND
    elif _model_tables(apps) & await _existing_tables(client):
        state = SchemaState.UNTRACKED
    else:
        state = SchemaState.EMPTY
    return SchemaStatus(state, pending, unknown, initial)


def lock_file(client: BaseDBAsyncClient) -> str | None:
    """The file locked while migrating an SQLite database; None for PostgreSQL (advisory
    lock) and an in-memory SQLite (one per process)."""
    filename = getattr(client, "filename", None)
    if client.capabilities.dialect != "sqlite" or not filename or ":memory:" in filename:
        return None
    return f"{filename}.migrate-lock"


@asynccontextmanager
async def _locked_transaction(client: BaseDBAsyncClient) -> AsyncIterator[BaseDBAsyncClient]:
    path = lock_file(client)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600) if path else None
    try:
        if fd is not None:
            # SQLite's own locks cannot serialise "read the history, then write": a deferred
            # transaction that read cannot wait for another writer (SQLITE_BUSY at once).
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        async with client._in_transaction() as tx:  # noqa: SLF001 - one session for the lock
            if tx.capabilities.dialect == "postgres":
                # Held to the end of the transaction, i.e. until the records are committed.
                await tx.execute_query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK_ID])
            yield tx
    finally:
        if fd is not None:
            os.close(fd)  # releases the flock


async def apply_migrations(
    client: BaseDBAsyncClient, apps: dict[str, dict[str, Any]], *,
    target: str | None = None, fake: bool = False, dry_run: bool = False,
) -> list[PlanStep]:
    """Migrate to ``target`` (a migration name, forwards or back; default: the latest) in one
    transaction under the migration lock; returns the steps taken.

    ``fake`` records them without running their SQL; ``dry_run`` changes nothing.
    """
    async with _locked_transaction(client) as tx:
        executor = _Executor(tx, apps)
        # Before reading the history: on PostgreSQL a failed read would abort the transaction.
        await executor.recorder.ensure_schema(executor._schema_editor(atomic=False))
        targets = None
        if target:
            label, _, name = target.rpartition(".")
            if not label:
                [label] = apps  # one app: a bare migration name is enough
            targets = [MigrationTarget(app_label=label, name=name)]
        # Read under the lock: another instance may have migrated while this one waited.
        plan = await executor.plan(targets)
        # executor.migrate runs each migration in a savepoint of this transaction (its
        # in_transaction() finds ``tx`` in the context) and records it on ``tx``.
        await executor.migrate(targets, fake=fake, dry_run=dry_run)
    return plan


def describe_step(step: PlanStep) -> str:
    """``models.0002_x`` (``rollback of ...`` for a backward step)."""
    label = _label(step.migration)
    return f"rollback of {label}" if step.backward else label


async def prepare_schema(client: BaseDBAsyncClient, apps: dict[str, dict[str, Any]], *,
                         migrate_pending: bool = False) -> SchemaStatus:
    """The start-up rule: an empty database gets every migration (zero set-up, one instance
    at a time); one that is behind is migrated only with ``migrate_pending``
    (``DATABASE_AUTO_MIGRATE``), else refused with :class:`SchemaNotCurrentError`; an untracked
    one is always refused, naming the ``--fake`` command."""
    status = await schema_status(client, apps)
    if status.unknown:
        log.warning("The database has migrations this code does not know (%s): it is newer "
                    "than this code", ", ".join(status.unknown))
    if status.state is SchemaState.CURRENT:
        return status
    if status.state is SchemaState.UNTRACKED:
        raise SchemaNotCurrentError(
            "The database has the service's tables but no migration history (it was created "
            "by an older version with generate_schemas). Check it matches the models, record "
            f"the first migration with `{UPGRADE_COMMAND} {status.initial} --fake`, then run "
            f"`{UPGRADE_COMMAND}` to apply the rest; both read DATABASE_URL.")
    if status.state is SchemaState.BEHIND and not migrate_pending:
        raise SchemaNotCurrentError(
            f"The database schema is behind the code: {len(status.pending)} migration(s) not "
            f"applied ({', '.join(status.pending)}). Run `{UPGRADE_COMMAND}` with the same "
            "DATABASE_URL before starting the service (a release step), or set "
            "DATABASE_AUTO_MIGRATE=true to apply them at start-up.")
    steps = await apply_migrations(client, apps)
    if steps:
        log.info("Database schema migrated (%s database): %s", status.state.value,
                 ", ".join(describe_step(step) for step in steps))
    # Up to date now (or migrated by another instance while this one waited for the lock).
    return SchemaStatus(SchemaState.CURRENT, unknown=status.unknown, initial=status.initial)

"""Upgrade a database to the migrations in ``models/migrations/``.

    python -m models.migrate                        # apply every pending migration
    python -m models.migrate --check                # change nothing; exit 1 if any is pending
    python -m models.migrate 0001_initial --fake    # a database made by generate_schemas
    python -m models.migrate --dry-run              # print the plan only

The database is ``DATABASE_URL`` (as the service reads it: ``postgresql://`` and libpq's
``sslmode`` work), else the embedded SQLite file, or ``--database-url``. Every pending
migration runs in one transaction under the same lock the service's start-up takes, so it is
safe to run while instances start (they wait for it) and twice at once.

``--fake`` records migrations as applied without running their SQL: for a database an older
version created with ``generate_schemas``, record the first migration (whose tables it already
has) with ``--fake``, then run the command again without it for the rest.

Exit status: 0 done (or up to date), 1 ``--check`` found pending migrations, 2 a bad
argument or URL, a ``--fake`` on an empty database, or a ``--fake`` without a target while
more than one migration is pending.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from tortoise import Tortoise, connections

from models.db import APPS, describe_database, init_database
from models.schema import SchemaState, apply_migrations, describe_step, schema_status
from settings import DEFAULT_DATABASE_URL, Settings, normalise_database_url


def parser() -> argparse.ArgumentParser:
    """The command's arguments."""
    command = argparse.ArgumentParser(prog="python -m models.migrate", description=__doc__,
                                      formatter_class=argparse.RawDescriptionHelpFormatter)
    command.add_argument("target", nargs="?", default=None,
                         help="migrate to this migration (e.g. 0001_initial), forwards or back;"
                              " default: the latest")
    mode = command.add_mutually_exclusive_group()
    mode.add_argument("--fake", action="store_true",
                      help="record the migrations as applied without running their SQL")
    mode.add_argument("--check", action="store_true",
                      help="change nothing; exit 1 when migrations are pending")
    mode.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    command.add_argument("--database-url", default=None,
                         help="default: DATABASE_URL from the environment, else the SQLite file")
    return command


async def run(database_url: str, args: argparse.Namespace) -> int:
    """Open ``database_url``, do what ``args`` ask, print it, close; returns the exit status."""
    await init_database(database_url)
    try:
        client = connections.get("default")
        status = await schema_status(client, APPS)
        print(f"{describe_database(database_url)}: {status.state.value}"
              + (f", pending: {', '.join(status.pending)}" if status.pending else ""))
        if status.unknown:
            print(f"Applied but not in this code (the database is newer): "
                  f"{', '.join(status.unknown)}")
        if args.check:
            return 0 if status.state is SchemaState.CURRENT else 1
        if args.fake and status.state is SchemaState.EMPTY:
            print("error: --fake on a database without the service's tables would record "
                  "migrations that never ran; run without --fake", file=sys.stderr)
            return 2
        if args.fake and not args.target and len(status.pending) > 1:
            # Only the migrations whose changes the database already has may be faked.
            print(f"error: {len(status.pending)} migrations are pending; name the last one "
                  f"the database already has, e.g. `{status.initial} --fake`", file=sys.stderr)
            return 2
        steps = await apply_migrations(client, APPS, target=args.target, fake=args.fake,
                                       dry_run=args.dry_run)
        if not steps:
            print("Nothing to do: the database is up to date")
        verb = ("Would apply" if args.dry_run
                else "Recorded (--fake, no SQL run)" if args.fake else "Applied")
        for step in steps:
            print(f"{verb}: {describe_step(step)}")
        return 0
    finally:
        await Tortoise.close_connections()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings(database_url=normalise_database_url(
            args.database_url or os.environ.get("DATABASE_URL", "").strip()
            or DEFAULT_DATABASE_URL))
        settings.ensure_data_dir()
        return asyncio.run(run(settings.database_url, args))
    except ValueError as exc:  # a malformed URL (SettingsError), an unknown target
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

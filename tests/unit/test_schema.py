"""models.schema's SQLite statement splitter (tortoise-orm 1.1 splits on every ``;``)."""

from __future__ import annotations

import pytest

from models.schema import sqlite_statements


@pytest.mark.parametrize(("script", "statements"), [
    ("CREATE TABLE a (x INT)", ["CREATE TABLE a (x INT)"]),
    ("CREATE TABLE a (x INT);\nCREATE INDEX i ON a (x);",
     ["CREATE TABLE a (x INT);", "CREATE INDEX i ON a (x);"]),
    # A table docstring becomes a /* comment */; the models' docstrings hold semicolons.
    ('CREATE TABLE "users" (\n  "id" INT\n) /* An account; the password is hashed. */;\n'
     'CREATE INDEX "i" ON "users" ("id");',
     ['CREATE TABLE "users" (\n  "id" INT\n) /* An account; the password is hashed. */;',
      'CREATE INDEX "i" ON "users" ("id");']),
    ("INSERT INTO a VALUES ('x;y'); -- done; really\n",
     ["INSERT INTO a VALUES ('x;y');", "-- done; really"]),
    ("  ;\n;  ", []),
    ("", []),
])
def test_sqlite_statements_split_only_between_statements(
        script: str, statements: list[str]) -> None:
    assert sqlite_statements(script) == statements

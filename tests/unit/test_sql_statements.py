"""Fixed statements: placeholders per dialect, and the job list's statement shapes."""

from __future__ import annotations

import itertools
import re

from models.job_list import list_statement
from models.sql import Statement


def test_sqlite_spelling_numbers_the_same_placeholders() -> None:
    statement = Statement("SELECT a FROM t WHERE (x, y) < ($2, $3) AND z = $2 LIMIT $1 -- $12")
    assert statement.postgres.endswith("($2, $3) AND z = $2 LIMIT $1 -- $12")
    assert statement.sqlite == ("SELECT a FROM t WHERE (x, y) < (?2, ?3) AND z = ?2 LIMIT ?1"
                                " -- ?12")
    own = Statement("SELECT ARRAY(x) WHERE a = $1", "SELECT json(x) WHERE a = $1")
    assert (own.postgres, own.sqlite) == ("SELECT ARRAY(x) WHERE a = $1",
                                          "SELECT json(x) WHERE a = ?1")


def test_every_job_list_shape_numbers_its_placeholders_in_order() -> None:
    """$1 is the limit; each present filter takes the next numbers (the text filter one,
    used twice; the cursor two), so the values can be appended in the same order."""
    texts = set()
    for shape in itertools.product((False, True), repeat=5):
        sql = list_statement(shape).postgres
        texts.add(sql)
        numbers = [int(n) for n in re.findall(r"\$(\d+)", sql)]
        expected_count = 1 + sum(shape[:4]) + 2 * shape[4]
        assert sorted(set(numbers)) == list(range(1, expected_count + 1)), sql
        assert sql.count("UPPER(") == (4 if shape[2] else 0)
        assert ("(j.created_at, j.id) <" in sql) == shape[4]
        assert "?" not in sql and "$" not in list_statement(shape).sqlite
    assert len(texts) == 32

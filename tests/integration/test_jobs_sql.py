"""Jobs and job statistics: fixed statements with the same bytes as the ORM queries before.

The expected bytes come from the ORM queries the handlers used before (on the same data, on
SQLite and PostgreSQL); each page or job must cost exactly one statement, the statistics three.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest
from tortoise.expressions import Q
from tortoise.functions import Count, Min

from handlers.pagination import Cursor
from handlers.responses import dumps
from handlers.serialize import JOB_FIELDS, job_out
from models import job_list, stats
from models.job import Job, JobTag, location_key
from models.user import User
from tests.integration.statements import statements
from tests.server import Client

MOMENT = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
FILTERS: list[dict[str, str]] = [
    {}, {"location": "berlin"}, {"location": " BERLIN "}, {"remote": "true"},
    {"remote": "false"}, {"q": "acme"}, {"q": "ÉCOLE"}, {"q": "50%"}, {"q": "a_b"},
    {"q": "back\\slash"}, {"tag": "Python"}, {"tag": "nothing"},
    {"location": "Berlin", "remote": "false", "q": "dev", "tag": "python"},
]


async def _orm_tags(job_ids: list[int]) -> dict[int, list[str]]:
    tags: dict[int, list[str]] = defaultdict(list)
    rows = await JobTag.filter(job_id__in=job_ids).order_by("id").values_list("job_id", "tag")
    for job_id, tag in rows:
        tags[job_id].append(tag)
    return tags


async def _orm_page(params: dict[str, str], limit: int, cursor: str | None) -> bytes:
    """The list as the ORM query of the previous handler built it."""
    queryset = Job.all()
    if "location" in params:
        queryset = queryset.filter(location_key=location_key(params["location"].strip()))
    if "remote" in params:
        queryset = queryset.filter(remote=params["remote"] == "true")
    if "q" in params:
        queryset = queryset.filter(Q(title__icontains=params["q"]) |
                                   Q(company__icontains=params["q"]))
    if "tag" in params:
        queryset = queryset.filter(tags__tag=params["tag"].lower())
    if cursor is not None:
        queryset = queryset.filter(Cursor.decode(cursor).older())
    rows = await queryset.order_by("-created_at", "-id").limit(limit + 1).values(*JOB_FIELDS)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = Cursor(rows[-1]["created_at"], rows[-1]["id"]).encode()
    tags = await _orm_tags([row["id"] for row in rows])
    return dumps({"items": [job_out(row, tags[row["id"]]) for row in rows],
                  "next_cursor": next_cursor})


async def _orm_stats() -> bytes:
    """The statistics as before: the totals statement, then two ORM group-by queries."""
    locations = await (
        Job.all().group_by("location_key").annotate(n=Count("id"), name=Min("location"))
        .order_by("-n", "location_key").limit(stats.TOP_LOCATIONS).values_list("name", "n"))
    tags = await (JobTag.all().group_by("tag").annotate(n=Count("id"))
                  .order_by("-n", "tag").limit(stats.TOP_TAGS).values_list("tag", "n"))
    computed = await stats.job_stats()
    computed["locations"] = [{"location": name, "count": int(n)} for name, n in locations]
    computed["tags"] = [{"tag": tag, "count": int(n)} for tag, n in tags]
    return dumps(computed)


async def _seed() -> list[Job]:
    owner = await User.create(username="owner", email="o@example.com", password_hash="-")
    other = await User.create(username="ötherin", email="x@example.com", password_hash="-")
    specs: list[tuple[str, str, str, bool, int | None, int | None, list[str]]] = [
        ("Python dev", "Acme", "Berlin", False, 50_000, 70_000, ["python", "django"]),
        ("Rust dev", "ACME corp", "berlin", True, None, 90_000, ["rust"]),
        ("Go dev 50% remote", "École", "Paris", True, 40_000, None, ["go", "python"]),
        ("a_b tester", "Back\\slash", "Lyon", False, None, None, []),
        ("axb tester", "Nobody", "Berlin ", False, 10, 20, ["qa", "python", "zeta"]),
    ]
    jobs = []
    for i in range(3):
        for j, (title, company, location, remote, low, high, tags) in enumerate(specs):
            extra: dict[str, Any] = {"created_at": MOMENT} if (i + j) % 2 else {}
            job = await Job.create(owner_id=(owner if j % 2 else other).id, title=title,
                                   company=company, location=location, remote=remote,
                                   salary_min=low, salary_max=high, description=f"d{i}{j}",
                                   **extra)
            await JobTag.bulk_create([JobTag(job_id=job.id, tag=tag) for tag in tags])
            jobs.append(job)
    return jobs


@pytest.mark.parametrize("limit", [2, 5, 100])
async def test_job_pages_are_one_statement_with_the_orm_bytes(
        client: Client, caplog: pytest.LogCaptureFixture, limit: int) -> None:
    await _seed()
    for params in FILTERS:
        cursor: str | None = None
        while True:
            query = {**params, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
            with statements(caplog) as sent:
                response = await client.get("/api/jobs", params=query)
            assert response.status == 200, response.text
            assert len(sent) == 1 and ("ARRAY(" in sent[0] or "json_group_array" in sent[0]), sent
            assert response.content == await _orm_page(params, limit, cursor), params
            cursor = response.json["next_cursor"]
            if cursor is None:
                break


async def test_one_job_and_the_stats_are_the_orm_bytes(
        client: Client, caplog: pytest.LogCaptureFixture) -> None:
    jobs = await _seed()
    for job in jobs:
        with statements(caplog) as sent:
            response = await client.get(f"/api/jobs/{job.id}")
        assert sent in ([job_list.JOB.postgres], [job_list.JOB.sqlite]), sent
        rows = await Job.filter(id=job.id).values(*JOB_FIELDS)
        tags = await _orm_tags([job.id])
        assert response.content == dumps(job_out(rows[0], tags[job.id]))
    with statements(caplog) as sent:
        response = await client.get("/api/jobs/stats")
    fixed = {s for st in (stats.JOB_TOTALS, stats.TOP_LOCATION_COUNTS, stats.TOP_TAG_COUNTS)
             for s in (st.postgres, st.sqlite)}
    assert len(sent) == 3 and set(sent) <= fixed, sent
    assert response.content == await _orm_stats()

"""The seed command and the start-up demo data, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from tortoise import Tortoise

from app import create_app
from models.db import init_database
from models.job import Job, JobTag
from models.post import Post
from models.seed import SEED_PASSWORD, SeedCounts, main, seed_database, seed_demo_if_empty
from models.user import Follow, User
from settings import Settings
from tests.server import running


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[None]:
    await init_database(url)
    try:
        yield
    finally:
        await Tortoise.close_connections()


async def test_seed_counts_and_integrity(database_url: str) -> None:
    inserted = await seed_database(database_url, SeedCounts(users=30, follows=60, posts=200,
                                                            jobs=15), random_seed=1)
    assert inserted["users"] == 30 and inserted["posts"] == 200 and inserted["jobs"] == 15
    assert inserted["follows"] == 60 and inserted["job_tags"] >= 15
    # A second run appends: existing users get more posts, follows and jobs.
    await seed_database(database_url, SeedCounts(posts=10, follows=20, jobs=2), random_seed=2)

    async with opened(database_url):
        assert await User.all().count() == 30
        assert await Post.all().count() == 210
        assert await Job.all().count() == 17
        assert 60 < await Follow.all().count() <= 80
        assert await JobTag.all().count() >= 17
        follows = await Follow.all().values_list("follower_id", "followee_id")
        assert all(a != b for a, b in follows)
        assert len(set(follows)) == len(follows)
        jobs = await Job.all().values("location", "location_key", "salary_min", "salary_max")
        assert all(job["location_key"] == job["location"].casefold() for job in jobs)
        assert all(job["salary_min"] <= job["salary_max"] for job in jobs
                   if job["salary_min"] is not None and job["salary_max"] is not None)
        assert len({job["location"] for job in jobs}) > 1
        times = await Post.all().values_list("created_at", flat=True)
        assert (max(times) - min(times)).days > 30


async def test_seeded_database_serves_the_api(database_url: str) -> None:
    await seed_database(database_url, SeedCounts(users=10, follows=20, posts=50, jobs=5),
                        random_seed=3)
    app = create_app(Settings(database_url=database_url,
                              secret_key="test-secret-key-0123456789abcdef"))
    async with running(app) as client:
        login = await client.post("/api/auth/login",
                                  json={"username": "user1", "password": SEED_PASSWORD})
        assert login.status == 200
        auth = client.bearer(login.json["token"])
        # The id sequences moved past the seeded rows.
        created = await client.post("/api/posts", json={"content": "after seeding"},
                                    headers=auth)
        assert created.status == 201 and created.json["id"] == 51
        seen: list[int] = []
        cursor = None
        while True:
            params = {"limit": 20, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/api/posts", params=params)).json
            seen += [item["id"] for item in page["items"]]
            if not (cursor := page["next_cursor"]):
                break
        assert seen[0] == 51 and sorted(seen) == list(range(1, 52))
        users = (await client.get("/api/users/list", params={"limit": 100})).json["items"]
        assert sum(user["posts_count"] for user in users) == 51
        assert sum(user["followers_count"] for user in users) == 20


async def test_demo_data_is_loaded_once_before_the_workers(database_url: str) -> None:
    """With SEED_DEMO the app seeds in ``main_process_start`` (once, before any worker), and
    only into an empty database."""
    settings = Settings(database_url=database_url, seed_demo=True,
                        secret_key="test-secret-key-0123456789abcdef")
    app = create_app(settings)
    demo = [listener for listener in app.listeners["main_process_start"]
            if listener.__name__ == "load_demo_data"]
    assert len(demo) == 1
    await demo[0](app)
    assert await seed_demo_if_empty(database_url) is False
    async with opened(database_url):
        assert await User.all().count() == 50
        assert await Post.all().count() == 500
        assert await Job.all().count() == 100

    plain = create_app(Settings(database_url=database_url,
                                secret_key="test-secret-key-0123456789abcdef"))
    assert "load_demo_data" not in [listener.__name__ for listener
                                    in plain.listeners.get("main_process_start", [])]


def test_seed_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite://{tmp_path}/cli/seed.sqlite3"
    assert main(["--database-url", url, "--users", "5", "--posts", "20", "--jobs", "3",
                 "--follows", "4", "--random-seed", "1"]) == 0
    assert "Seeded 5 users, 4 follows, 20 posts, 3 jobs" in capsys.readouterr().out
    assert (tmp_path / "cli" / "seed.sqlite3").exists()

    assert main(["--database-url", url, "--users", "-1"]) == 2
    assert main(["--database-url", f"sqlite://{tmp_path}/empty.sqlite3", "--users", "0",
                 "--posts", "5"]) == 2
    assert "need users" in capsys.readouterr().err
    assert main(["--database-url", "mysql://nope"]) == 2

"""Realistic, reproducible rows for the seed command: users, follows, posts, jobs and tags.

Pure functions of a :class:`random.Random` and the first free ids; they return plain tuples in
the column order of :data:`COLUMNS`, ready for a bulk insert.  Timestamps are spread over the
last year and increase with the id, as they would in a real database.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from models.job import location_key

Row = tuple[Any, ...]

COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("id", "username", "email", "password_hash", "created_at"),
    "follows": ("id", "follower_id", "followee_id", "created_at"),
    "posts": ("id", "author_id", "content", "created_at", "updated_at"),
    "jobs": ("id", "owner_id", "title", "company", "location", "location_key", "remote",
             "salary_min", "salary_max", "description", "created_at"),
    "job_tags": ("id", "job_id", "tag"),
}
"""Tables in insertion order (foreign keys first) and the columns the generators fill."""

SPAN = timedelta(days=365)

WORDS = (
    "the a our new team today just shipped release bug fix coffee meeting remote office "
    "python rust go postgres redis cache latency deploy weekend hiring interview design "
    "review code test green build pipeline cloud kubernetes docker linux api endpoint "
    "feature launch customer feedback roadmap sprint demo great awful finally again why "
    "how what learned lesson tip thread opinion hot take benchmark faster slower memory "
    "queue worker async await sql index query plan scale users traffic outage postmortem"
).split()
LOCATIONS = (
    ("Berlin", 12), ("London", 12), ("New York", 11), ("San Francisco", 10), ("Paris", 8),
    ("Amsterdam", 7), ("Toronto", 6), ("Lisbon", 5), ("Warsaw", 5), ("Madrid", 4),
    ("Stockholm", 4), ("Zurich", 3), ("Tokyo", 3), ("Singapore", 3), ("Austin", 3),
    ("Dublin", 3), ("Barcelona", 2), ("Prague", 2), ("Sydney", 2), ("Bangalore", 2),
)
TAGS = ("python", "go", "rust", "javascript", "typescript", "java", "kotlin", "sql",
        "postgres", "redis", "aws", "gcp", "kubernetes", "docker", "react", "django",
        "sanic", "fastapi", "ml", "data", "devops", "security", "frontend", "backend",
        "mobile", "embedded", "testing", "sre", "graphql", "linux")
ROLES = ("Backend Engineer", "Frontend Engineer", "Full-Stack Developer", "Data Engineer",
         "Site Reliability Engineer", "DevOps Engineer", "Machine Learning Engineer",
         "Security Engineer", "Mobile Developer", "QA Engineer", "Platform Engineer",
         "Engineering Manager", "Data Scientist", "Solutions Architect")
LEVELS = ("Junior", "", "", "Senior", "Senior", "Staff", "Lead", "Principal")
COMPANIES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries",
             "Wayne Enterprises", "Cyberdyne", "Soylent", "Vandelay Industries", "Pied Piper",
             "Massive Dynamic", "Aperture Science", "Tyrell", "Wonka", "Oscorp")


@dataclass
class FirstIds:
    """The first free id of each table (one past its current maximum)."""

    users: int = 1
    follows: int = 1
    posts: int = 1
    jobs: int = 1
    job_tags: int = 1


@dataclass
class Generator:
    """Builds seed rows; ``now`` and ``rng`` make the output reproducible."""

    rng: random.Random
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def _times(self, count: int) -> list[datetime]:
        """``count`` ascending moments within the last year."""
        span = SPAN.total_seconds()
        offsets = sorted(self.rng.random() * span for _ in range(count))
        start = self.now - SPAN
        return [start + timedelta(seconds=offset) for offset in offsets]

    def users(self, count: int, first_id: int, password_hash: str) -> list[Row]:
        return [(user_id, f"user{user_id}", f"user{user_id}@example.com", password_hash, at)
                for user_id, at in zip(range(first_id, first_id + count), self._times(count))]

    def follows(self, count: int, first_id: int, user_ids: list[int]) -> list[Row]:
        """Distinct (follower, followee) pairs of different users, at most all pairs."""
        possible = len(user_ids) * (len(user_ids) - 1)
        count = min(count, possible)
        if count > possible // 2:
            # Dense: rejection sampling would crawl, so pick from every pair.
            ordered = self.rng.sample([(a, b) for a in user_ids for b in user_ids if a != b],
                                      count)
        else:
            pairs: set[tuple[int, int]] = set()
            while len(pairs) < count:
                follower, followee = self.rng.sample(user_ids, 2)
                pairs.add((follower, followee))
            ordered = sorted(pairs)
            self.rng.shuffle(ordered)
        return [(row_id, follower, followee, at) for row_id, (follower, followee), at
                in zip(range(first_id, first_id + count), ordered, self._times(count))]

    def _sentence(self) -> str:
        words = self.rng.choices(WORDS, k=self.rng.randint(4, 40))
        text = " ".join(words)
        return text[0].upper() + text[1:] + self.rng.choice((".", "!", "?", "...", " #dev"))

    def posts(self, count: int, first_id: int, author_ids: list[int]) -> list[Row]:
        rows = []
        for post_id, at in zip(range(first_id, first_id + count), self._times(count)):
            content = self._sentence()
            if self.rng.random() < 0.3:
                content += " " + self._sentence()
            rows.append((post_id, self.rng.choice(author_ids), content, at, at))
        return rows

    def _salary(self) -> tuple[int | None, int | None]:
        roll = self.rng.random()
        if roll < 0.2:
            return None, None
        low = self.rng.randrange(30_000, 160_000, 5_000)
        high = low + self.rng.randrange(0, 60_000, 5_000)
        if roll < 0.3:
            return low, None
        return low, high

    def jobs(self, count: int, first_id: int, first_tag_id: int,
             owner_ids: list[int]) -> tuple[list[Row], list[Row]]:
        """Job rows and their tag rows."""
        places = [name for name, _ in LOCATIONS]
        weights = [weight for _, weight in LOCATIONS]
        jobs: list[Row] = []
        tags: list[Row] = []
        tag_id = first_tag_id
        for job_id, at in zip(range(first_id, first_id + count), self._times(count)):
            role = self.rng.choice(ROLES)
            title = f"{self.rng.choice(LEVELS)} {role}".strip()
            company = self.rng.choice(COMPANIES)
            location = self.rng.choices(places, weights)[0]
            low, high = self._salary()
            description = f"{company} is hiring a {title} in {location}. {self._sentence()}"
            jobs.append((job_id, self.rng.choice(owner_ids), title, company, location,
                         location_key(location), self.rng.random() < 0.35, low, high,
                         description, at))
            for tag in self.rng.sample(TAGS, self.rng.randint(1, 4)):
                tags.append((tag_id, job_id, tag))
                tag_id += 1
        return jobs, tags

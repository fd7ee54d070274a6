"""The three workloads, as files that the wrk scripts read.

- ``hits``: one URL, the feed's first page (20 posts), requested over and over.
- ``misses``: the feed at a different cursor on every request (a listed query parameter, so
  every request is a new cache key), shuffled.
- ``mixed``: Zipf-distributed GETs over every cached route (feed pages, author feeds, posts,
  jobs lists and filters, jobs stats, users list, users) with every 20th request a PATCH of a
  post by its author, checked for stale reads (``bench/stale.py``).  The cache is pre-warmed
  with one GET of every URL first, so the hit rate measures invalidations and expiries, not the
  compulsory first misses of a cold cache.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from bench.client import Client
from bench.database import BenchDatabase
from bench.zipf import place_hot, zipf_sequence
from handlers.pagination import Cursor
from models.seed import SEED_PASSWORD

log = logging.getLogger(__name__)

HIT_PATH = "/api/posts"
WRITE_EVERY = 20  # 5% writes


@dataclass(frozen=True)
class WritablePost:
    """A post the mixed workload edits, with its author's bearer token."""

    id: int
    username: str
    token: str = ""


@dataclass
class WorkloadFiles:
    """Paths of the files the wrk scripts read; ``items`` are the posts the bench writes."""

    directory: Path
    hits: Path
    misses: Path
    mixed: Path
    universe: Path
    items: list[WritablePost]
    universe_size: int
    misses_warmup: Path
    """Other cursors than ``misses``: the all-misses warm-up runs the handler as the measured
    run will, without storing an entry the measured run could hit (even in the peer)."""
    probe: WritablePost | None = None
    """A post no wrk thread writes, by an author of its own: the invalidation delay probe's."""

    def items_file(self, items: list[WritablePost], base_version: int) -> Path:
        """The ``id token base_version`` lines ``lua/mixed.lua`` reads (items with tokens)."""
        path = self.directory / f"items-{base_version}.txt"
        path.write_text("".join(f"{i.id} {i.token} {base_version}\n" for i in items))
        return path


def _cursor(created_at: object, row_id: int) -> str:
    return Cursor(created_at, row_id).encode()  # type: ignore[arg-type]


def miss_paths(db: BenchDatabase, *, seed: int = 7) -> list[str]:
    """One feed URL per post, each at that post's cursor: every one a distinct cache key."""
    rows = db.fetch("SELECT created_at, id FROM posts")
    paths = [f"/api/posts?cursor={_cursor(r['created_at'], r['id'])}" for r in rows]
    random.Random(seed).shuffle(paths)
    return paths


def universe(db: BenchDatabase, *, scale: float = 1.0, seed: int = 11) -> list[str]:
    """Every cached GET URL the mixed workload may read (unordered)."""
    rng = random.Random(seed)

    def n(count: int) -> int:
        return max(1, int(count * scale))

    urls = ["/api/posts", "/api/posts?limit=10", "/api/posts?limit=50", "/api/posts?limit=100",
            "/api/jobs", "/api/jobs?remote=true", "/api/jobs?remote=false", "/api/jobs/stats",
            "/api/users/list", "/api/users/list?limit=50"]
    newest = db.fetch("SELECT created_at, id FROM posts ORDER BY created_at DESC, id DESC "
                      "LIMIT $1", n(300) * 20)
    urls += [f"/api/posts?cursor={_cursor(r['created_at'], r['id'])}" for r in newest[19::20]]
    users = db.fetch("SELECT id, username, created_at FROM users ORDER BY id")
    for row in rng.sample(users, min(len(users), n(2000))):
        urls.append(f"/api/posts?author={quote(row['username'])}")
    for row in rng.sample(users, min(len(users), n(2000))):
        urls.append(f"/api/users/{row['id']}")
    ordered = sorted(users, key=lambda r: (r["created_at"], r["id"]), reverse=True)
    urls += [f"/api/users/list?cursor={_cursor(r['created_at'], r['id'])}"
             for r in ordered[19:n(100) * 20:20]]
    posts = db.fetch("SELECT id FROM posts")
    urls += [f"/api/posts/{r['id']}" for r in rng.sample(posts, min(len(posts), n(4000)))]
    jobs = db.fetch("SELECT id FROM jobs")
    urls += [f"/api/jobs/{r['id']}" for r in rng.sample(jobs, min(len(jobs), n(1000)))]
    urls += [f"/api/jobs?location={quote(r['location'])}"
             for r in db.fetch("SELECT DISTINCT location FROM jobs ORDER BY location")]
    urls += [f"/api/jobs?tag={quote(r['tag'])}"
             for r in db.fetch("SELECT DISTINCT tag FROM job_tags ORDER BY tag")]
    return list(dict.fromkeys(urls))


def writable_posts(db: BenchDatabase, *, authors: int = 16,
                   per_author: int = 2) -> list[WritablePost]:
    """``per_author`` posts of each of ``authors`` users who have that many."""
    rows = db.fetch(
        "SELECT p.id, u.username FROM posts p JOIN users u ON u.id = p.author_id "
        "WHERE p.author_id IN (SELECT author_id FROM posts GROUP BY author_id "
        "HAVING count(*) >= $1 ORDER BY author_id LIMIT $2) ORDER BY p.author_id, p.id",
        per_author, authors)
    picked: dict[str, list[int]] = {}
    for row in rows:
        ids = picked.setdefault(row["username"], [])
        if len(ids) < per_author:
            ids.append(row["id"])
    # Interleave authors so that consecutive items (one per wrk thread) have distinct authors.
    return [WritablePost(ids[i], name) for i in range(per_author) for name, ids in picked.items()]


def probe_post(db: BenchDatabase, items: list[WritablePost]) -> WritablePost:
    """A post by an author none of ``items`` has (the probe's writes clear other entries)."""
    rows = db.fetch("SELECT p.id, u.username FROM posts p JOIN users u ON u.id = p.author_id "
                    "WHERE NOT (u.username = ANY($1::text[])) ORDER BY p.id LIMIT 1",
                    sorted({i.username for i in items}))
    return WritablePost(rows[0]["id"], rows[0]["username"])


def login(client: Client, username: str) -> str:
    reply = client.request("POST", "/api/auth/login",
                           body={"username": username, "password": SEED_PASSWORD})
    if reply.status != 200:
        raise RuntimeError(f"login of {username} failed: {reply.status} {reply.body[:200]!r}")
    return str(reply.json()["token"])


def with_tokens(client: Client, items: list[WritablePost]) -> list[WritablePost]:
    tokens: dict[str, str] = {}
    for item in items:
        if item.username not in tokens:
            tokens[item.username] = login(client, item.username)
    return [WritablePost(i.id, i.username, tokens[i.username]) for i in items]


def write_version(client: Client, item: WritablePost, version: int) -> None:
    """Set a post to a known version tag (what the mixed workload's checker compares)."""
    reply = client.request("PATCH", f"/api/posts/{item.id}",
                           body={"content": f"[bench:post={item.id}:v={version}] set by the bench"},
                           headers={"Authorization": f"Bearer {item.token}"})
    if reply.status != 200:
        raise RuntimeError(f"PATCH /api/posts/{item.id}: {reply.status} {reply.body[:200]!r}")


def build(db: BenchDatabase, directory: Path, *, sequence_length: int, scale: float,
          s: float = 1.0) -> WorkloadFiles:
    """Write the hits, misses and mixed path files into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    hits = directory / "hits.txt"
    hits.write_text(HIT_PATH + "\n")
    all_misses = miss_paths(db)
    warmup_share = len(all_misses) // 5
    misses = directory / "misses.txt"
    misses.write_text("\n".join(all_misses[warmup_share:]) + "\n")
    misses_warmup = directory / "misses-warmup.txt"
    misses_warmup.write_text("\n".join(all_misses[:warmup_share]) + "\n")
    items = writable_posts(db)
    hot = [f"/api/posts/{i.id}" for i in items]
    hot += list(dict.fromkeys(f"/api/posts?author={quote(i.username)}" for i in items))
    urls = universe(db, scale=scale)
    # The written posts sit among the hottest tenth of the URLs: read often enough for the
    # stale check to see many of their reads, without being the very top keys.
    ranked = place_hot(urls, hot, top=max(len(hot), len(urls) // 10))
    universe_file = directory / "universe.txt"
    universe_file.write_text("\n".join(ranked) + "\n")
    mixed = directory / "mixed.txt"
    mixed.write_text("\n".join(zipf_sequence(ranked, sequence_length, s=s)) + "\n")
    log.info("Workloads: %d miss URLs, %d mixed URLs (Zipf s=%.1f), %d written posts",
             misses.read_text().count("\n"), len(ranked), s, len(items))
    return WorkloadFiles(directory, hits, misses, mixed, universe_file, items, len(ranked),
                         misses_warmup, probe_post(db, items))

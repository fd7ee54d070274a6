"""Rows and models to the JSON shapes of the API (documented in :mod:`handlers.schemas`)."""

from __future__ import annotations

from typing import Any

from models.job import Job
from models.stats import UserCounts
from models.user import User

POST_FIELDS = ("id", "content", "created_at", "updated_at", "author_id", "author__username")
JOB_FIELDS = ("id", "title", "company", "location", "remote", "salary_min", "salary_max",
              "description", "created_at", "owner_id", "owner__username")


def post_out(row: dict[str, Any]) -> dict[str, Any]:
    """A post from a ``values(*POST_FIELDS)`` row."""
    return {
        "id": row["id"],
        "content": row["content"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "author": {"id": row["author_id"], "username": row["author__username"]},
    }


def job_out(row: dict[str, Any], tags: list[str]) -> dict[str, Any]:
    """A job from a ``values(*JOB_FIELDS)`` row and its tags."""
    return {
        "id": row["id"],
        "title": row["title"],
        "company": row["company"],
        "location": row["location"],
        "remote": bool(row["remote"]),
        "salary_min": row["salary_min"],
        "salary_max": row["salary_max"],
        "tags": tags,
        "description": row["description"],
        "created_at": row["created_at"],
        "owner": {"id": row["owner_id"], "username": row["owner__username"]},
    }


def job_row(job: Job, owner: User) -> dict[str, Any]:
    """The ``values(*JOB_FIELDS)`` row of a job model already in memory."""
    row = {name: getattr(job, name) for name in JOB_FIELDS[:-2]}
    row.update(owner_id=owner.id, owner__username=owner.username)
    return row


def user_out(row: dict[str, Any], counts: UserCounts) -> dict[str, Any]:
    """A user's public profile: no email."""
    return {"id": row["id"], "username": row["username"], "created_at": row["created_at"],
            **counts}


def me_out(user: User, counts: UserCounts) -> dict[str, Any]:
    """The signed-in user's own profile, with the email."""
    return {**user_out({"id": user.id, "username": user.username,
                        "created_at": user.created_at}, counts), "email": user.email}

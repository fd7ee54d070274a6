"""Job offers and their tags."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.user import User


def location_key(location: str) -> str:
    """The case-insensitive form of a location, as stored in ``Job.location_key``."""
    return location.strip().casefold()


class Job(Model):
    """A job offer; salary_min <= salary_max when both are set (checked by the handlers)."""

    id = fields.IntField(primary_key=True)
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="jobs", on_delete=fields.CASCADE
    )
    title = fields.CharField(max_length=200)
    company = fields.CharField(max_length=200)
    location = fields.CharField(max_length=120)
    location_key = fields.CharField(max_length=120)
    """``location`` case-folded: the location filter and the per-location stats use it."""
    remote = fields.BooleanField(default=False)
    salary_min = fields.IntField(null=True)
    salary_max = fields.IntField(null=True)
    description = fields.TextField(default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    tags: fields.ReverseRelation[JobTag]

    class Meta:
        table = "jobs"
        ordering = ["-created_at", "-id"]
        # The list walks (created_at, id) newest first, optionally within one location or
        # remote flag; the stats group by location_key.
        indexes = (("created_at", "id"), ("location_key", "created_at", "id"),
                   ("remote", "created_at", "id"))

    def __str__(self) -> str:
        return f"{self.title} at {self.company}"

    async def _pre_save(self, *args: object, **kwargs: object) -> None:
        self.location_key = location_key(self.location)
        await super()._pre_save(*args, **kwargs)  # type: ignore[arg-type]


class JobTag(Model):
    """One tag of a job: a row per (job, tag) so tag filters and counts use an index."""

    id = fields.IntField(primary_key=True)
    job: fields.ForeignKeyRelation[Job] = fields.ForeignKeyField(
        "models.Job", related_name="tags", on_delete=fields.CASCADE
    )
    tag = fields.CharField(max_length=40, db_index=True)

    class Meta:
        table = "job_tags"
        unique_together = (("job", "tag"),)

    def __str__(self) -> str:
        return self.tag

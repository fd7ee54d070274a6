"""Job offers and their tags."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Job(Model):
    """A job offer; salary_min <= salary_max when both are set (checked by the handlers)."""

    id = fields.IntField(primary_key=True)
    owner: fields.ForeignKeyRelation["User"] = fields.ForeignKeyField(  # noqa: F821
        "models.User", related_name="jobs", on_delete=fields.CASCADE
    )
    title = fields.CharField(max_length=200)
    company = fields.CharField(max_length=200)
    location = fields.CharField(max_length=120)
    remote = fields.BooleanField(default=False)
    salary_min = fields.IntField(null=True)
    salary_max = fields.IntField(null=True)
    description = fields.TextField(default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    tags: fields.ReverseRelation[JobTag]

    class Meta:
        table = "jobs"
        ordering = ["-created_at", "-id"]
        indexes = (("created_at", "id"), ("location", "created_at", "id"),
                   ("remote", "created_at", "id"))

    def __str__(self) -> str:
        return f"{self.title} at {self.company}"


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

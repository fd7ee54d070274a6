"""Posts of the feed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model
from tortoise.validators import MaxLengthValidator, MinLengthValidator

if TYPE_CHECKING:
    from models.user import User

MAX_CONTENT = 2_000


class Post(Model):
    """A post of 1 to 2,000 characters by one author."""

    id = fields.IntField(primary_key=True)
    author: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="posts", on_delete=fields.CASCADE
    )
    content = fields.TextField(
        validators=[MinLengthValidator(1), MaxLengthValidator(MAX_CONTENT)]
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "posts"
        ordering = ["-created_at", "-id"]
        # The feed walks (created_at, id) newest first; an author's feed adds author_id first.
        indexes = (("created_at", "id"), ("author_id", "created_at", "id"))

    def __str__(self) -> str:
        return f"post {self.id}"

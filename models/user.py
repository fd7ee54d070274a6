"""Users and the follow graph."""

from __future__ import annotations

from tortoise import fields
from tortoise.exceptions import ValidationError
from tortoise.models import Model

from models.sql import Statement

_CREDENTIALS = Statement("SELECT id, password_hash FROM users WHERE username = $1")


class User(Model):
    """An account; the password is stored only as an argon2 hash."""

    id = fields.IntField(primary_key=True)
    username = fields.CharField(max_length=32, unique=True)
    email = fields.CharField(max_length=254, unique=True)
    password_hash = fields.CharField(max_length=255)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "users"
        # Keyset pagination of the users list walks (created_at, id).
        indexes = (("created_at", "id"),)

    def __str__(self) -> str:
        return self.username


class Follow(Model):
    """``follower`` follows ``followee``; a pair appears at most once, never with itself."""

    id = fields.IntField(primary_key=True)
    follower: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="following", on_delete=fields.CASCADE
    )
    followee: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="followers", on_delete=fields.CASCADE, db_index=True
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "follows"
        unique_together = (("follower", "followee"),)

    def __str__(self) -> str:
        return f"{self.follower_id} -> {self.followee_id}"  # type: ignore[attr-defined]

    async def _pre_save(self, *args: object, **kwargs: object) -> None:
        if self.follower_id == self.followee_id:  # type: ignore[attr-defined]
            raise ValidationError("a user cannot follow themselves")
        await super()._pre_save(*args, **kwargs)  # type: ignore[arg-type]


async def credentials(username: str) -> tuple[int, str] | None:
    """The id and password hash of the user called ``username``, if any: the login's lookup,
    a fixed statement rather than the ORM's (whose query building cost a login about as much
    CPU again as the query itself, on the event loop that serves the cache's hits)."""
    rows = await _CREDENTIALS.fetch(username)
    return (int(rows[0][0]), str(rows[0][1])) if rows else None

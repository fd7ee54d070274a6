"""Users and the follow graph."""

from __future__ import annotations

from tortoise import fields
from tortoise.exceptions import ValidationError
from tortoise.models import Model


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

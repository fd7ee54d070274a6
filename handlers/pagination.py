"""Keyset pagination over ``(created_at, id)``, newest first, with opaque cursors.

A cursor is the base64url of the last item's ``[created_at, id]``; the next page is every row
strictly "older" than it.  Rows inserted while a client pages through a list are newer than its
cursor, so they never shift later pages: no duplicates, no skipped rows.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sanic import Request
from sanic.exceptions import BadRequest
from tortoise.expressions import Q

from handlers.validation import INT32_MAX

MAX_CURSOR_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Cursor:
    """Position after the last item of a page."""

    created_at: datetime
    id: int

    def encode(self) -> str:
        raw = orjson.dumps([self.created_at.astimezone(UTC).isoformat(), self.id])
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Parse a cursor made by :meth:`encode`; anything else is a 400 on ``cursor``."""
        invalid = BadRequest("cursor: is not a valid cursor")
        if len(token) > MAX_CURSOR_LENGTH or not token.isascii():
            raise invalid
        try:
            raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_",
                                   validate=True)
            created, row_id = orjson.loads(raw)
            if not isinstance(created, str) or type(row_id) is not int:
                raise invalid
            moment = datetime.fromisoformat(created)
            if moment.tzinfo is None:
                raise invalid
            moment = moment.astimezone(UTC)
        except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError, OverflowError):
            raise invalid from None
        if not 1 <= row_id <= INT32_MAX:
            raise invalid
        return cls(moment, row_id)

    def older(self, prefix: str = "") -> Q:
        """Rows after this cursor in ``created_at DESC, id DESC`` order, for an ORM query (the
        lists' fixed statements use :meth:`key` in a row comparison instead).

        Written as ``created_at <= c AND (created_at < c OR id < i)`` rather than a plain OR:
        the first term is a range on the index's leading column, so the database starts its
        ordered index scan at the cursor instead of filtering from the newest row.
        """
        at, key = f"{prefix}created_at", f"{prefix}id"
        up_to: dict[str, Any] = {f"{at}__lte": self.created_at}
        before: dict[str, Any] = {f"{at}__lt": self.created_at}
        lower_id: dict[str, Any] = {f"{key}__lt": self.id}
        return Q(**up_to) & (Q(**before) | Q(**lower_id))

    def key(self) -> tuple[datetime, int]:
        """``(created_at, id)``: the right-hand side of the raw statements' row comparison."""
        return self.created_at, self.id


def query_cursor(request: Request) -> Cursor | None:
    raw = request.args.get("cursor")
    if raw is None or not raw.strip():
        return None
    return Cursor.decode(raw.strip())


def split_page(rows: list[dict[str, Any]],
               limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """A page of ``limit`` items and the next page's cursor, from ``limit + 1`` fetched rows
    (each with ``created_at`` and ``id``): the extra row only says another page exists."""
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], Cursor(last["created_at"], last["id"]).encode()

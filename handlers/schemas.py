"""Request bodies (validated) and response shapes (documented) of the API, as pydantic models.

The request models are what :func:`handlers.validation.parse_body` checks; every model here also
feeds the OpenAPI description that sanic-ext serves at ``/docs``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from handlers.validation import INT32_MAX, Text, check_not_blank, check_text
from models.post import MAX_CONTENT

USERNAME_MAX_LENGTH = 32
"""The longest username (the ``users.username`` column's size)."""
_USERNAME = re.compile(rf"[A-Za-z0-9_.-]{{3,{USERNAME_MAX_LENGTH}}}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_TAGS = 10


def _username(value: str) -> str:
    if not _USERNAME.fullmatch(value):
        raise ValueError(f"must be 3 to {USERNAME_MAX_LENGTH} letters, digits, '_', '.' or '-'")
    return value


def _email(value: str) -> str:
    if len(value) > 254 or not _EMAIL.fullmatch(value):
        raise ValueError("must be an email address")
    return value.lower()


def _tags(values: list[str]) -> list[str]:
    tags: list[str] = []
    for value in values:
        tag = value.strip().lower()
        if not 1 <= len(tag) <= 40:
            raise ValueError("each tag must be 1 to 40 characters")
        if tag not in tags:
            tags.append(tag)
    return tags


# Length constraints come before the text checks so that pydantic reports them as string
# lengths ("must be at most 2000 characters").
Username = Annotated[str, AfterValidator(check_text), AfterValidator(_username),
                     Field(json_schema_extra={"pattern": f"^{_USERNAME.pattern}$"})]
Email = Annotated[str, StringConstraints(max_length=254), AfterValidator(check_text),
                  AfterValidator(_email), Field(json_schema_extra={"format": "email"})]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128),
                     AfterValidator(check_text)]
Content = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CONTENT),
                    AfterValidator(check_text), AfterValidator(check_not_blank)]
Title = Annotated[str, StringConstraints(min_length=1, max_length=200),
                  AfterValidator(check_text), AfterValidator(check_not_blank)]
Location = Annotated[str, StringConstraints(min_length=1, max_length=120),
                     AfterValidator(check_text), AfterValidator(check_not_blank)]
Description = Annotated[str, StringConstraints(max_length=20_000), AfterValidator(check_text)]
Salary = Annotated[int, Field(ge=0, le=INT32_MAX)]
Tags = Annotated[list[Text], Field(max_length=MAX_TAGS), AfterValidator(_tags)]


class Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class RegisterBody(Body):
    """``POST /api/auth/register``."""

    username: Username
    email: Email
    password: Password


class LoginBody(Body):
    """``POST /api/auth/login``."""

    username: Annotated[str, StringConstraints(min_length=1, max_length=254),
                        AfterValidator(check_text)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=128),
                        AfterValidator(check_text)]


class PostBody(Body):
    """``POST /api/posts`` and ``PATCH /api/posts/<id>``."""

    content: Content


def _check_salary(low: int | None, high: int | None) -> None:
    if low is not None and high is not None and low > high:
        raise ValueError("salary_min: must not exceed salary_max")


class JobBody(Body):
    """``POST /api/jobs``."""

    title: Title
    company: Title
    location: Location
    remote: bool = False
    salary_min: Salary | None = None
    salary_max: Salary | None = None
    tags: Tags = []
    description: Description = ""

    @model_validator(mode="after")
    def _salary_range(self) -> JobBody:
        _check_salary(self.salary_min, self.salary_max)
        return self


class JobPatch(Body):
    """``PATCH /api/jobs/<id>``: only the given fields change; ``null`` clears a salary."""

    title: Title | None = None
    company: Title | None = None
    location: Location | None = None
    remote: bool | None = None
    salary_min: Salary | None = None
    salary_max: Salary | None = None
    tags: Tags | None = None
    description: Description | None = None

    @model_validator(mode="after")
    def _not_null(self) -> JobPatch:
        for name in sorted(self.model_fields_set - {"salary_min", "salary_max"}):
            if getattr(self, name) is None:
                raise ValueError(f"{name}: must not be null")
        return self


# Response shapes: documentation only, the handlers build plain dicts.

class ErrorDetail(BaseModel):
    status: int
    message: str


class ErrorOut(BaseModel):
    """Every error: ``{"error": {"status", "message"}}``."""

    error: ErrorDetail


class Author(BaseModel):
    id: int
    username: str


class PostOut(BaseModel):
    id: int
    content: str
    created_at: datetime
    updated_at: datetime
    author: Author


class PostPage(BaseModel):
    items: list[PostOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null "
                                                "at the end.")


class JobOut(BaseModel):
    id: int
    title: str
    company: str
    location: str
    remote: bool
    salary_min: int | None
    salary_max: int | None
    tags: list[str]
    description: str
    created_at: datetime
    owner: Author


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class CountOut(BaseModel):
    count: int


class LocationCount(CountOut):
    location: str


class TagCount(CountOut):
    tag: str


class SalarySummary(BaseModel):
    min: int | None
    max: int | None
    avg_min: float | None
    avg_max: float | None
    jobs_with_salary: int


class JobStatsOut(BaseModel):
    total: int
    remote: int
    locations: list[LocationCount] = Field(description="The 10 most common locations.")
    tags: list[TagCount] = Field(description="The 50 most common tags.")
    salary: SalarySummary


class UserOut(BaseModel):
    id: int
    username: str
    created_at: datetime
    followers_count: int
    following_count: int
    posts_count: int


class MeOut(UserOut):
    email: str


class UserPage(BaseModel):
    items: list[UserOut]
    next_cursor: str | None


class AuthOut(BaseModel):
    user: MeOut
    token: str


class TokenOut(BaseModel):
    token: str


class FollowOut(BaseModel):
    following: bool
    user: UserOut

"""Rules: tag templates, validation, route matching."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from middleware.rules import CacheRule, InvalidationRule, normalise_route_path


class FakeArgs(dict[str, list[str]]):
    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        values = super().get(name)
        return values[0] if values else default


def request(match: dict[str, Any] | None = None, args: dict[str, list[str]] | None = None,
            **ctx: Any) -> Any:
    return SimpleNamespace(match_info=match or {}, args=FakeArgs(args or {}),
                           ctx=SimpleNamespace(**ctx))


def test_static_tags_are_expanded_for_reads() -> None:
    rule = CacheRule("/api/posts", ttl=30, tags=("posts:feed",))
    assert rule.compiled_tags.resolve(request()) == ("posts", "posts:feed")


def test_templates_use_path_and_query_params() -> None:
    rule = CacheRule("/api/posts/<post_id:int>", ttl=30, query=("author",),
                     tags=("post:{post_id}", "posts:author:{q.author}"))
    tags = rule.compiled_tags.resolve(request({"post_id": 5}, {"author": ["ann"]}))
    assert "post:5" in tags and "posts:author:ann" in tags


def test_template_without_value_is_skipped() -> None:
    rule = CacheRule("/api/posts", ttl=30, query=("author",), tags=("posts:author:{q.author}",))
    assert rule.compiled_tags.resolve(request()) == ()


def test_writes_clear_exactly_what_they_declare() -> None:
    rule = InvalidationRule("patch", "/api/posts/<post_id:int>",
                            clears=("posts:feed", "post:{post_id}"))
    assert rule.method == "PATCH"
    assert rule.compiled_tags.resolve(request({"post_id": 7}), expand=False) == (
        "posts:feed", "post:7")


def test_callable_tags() -> None:
    rule = InvalidationRule("POST", "/api/posts",
                            clears=lambda req: ("posts:feed", f"user:{req.ctx.user.id}"))
    req = request(user=SimpleNamespace(id=3))
    assert rule.compiled_tags.resolve(req, expand=False) == ("posts:feed", "user:3")


@pytest.mark.parametrize(("factory", "message"), [
    (lambda: CacheRule("/x", ttl=0), "ttl"),
    (lambda: CacheRule("/x", ttl=5, per_user=True, public=True), "exclude"),
    (lambda: CacheRule("/x", ttl=5, tags=("a:{q.author}",)), "query="),
    (lambda: CacheRule("/x", ttl=5, tags=("a:{post_id}",)), "path parameters"),
    (lambda: CacheRule("/x", ttl=5, tags=("a:{0}",)), "bad field"),
    (lambda: CacheRule("/x", ttl=5, tags="posts"), "callable"),
    (lambda: InvalidationRule("GET", "/x"), "write method"),
])
def test_bad_rules_fail_at_declaration(factory: Any, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        factory()


@pytest.mark.parametrize(("path", "expected"), [
    ("/api/posts", "api/posts"),
    ("/api/posts/<post_id:int>", "api/posts/<post_id>"),
    ("api/posts/<post_id>/", "api/posts/<post_id>"),
])
def test_normalise_route_path(path: str, expected: str) -> None:
    assert normalise_route_path(path) == expected

"""Keys are pure functions of path, listed query parameters and identity."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from middleware.keys import (
    EPOCH_TAG, MAX_KEY_LENGTH, app_key, canonical_path, canonical_query, expand_tag, expand_tags,
    generation_key, response_key,
)
from middleware.keys import _PATH_SAFE

ALLOWED = frozenset({"a", "b", "tag", "q", "author"})


@pytest.mark.parametrize(("query", "expected"), [
    ("", ""),
    ("a=1&b=2", "a=1&b=2"),
    ("b=2&a=1", "a=1&b=2"),
    ("tag=x&a=1&tag=y", "a=1&tag=x&tag=y"),
    ("tag=y&a=1&tag=x", "a=1&tag=y&tag=x"),
    ("a=1&utm_source=mail&zzz=9", "a=1"),
    ("utm_source=mail", ""),
    ("q=hello+world", "q=hello%20world"),
    ("q=hello%20world", "q=hello%20world"),
    ("q=%68ello", "q=hello"),
    ("q=caf%C3%A9", "q=caf%C3%A9"),
    ("q=caf%c3%a9", "q=caf%C3%A9"),
    ("q=café", "q=caf%C3%A9"),
    ("q=a%26b", "q=a%26b"),
    ("q=a&b", "b=&q=a"),
    ("q=a&zz", "q=a"),
    ("q=", "q="),
    ("q", "q="),
    ("author=ann%2Fbob", "author=ann%2Fbob"),
])
def test_canonical_query(query: str, expected: str) -> None:
    assert canonical_query(query, ALLOWED) == expected


def test_no_listed_params_ignores_the_query() -> None:
    assert canonical_query("a=1&b=2", ()) == ""


@pytest.mark.parametrize(("path", "expected"), [
    ("/api/posts", "/api/posts"),
    ("/api/posts/1;v=2", "/api/posts/1;v=2"),
    ("/api/users/ann b", "/api/users/ann%20b"),
    ("/api/café", "/api/caf%C3%A9"),
    ("/api/posts/%31", "/api/posts/%2531"),
    ("/f/a%2Fb", "/f/a%252Fb"),
])
def test_canonical_path(path: str, expected: str) -> None:
    assert canonical_path(path) == expected


def test_canonical_path_matches_quote_on_every_character() -> None:
    # The fast path (a path left as it is) must agree with quote() character by character.
    for code in [*range(0x00, 0x80), 0xA0, 0xE9, 0x2028, 0x1F600]:
        path = f"/a{chr(code)}b"
        assert canonical_path(path) == quote(path, safe=_PATH_SAFE), repr(path)


@pytest.mark.parametrize(("first", "second"), [
    ("/f/a%2Fb", "/f/a/b"),           # may route elsewhere: one or two path segments
    ("/f/%78", "/f/x"),               # a handler sees the raw parameter "%78"
    ("/f/%C3%A9", "/f/é"),
    ("/f/a%20b", "/f/a b"),
])
def test_distinct_raw_paths_never_share_a_key(first: str, second: str) -> None:
    assert response_key("ns", first) != response_key("ns", second)


@pytest.mark.parametrize(("first", "second"), [
    ("a=1&b=2", "b=2&a=1"),
    ("q=a+b", "q=a%20b"),
    ("a=1&junk=2", "a=1"),
])
def test_equivalent_queries_share_a_key(first: str, second: str) -> None:
    assert (response_key("ns", "/x", canonical_query(first, ALLOWED))
            == response_key("ns", "/x", canonical_query(second, ALLOWED)))


@pytest.mark.parametrize(("args", "expected"), [
    (("ns", "/api/posts", "", None), "ns:r:GET:/api/posts?"),
    (("ns", "/api/posts", "a=1", None), "ns:r:GET:/api/posts?a=1"),
    (("ns", "/api/me", "", "42"), "ns:r:GET:/api/me?|u=42"),
    (("ns", "/api/me", "", "a|u=b"), "ns:r:GET:/api/me?|u=a%7Cu%3Db"),
    (("other", "/api/posts", "", None), "other:r:GET:/api/posts?"),
])
def test_response_key(args: tuple[str, str, str, str | None], expected: str) -> None:
    assert response_key(*args) == expected


def test_identities_and_namespaces_never_collide() -> None:
    keys = {response_key("ns", "/me", "", None), response_key("ns", "/me", "", "1"),
            response_key("ns", "/me", "", "2"), response_key("ns2", "/me", "", "1")}
    assert len(keys) == 4


def test_long_keys_are_hashed_and_bounded() -> None:
    long_query = "q=" + "x" * 500
    key = response_key("ns", "/api/jobs", long_query)
    assert key.startswith("ns:h:") and len(key) <= MAX_KEY_LENGTH
    assert key == response_key("ns", "/api/jobs", long_query)
    assert key != response_key("ns", "/api/jobs", long_query + "y")
    assert len(app_key("ns", "k" * 400)) <= MAX_KEY_LENGTH


@pytest.mark.parametrize(("tag", "expected"), [
    ("posts", ("posts",)),
    ("posts:feed", ("posts", "posts:feed")),
    ("posts:author:ann", ("posts", "posts:author", "posts:author:ann")),
])
def test_expand_tag(tag: str, expected: tuple[str, ...]) -> None:
    assert expand_tag(tag) == expected


def test_expand_tags_dedupes_and_sorts() -> None:
    assert expand_tags(["post:2", "posts:feed", "post:1", ""]) == (
        "post", "post:1", "post:2", "posts", "posts:feed")


def test_generation_keys() -> None:
    assert generation_key("ns", "posts:feed") == "ns:gen:posts:feed"
    assert generation_key("ns", EPOCH_TAG) == "ns:gen:*epoch*"


def test_sized_memo_is_bounded_by_size_as_well_as_entries() -> None:
    from middleware.keys import SizedMemo

    memo = SizedMemo(max_entries=100, max_size=1000, max_item=300)
    memo.put("big", "x", 301)
    assert memo.get("big") is None and len(memo) == 0
    for i in range(50):
        memo.put(i, i, 90)
        assert memo.size <= 1000 and len(memo) <= 100
    assert memo.get(49) == 49


def test_oversized_or_deep_tags_are_refused_before_expansion() -> None:
    from middleware.keys import MAX_TAG_LENGTH, MAX_TAG_LEVELS, TagTooLong

    with pytest.raises(TagTooLong):
        expand_tags(["posts:author:" + "a" * MAX_TAG_LENGTH])
    with pytest.raises(TagTooLong):  # an 8 KB colon bomb would expand into 4,000 prefixes
        expand_tags(["posts:author:" + "a:" * 4000])
    with pytest.raises(TagTooLong):
        expand_tags([":".join("x" * (MAX_TAG_LEVELS + 1))])
    assert len(expand_tags(["a:" * (MAX_TAG_LEVELS - 2) + "b"])) == MAX_TAG_LEVELS - 1


def test_the_expansion_memo_stays_small_under_many_distinct_long_tags() -> None:
    from middleware import keys

    for i in range(5000):
        expand_tags([f"posts:author:{i:0>200}"])
    assert keys._EXPANDED.size <= keys._EXPANDED.max_size  # noqa: SLF001
    assert keys._EXPANDED.max_size <= 1 << 20  # noqa: SLF001

"""How a request becomes a cache key: pure functions, no I/O.

A response key is ``<ns>:r:GET:<path>?<canonical query>`` plus ``|u=<identity>`` on per-user
routes. HEAD shares the GET key. The path is kept as Sanic routes it, undecoded: ``/f/a%2Fb``
and ``/f/a/b`` may reach different routes, and handlers see raw (still percent-encoded) path
parameters, so decoding it would let two different responses share a key; it is only escaped
(injectively) to ASCII. Only the query parameters a rule lists take part; they are
decoded (``+`` and ``%20`` both mean a space, as Sanic's own parser sees them), stably sorted by
name (repeated parameters keep their order) and re-encoded with one quoting function, so
``?a=1&b=2``, ``?b=2&a=1`` and ``?b=%32&a=1`` share one entry. Keys longer than
``MAX_KEY_LENGTH`` are replaced by a blake2b digest.

Invalidation tags are hierarchical: ``posts:author:ann`` is cleared by clearing ``posts``,
``posts:author`` or ``posts:author:ann`` (``expand_tag``). Each tag has a generation counter
under ``<ns>:gen:<tag>``; ``EPOCH_TAG`` is the global counter every entry depends on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable
from typing import Any
from urllib.parse import parse_qsl, quote

__all__ = [
    "EPOCH_TAG", "MAX_KEY_LENGTH", "MAX_TAG_LENGTH", "MAX_TAG_LEVELS", "SizedMemo", "TagTooLong",
    "app_key", "bound_key", "canonical_path", "canonical_query", "expand_tag", "expand_tags",
    "generation_key", "response_key",
]

MAX_KEY_LENGTH = 200
"""Keys longer than this (in bytes; keys are ASCII) are hashed."""

EPOCH_TAG = "*epoch*"
"""The global generation every entry depends on; bumping it invalidates everything."""

_UNRESERVED = "-._~"
_PATH_SAFE = "/-._~!$&'()*+,;=:@"


def _q(text: str) -> str:
    return quote(text, safe=_UNRESERVED)


def bound_key(key: str, namespace: str) -> str:
    """Return ``key`` unchanged when short enough, else a namespaced blake2b digest of it."""
    if len(key) <= MAX_KEY_LENGTH:
        return key
    digest = hashlib.blake2b(key.encode(), digest_size=20).hexdigest()
    return f"{namespace}:h:{digest}"


def canonical_query(query_string: str, allowed: Collection[str]) -> str:
    """Keep only ``allowed`` parameters, stably sorted by name, with one percent-encoding.

    Blank values are kept (``?q=`` differs from no ``q``): a key may be finer than the
    handler's view, never coarser.
    """
    if not query_string or not allowed:
        return ""
    pairs = [(name, value)
             for name, value in parse_qsl(query_string, keep_blank_values=True, errors="replace")
             if name in allowed]
    if not pairs:
        return ""
    pairs.sort(key=lambda pair: pair[0])
    return "&".join(f"{_q(name)}={_q(value)}" for name, value in pairs)


_UNCHANGED_PATH = re.compile(r"[A-Za-z0-9_.~/!$&'()*+,;=:@-]*")
"""The paths ``quote(path, safe=_PATH_SAFE)`` returns as they are: only characters it never
escapes (ASCII letters and digits, ``_.-~`` and ``_PATH_SAFE``; no ``%``)."""


def canonical_path(path: str) -> str:
    """``path`` escaped to ASCII, never decoded (see the module docstring): distinct raw paths
    give distinct keys (``%`` itself is escaped, so ``/a%2Fb`` cannot meet ``/a/b``)."""
    if _UNCHANGED_PATH.fullmatch(path):
        # Nearly every path: one regex match instead of quote()'s encode and per-byte join,
        # on every lookup (hits included).
        return path
    return quote(path, safe=_PATH_SAFE)


def response_key(namespace: str, path: str, query: str = "",
                 identity: str | None = None) -> str:
    """The key of a GET/HEAD response: namespace, path, canonical query, optional identity."""
    key = f"{namespace}:r:GET:{canonical_path(path)}?{query}"
    if identity is not None:
        key = f"{key}|u={_q(identity)}"
    return bound_key(key, namespace)


def app_key(namespace: str, key: str) -> str:
    """The key of an application value stored with ``set_cached``."""
    return bound_key(f"{namespace}:v:{key}", namespace)


def generation_key(namespace: str, tag: str) -> str:
    """The counter key of one invalidation tag (``<ns>:gen:<tag>``)."""
    return bound_key(f"{namespace}:gen:{tag}", namespace)


MAX_TAG_LENGTH = 256
"""A read's tags longer than this (characters) are refused (``TagTooLong``: the request bypasses
the cache). Tags come from request input (``posts:author:{q.author}``); an 8 KB value with a
colon every other byte would otherwise expand into thousands of prefixes, megabytes of
generation keys and one huge MGET, before the handler could reject it."""

MAX_TAG_LEVELS = 16
"""Likewise for a tag with more ``:``-separated levels than this."""


class TagTooLong(ValueError):
    """A read's tag exceeds ``MAX_TAG_LENGTH`` or ``MAX_TAG_LEVELS``: bypass the cache."""


def expand_tag(tag: str) -> tuple[str, ...]:
    """``"a:b:c"`` -> ``("a", "a:b", "a:b:c")``: clearing any prefix clears the tag."""
    if ":" not in tag:
        return (tag,)
    parts = tag.split(":")
    return tuple(":".join(parts[: i + 1]) for i in range(len(parts)))


class SizedMemo:
    """A memo bounded by entries and by the summed size (characters) of what it holds.

    The hot path's memos (expanded tags, generation keys) are keyed by request-derived tags:
    bounded by count alone, 4,096 entries of 8 KB values pinned 65 MiB per worker. Entries
    larger than ``max_item`` are never kept; reaching either bound clears the memo (the same
    few tags repeat, so it refills at once).
    """

    __slots__ = ("_data", "_size", "max_entries", "max_item", "max_size")

    def __init__(self, max_entries: int = 4096, max_size: int = 1 << 20,
                 max_item: int = 4096) -> None:
        self._data: dict[Any, Any] = {}
        self._size = 0
        self.max_entries = max_entries
        self.max_size = max_size
        self.max_item = max_item

    def __len__(self) -> int:
        return len(self._data)

    @property
    def size(self) -> int:
        """The summed size of the entries held."""
        return self._size

    def get(self, key: Any) -> Any:
        return self._data.get(key)

    def put(self, key: Any, value: Any, size: int) -> None:
        """Keep ``value`` under ``key``; ``size`` counts both (characters)."""
        if size > self.max_item:
            return
        if len(self._data) >= self.max_entries or self._size + size > self.max_size:
            self._data.clear()
            self._size = 0
        self._data[key] = value
        self._size += size


_EXPANDED = SizedMemo()


def expand_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Expand every tag, de-duplicate and sort (a stable order for generation vectors).

    Memoised (a request's tags repeat: the feed, one author, one post) in a ``SizedMemo``.
    Raises ``TagTooLong`` past ``MAX_TAG_LENGTH`` / ``MAX_TAG_LEVELS``.
    """
    given = tuple(tags)
    expanded: tuple[str, ...] | None = _EXPANDED.get(given)
    if expanded is None:
        out: set[str] = set()
        size = 0
        for tag in given:
            if tag:
                if len(tag) > MAX_TAG_LENGTH or tag.count(":") >= MAX_TAG_LEVELS:
                    raise TagTooLong(f"cache tag of {len(tag)} characters: {tag[:40]!r}...")
                out.update(expand_tag(tag))
                size += len(tag)
        expanded = tuple(sorted(out))
        _EXPANDED.put(given, expanded, size + sum(len(tag) for tag in expanded))
    return expanded

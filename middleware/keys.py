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
from collections.abc import Collection, Iterable
from urllib.parse import parse_qsl, quote

__all__ = [
    "EPOCH_TAG", "MAX_KEY_LENGTH", "app_key", "bound_key", "canonical_path", "canonical_query",
    "expand_tag", "expand_tags", "generation_key", "response_key",
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


def canonical_path(path: str) -> str:
    """``path`` escaped to ASCII, never decoded (see the module docstring): distinct raw paths
    give distinct keys (``%`` itself is escaped, so ``/a%2Fb`` cannot meet ``/a/b``)."""
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


def expand_tag(tag: str) -> tuple[str, ...]:
    """``"a:b:c"`` -> ``("a", "a:b", "a:b:c")``: clearing any prefix clears the tag."""
    if ":" not in tag:
        return (tag,)
    parts = tag.split(":")
    return tuple(":".join(parts[: i + 1]) for i in range(len(parts)))


_EXPANDED: dict[tuple[str, ...], tuple[str, ...]] = {}


def expand_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Expand every tag, de-duplicate and sort (a stable order for generation vectors).

    Memoised (a request's tags repeat: the feed, one author, one post), in at most 4096 entries.
    """
    given = tuple(tags)
    expanded = _EXPANDED.get(given)
    if expanded is None:
        out: set[str] = set()
        for tag in given:
            if tag:
                out.update(expand_tag(tag))
        expanded = tuple(sorted(out))
        if len(_EXPANDED) >= 4096:
            _EXPANDED.clear()
        _EXPANDED[given] = expanded
    return expanded

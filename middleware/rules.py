"""Per-route rules: what a GET caches and what a write clears, compiled once at start-up.

A separate module from ``policy`` (the design listed none) because it holds the user-facing
declarations and their compiled form; ``policy`` stays pure predicates over headers.

Tags are strings, format templates or a callable ``(request) -> iterable of tags``.
Templates take path parameters by name (``"post:{post_id}"``) and query parameters with a
``q.`` prefix (``"posts:author:{q.author}"``); a template whose field has no value is skipped.
A GET rule's query fields must be among its key parameters, otherwise two requests sharing one
entry could depend on different tags.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from string import Formatter
from typing import TYPE_CHECKING, Any, Union

from middleware.keys import expand_tags

if TYPE_CHECKING:
    from sanic import Request

__all__ = ["CacheRule", "CompiledTags", "InvalidationRule", "TagSource", "normalise_route_path"]

TagSource = Union[tuple[str, ...], list[str], Callable[["Request"], Iterable[str]]]

_TYPED_PARAM = re.compile(r"<([^:>]+):[^>]+>")


def normalise_route_path(path: str) -> str:
    """``"/api/posts/<post_id:int>/"`` -> ``"api/posts/<post_id>"`` (for matching routes)."""
    return _TYPED_PARAM.sub(r"<\1>", path.strip("/"))


def _route_params(path: str) -> set[str]:
    return set(re.findall(r"<([^:>]+)", path))


class _Template:
    """One tag template compiled to literal text and (kind, name) fields."""

    __slots__ = ("parts", "path_fields", "query_fields")

    def __init__(self, template: str) -> None:
        parts: list[tuple[str, str, str]] = []
        self.path_fields: set[str] = set()
        self.query_fields: set[str] = set()
        for literal, name, spec, conv in Formatter().parse(template):
            if spec or conv:
                raise ValueError(f"tag template {template!r}: no format specs or conversions")
            if name is None:
                parts.append((literal, "", ""))
            elif name.startswith("q."):
                parts.append((literal, "q", name[2:]))
                self.query_fields.add(name[2:])
            elif name and name.isidentifier():
                parts.append((literal, "p", name))
                self.path_fields.add(name)
            else:
                raise ValueError(f"tag template {template!r}: bad field {name!r}")
        self.parts = tuple(parts)

    def render(self, request: Request) -> str | None:
        out: list[str] = []
        for literal, kind, name in self.parts:
            out.append(literal)
            if kind == "p":
                value: Any = request.match_info.get(name)
            elif kind == "q":
                value = request.args.get(name)
            else:
                continue
            if value is None or value == "":
                return None
            out.append(str(value))
        return "".join(out)


class CompiledTags:
    """Resolves a rule's tags for a request: expanded, de-duplicated, sorted."""

    __slots__ = ("_callable", "_declared", "_static", "_templates")

    def __init__(self, source: TagSource) -> None:
        self._callable: Callable[[Request], Iterable[str]] | None = None
        self._templates: tuple[_Template, ...] = ()
        self._static: tuple[str, ...] = ()
        self._declared: tuple[str, ...] = ()
        if callable(source):
            self._callable = source
            return
        if isinstance(source, str):
            raise TypeError("tags must be a tuple of strings or a callable, not one string")
        static: list[str] = []
        templates: list[_Template] = []
        for tag in source:
            if "{" in tag:
                templates.append(_Template(tag))
            else:
                static.append(tag)
        self._templates = tuple(templates)
        self._declared = tuple(static)
        self._static = expand_tags(static)

    @property
    def path_fields(self) -> set[str]:
        return set().union(*(t.path_fields for t in self._templates))

    @property
    def query_fields(self) -> set[str]:
        return set().union(*(t.query_fields for t in self._templates))

    def resolve(self, request: Request, *, expand: bool = True) -> tuple[str, ...]:
        """The tags of ``request``; expanded to every prefix (what a read depends on, see
        ``keys.expand_tag``) or, with ``expand=False``, as declared (what a write clears)."""
        if self._callable is not None:
            tags: Iterable[str] = self._callable(request)
        elif not self._templates:
            return self._static if expand else self._declared
        else:
            rendered = [t.render(request) for t in self._templates]
            tags = [*self._declared, *(tag for tag in rendered if tag)]
        if expand:
            return expand_tags(tags)
        return tuple(dict.fromkeys(tag for tag in tags if tag))


@dataclass(frozen=True)
class CacheRule:
    """How one GET route is cached.

    ``path`` is the Sanic route URI template (``"/api/posts/<post_id:int>"``; the parameter
    types may be omitted). ``query`` lists the parameters that take part in the key (all others
    are ignored). ``tags`` name what the entry depends on (see the module docstring).
    ``per_user`` puts the identity from ``identify(request)`` in the key (no identity: bypass).
    ``public`` declares that the response does not depend on credentials, so requests with
    ``Authorization``/``Cookie`` may share the entry. ``local=False`` keeps the route out of
    the hot tier (``middleware.hot``): every hit is one Redis round trip, as strict as Redis.

    ``stale_while_revalidate`` / ``stale_if_error``: seconds past the TTL during which an entry
    whose generations are still current may be served while one request refreshes it in the
    background, or instead of a 5xx from the handler (``middleware.stale``). The entry is then
    stored for the TTL plus the longer window. ``advertise_stale`` also sends both windows to
    downstream caches (``Cache-Control: max-age=<ttl>, stale-while-revalidate=..,
    stale-if-error=..``). Only for rules without tags: a browser or CDN cannot see this
    cache's invalidations, so on a tagged route it would serve data a write had invalidated.
    """

    path: str
    ttl: int
    query: tuple[str, ...] = ()
    tags: TagSource = ()
    per_user: bool = False
    public: bool = False
    local: bool = True
    stale_while_revalidate: int = 0
    stale_if_error: int = 0
    advertise_stale: bool = False
    compiled_tags: CompiledTags = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.ttl < 1:
            raise ValueError(f"CacheRule {self.path}: ttl must be >= 1 second")
        if self.stale_while_revalidate < 0 or self.stale_if_error < 0:
            raise ValueError(f"CacheRule {self.path}: stale windows must be >= 0 seconds")
        if self.advertise_stale and not (self.stale_while_revalidate or self.stale_if_error):
            raise ValueError(f"CacheRule {self.path}: advertise_stale needs a stale window")
        if self.advertise_stale and (callable(self.tags) or tuple(self.tags)):
            raise ValueError(
                f"CacheRule {self.path}: advertise_stale is only for rules without tags (a "
                "downstream cache cannot see invalidations; it would serve invalidated data)")
        if self.per_user and self.public:
            raise ValueError(f"CacheRule {self.path}: per_user and public exclude each other")
        object.__setattr__(self, "query", tuple(self.query))
        compiled = CompiledTags(self.tags)
        missing = compiled.query_fields - set(self.query)
        if missing:
            raise ValueError(f"CacheRule {self.path}: tag fields {sorted(missing)} must be "
                             "listed in query= (they must be part of the key)")
        _check_path_fields(self.path, compiled)
        object.__setattr__(self, "compiled_tags", compiled)

    @property
    def storage_ttl(self) -> int:
        """How long an entry is stored: the TTL plus the longer stale window."""
        return self.ttl + max(self.stale_while_revalidate, self.stale_if_error)


@dataclass(frozen=True)
class InvalidationRule:
    """What a successful (2xx) write clears: ``clears`` tags or a callable ``(request) -> tags``.

    Also after a 5xx, which may have failed after its commit, once the request reached the
    handler. The callable runs in the response hook, after the handler, so it may read values
    the handler put on ``request.ctx`` (such as the authenticated user). When those values are
    missing the write was refused before it could commit: return no tags. A callable that
    raises is a bug and clears everything (the global epoch), so it must never raise on input
    a client controls.
    """

    method: str
    path: str
    clears: TagSource = ()
    compiled_tags: CompiledTags = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        method = self.method.upper()
        if method not in {"POST", "PUT", "PATCH", "DELETE"}:
            raise ValueError(f"InvalidationRule {self.path}: {self.method} is not a write method")
        object.__setattr__(self, "method", method)
        compiled = CompiledTags(self.clears)
        _check_path_fields(self.path, compiled)
        object.__setattr__(self, "compiled_tags", compiled)


def _check_path_fields(path: str, compiled: CompiledTags) -> None:
    unknown = compiled.path_fields - _route_params(path)
    if unknown:
        raise ValueError(f"rule {path}: tag fields {sorted(unknown)} are not path parameters")

"""Cache-Status (RFC 9211) values: each one a valid RFC 8941 list, parsed strictly."""

from __future__ import annotations

from typing import Any

import http_sf
import pytest

from middleware.settings import CacheSettings
from middleware.status import CacheStatus, serialise_name


def parse(value: str) -> list[tuple[Any, dict[str, Any]]]:
    return [(name, dict(params)) for name, params in http_sf.parse(value.encode(),
                                                                   tltype="list")]


T = http_sf.Token
STATUS = CacheStatus("rc")


@pytest.mark.parametrize(("value", "params"), [
    (STATUS.hit(12), {"hit": True, "ttl": 12}),
    (STATUS.hit(-3), {"hit": True, "ttl": -3}),
    (STATUS.hit(5, collapsed=True), {"hit": True, "ttl": 5, "collapsed": True}),
    (STATUS.forwarded(stale=False, refresh=False, stored=True),
     {"fwd": T("uri-miss"), "stored": True}),
    (STATUS.forwarded(stale=False, refresh=False, stored=False), {"fwd": T("uri-miss")}),
    (STATUS.forwarded(stale=True, refresh=False, stored=True),
     {"fwd": T("stale"), "stored": True}),
    (STATUS.forwarded(stale=True, refresh=True, stored=False), {"fwd": T("request")}),
    (STATUS.stale_on_error(503, -40), {"fwd": T("stale"), "fwd-status": 503, "ttl": -40}),
    (STATUS.bypass(), {"fwd": T("bypass")}),
    (STATUS.error(), {"fwd": T("uri-miss"), "detail": T("backend-error")}),
])
def test_every_value_is_one_rfc_8941_list_member(value: str, params: dict[str, Any]) -> None:
    assert parse(value) == [(T("rc"), params)]


@pytest.mark.parametrize(("name", "wire", "parsed"), [
    ("response-cache", "response-cache", T("response-cache")),
    ("edge:1/a", "edge:1/a", T("edge:1/a")),
    ("1cache", '"1cache"', "1cache"),
    ('my "cache" \\ x', '"my \\"cache\\" \\\\ x"', 'my "cache" \\ x'),
])
def test_a_name_is_a_token_when_it_can_be_else_a_string(
        name: str, wire: str, parsed: Any) -> None:
    assert serialise_name(name) == wire
    assert parse(CacheStatus(name).bypass())[0][0] == parsed


@pytest.mark.parametrize("name", ["", "caché", "tab\there", "nl\n"])
def test_a_name_a_structured_field_cannot_carry_is_refused(name: str) -> None:
    with pytest.raises(ValueError):
        serialise_name(name)


def test_the_default_name() -> None:
    assert CacheSettings().status_name == "response-cache"

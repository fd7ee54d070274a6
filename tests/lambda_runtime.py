"""A stand-in for the AWS Lambda Python runtime, in-process: one thread that imports the
function's module once (the init phase) and then calls its handler with one event at a time
(the invocations of a warm container), as the real runtime does. Events are API Gateway v2
(HTTP API) payloads, the format function URLs use too."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import itertools
import json
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

_modules = itertools.count()


def http_api_event(method: str, target: str, *, headers: Mapping[str, str] | None = None,
                   body: Any = None) -> dict[str, Any]:
    """An API Gateway HTTP API (payload format 2.0) event for ``method target``."""
    url = urlsplit(target)
    all_headers = {"host": "abc123.execute-api.eu-west-1.amazonaws.com",
                   "user-agent": "lambda-test", "x-forwarded-proto": "https"}
    raw_body = None
    if body is not None:
        raw_body = json.dumps(body)
        all_headers["content-type"] = "application/json"
    all_headers.update({key.lower(): value for key, value in (headers or {}).items()})
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": url.path,
        "rawQueryString": url.query,
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123",
            "domainName": all_headers["host"], "domainPrefix": "abc123",
            "http": {"method": method, "path": url.path, "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.7", "userAgent": "lambda-test"},
            "requestId": "req", "routeKey": "$default", "stage": "$default",
            "time": "02/Dec/2026:09:00:00 +0000", "timeEpoch": 1796202000000,
        },
        "body": raw_body,
        "isBase64Encoded": False,
    }


@dataclass
class Answer:
    """What the handler returned, decoded."""

    status: int
    headers: dict[str, str]
    body: bytes
    raw: dict[str, Any] = field(repr=False)

    def json(self) -> Any:
        return json.loads(self.body)


class Container:
    """One warm container: the module imported once, invocations one at a time."""

    def __init__(self, module: ModuleType, thread: ThreadPoolExecutor) -> None:
        self.module = module
        self._thread = thread

    def invoke(self, method: str, target: str, **kwargs: Any) -> Answer:
        event = http_api_event(method, target, **kwargs)
        context = SimpleNamespace(function_name="api", aws_request_id="req",
                                  get_remaining_time_in_millis=lambda: 30_000)
        raw = self._thread.submit(self.module.handler, event, context).result(timeout=60)
        body = raw.get("body") or ""
        data = base64.b64decode(body) if raw.get("isBase64Encoded") else body.encode()
        return Answer(raw["statusCode"], {k.lower(): v for k, v in
                                          (raw.get("headers") or {}).items()}, data, raw)


@contextmanager
def container(path: Path) -> Iterator[Container]:
    """Import the module at ``path`` in a fresh thread (a fresh module object, so every test
    gets its own app built from the environment it set); stop its app at the end."""
    name = f"lambda_function_{next(_modules)}"

    def load() -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lambda") as thread:
        module = thread.submit(load).result(timeout=60)
        box = Container(module, thread)
        try:
            yield box
        finally:
            def shut() -> None:
                loop = asyncio.get_event_loop()
                try:
                    loop.run_until_complete(module.app.stop())
                    loop.run_until_complete(loop.shutdown_asyncgens())
                finally:
                    loop.close()

            thread.submit(shut).result(timeout=60)

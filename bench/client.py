"""A tiny keep-alive HTTP client on the standard library, for the bench's own requests.

Load comes from wrk; this is for set-up (log in, warm, invalidate), timing single writes and the
deployed-URL latency check, where one sequential connection is exactly what is wanted.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def x_cache(self) -> str:
        return self.headers.get("x-cache", "")


class Client:
    """One persistent connection to ``base_url`` (http or https), reopened when it drops."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=self.timeout)
        return self._conn

    def request(self, method: str, path: str, *, body: Any = None,
                headers: dict[str, str] | None = None) -> Reply:
        """Send one request; ``body`` is sent as JSON when given."""
        data = None if body is None else json.dumps(body).encode()
        send_headers = dict(headers or {})
        if data is not None:
            send_headers.setdefault("Content-Type", "application/json")
        for attempt in (1, 2):
            conn = self._connection()
            started = time.perf_counter()
            try:
                conn.request(method, self.prefix + path, body=data, headers=send_headers)
                response = conn.getresponse()
                payload = response.read()
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt == 2:
                    raise
                continue
            elapsed = time.perf_counter() - started
            reply_headers = {k.lower(): v for k, v in response.getheaders()}
            if reply_headers.get("connection", "").lower() == "close":
                self.close()
            return Reply(response.status, reply_headers, payload, elapsed)
        raise AssertionError("unreachable")

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return self.request("GET", path, headers=headers)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

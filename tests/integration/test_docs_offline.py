"""``/docs`` renders in a real browser with no network: headless Chromium (Debian's
``chromium``, installed by ``scripts/test-services``) against the running service, every
request outside loopback refused, and the dumped DOM must list the API's operations.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

from app import create_app
from settings import Settings
from tests.server import running

CHROMIUM_TIMEOUT_SECONDS = 60
"""Wall-clock bound of one browser run (it usually takes 2-5 s)."""

# Every request outside loopback goes to a dead proxy, and no host name resolves: a page that
# needs a CDN renders nothing.
OFFLINE_FLAGS = (
    "--proxy-server=127.0.0.1:9",  # loopback bypasses the proxy (Chromium's default)
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
)


async def dump_dom(url: str, profile: Path) -> str:
    """The DOM of ``url`` after Chromium ran its scripts (virtual time: no real waiting)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is missing: run scripts/test-services (apt-get install chromium)"
    process = await asyncio.create_subprocess_exec(
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-extensions", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
        *OFFLINE_FLAGS, "--virtual-time-budget=15000", "--dump-dom", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), CHROMIUM_TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


async def test_docs_render_the_operations_without_network(
        make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    app = create_app(make_settings(cache_enabled=False))
    async with running(app) as client:
        dom = await dump_dom(f"{client.base_url}/docs", tmp_path / "profile")
    # Swagger UI's operation blocks, one per operation, with their paths.
    assert 'class="swagger-ui' in dom
    assert "opblock-summary-path" in dom
    for path in ("/api/posts", "/api/jobs/stats", "/api/users/list", "/api/auth/login"):
        assert f'data-path="{path}"' in dom, path


async def test_docs_assets_are_served_locally(client) -> None:  # type: ignore[no-untyped-def]
    page = await client.get("/docs")
    assert page.status == 200
    assert "://" not in page.text  # nothing loaded from another origin
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"):
        assert f"/docs/ui/{asset}" in page.text
        response = await client.get(f"/docs/ui/{asset}")
        assert response.status == 200, asset
        assert len(response.content) > 10_000
    assert (await client.get("/docs/ui/../../setup.cfg")).status == 404
    assert (await client.get("/docs/ui/index.html")).status == 404

"""Swagger UI at ``/docs``, served from the service itself: no CDN, works offline.

sanic-ext's own page loads Swagger UI from a CDN (a blank page without internet access), and
its ``/docs/oauth2-redirect.html`` fetches a file from a CDN, synchronously, inside the event
loop, on request. Here the assets come from the ``swagger-ui-bundle`` package (swagger-ui-dist
files packaged for PyPI) and only the three files the page needs are served; sanic-ext keeps
serving the description at ``/docs/openapi.json`` (``OAS_UI_SWAGGER=False`` in ``app.py``).
"""

from __future__ import annotations

from pathlib import Path

from sanic import Blueprint, Request
from sanic.exceptions import NotFound
from sanic.response import HTTPResponse, file, html
from sanic_ext import openapi
from sanic_ext.extensions.openapi.extension import OpenAPIExtension
from swagger_ui_bundle import swagger_ui_path

bp = Blueprint("docs_ui", url_prefix="/docs")

ASSETS_URI = "/docs/ui"
SPEC_URI = "/docs/openapi.json"

_ASSETS = {
    name: Path(str(swagger_ui_path)) / name
    for name in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
                 "favicon-32x32.png", "favicon-16x16.png")
}
"""The only files served: a fixed list, never a path built from the request."""

ASSET_MAX_AGE = 86_400
"""Browsers keep the assets a day (they change only with the package; ETag revalidates)."""

PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Sanic cached API</title>
  <link rel="stylesheet" type="text/css" href="{ASSETS_URI}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{ASSETS_URI}/favicon-32x32.png" sizes="32x32">
  <style>body {{ margin: 0; }}</style>
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{ASSETS_URI}/swagger-ui-bundle.js" charset="UTF-8"></script>
  <script src="{ASSETS_URI}/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
  <script>
    window.onload = function () {{
      window.ui = SwaggerUIBundle({{
        url: "{SPEC_URI}",
        dom_id: "#swagger-ui",
        deepLinking: true,
        validatorUrl: null,
        presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
        plugins: [SwaggerUIBundle.plugins.DownloadUrl],
        layout: "StandaloneLayout"
      }});
    }};
  </script>
</body>
</html>
"""
# validatorUrl null: Swagger UI would otherwise send the description to validator.swagger.io.


class LocalUIOpenAPIExtension(OpenAPIExtension):
    """sanic-ext's OpenAPI extension, for an app whose UI page is this module's.

    With sanic-ext's own pages off there is no ``openapi.index`` route, which its start-up
    banner names; the banner names ``/docs`` instead. (Extension names must be unique.)
    """

    name = "openapilocalui"

    def label(self) -> str:
        return str(bp.url_prefix) if self.app.config.OAS else ""


@bp.get("", name="index")
@bp.get("/swagger", name="swagger")
@openapi.exclude()
async def index(request: Request) -> HTTPResponse:
    """The Swagger UI page."""
    return html(PAGE)


@bp.get("/ui/<name:str>", name="asset")
@openapi.exclude()
async def asset(request: Request, name: str) -> HTTPResponse:
    """One of the page's static files."""
    path = _ASSETS.get(name)
    if path is None:
        raise NotFound(f"No such file: {name}")
    return await file(path, max_age=ASSET_MAX_AGE, request_headers=request.headers)

"""Pages served beside the API: the console (``/console``), the OpenAPI page (``/docs``) with its
assets served locally (no CDN), and ``/`` pointing to both."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from detector.errors import NotFoundError

CONSOLE_DIR = Path(str(resources.files("detector.service") / "console"))
SWAGGER_DIR = Path(str(resources.files("fastapi_offline") / "static"))
CONSOLE_ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}
# The console's own scripts and styles only: no inline script, no other origin.
CONSOLE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
                  "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")

router = APIRouter(include_in_schema=False)


def swagger_assets() -> StaticFiles:
    return StaticFiles(directory=SWAGGER_DIR)


@router.get("/", response_class=HTMLResponse)
def home() -> HTMLResponse:
    return HTMLResponse("""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Counterfeit detector</title></head>
<body><h1>Counterfeit detector</h1><ul><li><a href="/console">Console</a>: brands, checks, review queue, dashboard</li>
<li><a href="/docs">API documentation</a> (OpenAPI)</li></ul></body></html>""")


@router.get("/console", response_class=HTMLResponse)
def console() -> FileResponse:
    return FileResponse(CONSOLE_DIR / "index.html", media_type="text/html",
                        headers={"Content-Security-Policy": CONSOLE_POLICY, "Cache-Control": "no-cache"})


@router.get("/console/{asset}")
def console_asset(asset: str) -> FileResponse:
    if asset not in CONSOLE_ASSETS:
        raise NotFoundError(f"no console asset {asset!r}")
    return FileResponse(CONSOLE_DIR / asset, media_type=CONSOLE_ASSETS[asset], headers={"Cache-Control": "no-cache"})


@router.get("/docs", response_class=HTMLResponse)
def docs(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url=request.app.openapi_url, title=f"{request.app.title} - docs",
                               swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                               swagger_css_url="/static/swagger/swagger-ui.css",
                               swagger_favicon_url="/static/swagger/favicon.png",
                               swagger_ui_parameters={"persistAuthorization": False})

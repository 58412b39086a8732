"""/console: the web page of the team and the operator, and /docs without a CDN.

The console is a small JavaScript application with no build step (``static/``), signing in
through /auth/v1 and using only the public /v1 API and event streams: whatever it can do,
any client can. Every asset ships inside the package; the page's Content-Security-Policy
lets it load nothing from anywhere else.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC = Path(str(resources.files("syntera.console") / "static"))
# Swagger UI 5 and ReDoc, as fastapi-offline packages them (with their licences).
DOCS_ASSETS = Path(str(resources.files("fastapi_offline") / "static"))

# Only this origin: scripts, styles, fetches and event streams, and the widget preview's
# frame (the widget demo page, served by the API itself).
CONSOLE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
NO_CACHE = {"Cache-Control": "no-cache"}

console = APIRouter(include_in_schema=False)


@console.get("/console")
async def console_page() -> Response:
    """The console's one page; the application routes inside it (``#/inbox``, …)."""
    return HTMLResponse(
        (STATIC / "index.html").read_bytes(),
        headers={"Content-Security-Policy": CONSOLE_POLICY, **NO_CACHE},
    )


@console.get("/console/")
async def console_slash() -> RedirectResponse:
    return RedirectResponse("/console", status_code=308)


def install_console(app: FastAPI) -> None:
    """Serve the console and its assets, and Swagger UI (/docs) and ReDoc (/redoc) from
    the package."""
    app.include_router(console)
    app.mount("/console/assets", StaticFiles(directory=STATIC), name="console-assets")
    app.mount("/docs/assets", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            redoc_js_url="/docs/assets/redoc.standalone.js",
            redoc_favicon_url="/docs/assets/favicon.png",
            with_google_fonts=False,
        )

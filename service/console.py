"""The web console at ``/`` and the API docs at ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc),
served from files inside the package: no CDN, no Node build, so all of it works offline.

The console is static HTML, CSS and a little vanilla JavaScript (``static/console/``) that uses
only the public REST API; the docs pages are FastAPI's own, pointed at the vendored assets in
``static/vendor/`` (versions and licences in its README). None of these routes needs an API key
(they hold no data) and none is in the OpenAPI document; the API calls the pages make are
checked as usual.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (get_redoc_html, get_swagger_ui_html,
                                  get_swagger_ui_oauth2_redirect_html)
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
CONSOLE = STATIC / "console"
STATIC_URL = "/static"
DOCS_URL, REDOC_URL = "/docs", "/redoc"
OAUTH2_REDIRECT_URL = DOCS_URL + "/oauth2-redirect"
# The console's page: revalidated on every load (a new version shows at once), and allowed to
# load and call nothing but this server (it shows documents' text: no injected script runs).
CONSOLE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}
# Swagger UI's validator badge would send the schema's URL to validator.swagger.io: off.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}


def mount_console(app: FastAPI) -> None:
    """Add the console, its static files and the offline /docs and /redoc to ``app`` (built
    with ``docs_url=None, redoc_url=None``, so FastAPI's CDN-based pages are not there)."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC), name="static")

    def root(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    async def console(request: Request):
        return FileResponse(CONSOLE / "index.html", headers=CONSOLE_HEADERS)

    async def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request)
        vendor = f"{base}{STATIC_URL}/vendor/swagger-ui"
        return get_swagger_ui_html(
            openapi_url=base + app.openapi_url, title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{vendor}/swagger-ui-bundle.js", swagger_css_url=f"{vendor}/swagger-ui.css",
            swagger_favicon_url=f"{vendor}/favicon-32x32.png",
            oauth2_redirect_url=base + OAUTH2_REDIRECT_URL,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters={**SWAGGER_UI_PARAMETERS, **(app.swagger_ui_parameters or {})})

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        base = root(request)
        return get_redoc_html(
            openapi_url=base + app.openapi_url, title=f"{app.title} - ReDoc",
            redoc_js_url=f"{base}{STATIC_URL}/vendor/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{base}{STATIC_URL}/vendor/swagger-ui/favicon-32x32.png",
            with_google_fonts=False)

    for path, endpoint in (("/", console), (DOCS_URL, swagger_ui),
                           (OAUTH2_REDIRECT_URL, oauth2_redirect), (REDOC_URL, redoc)):
        app.add_route(path, endpoint, methods=["GET", "HEAD"], include_in_schema=False)

"""`bert14 serve --ui`: a page at / to try the model, served by the server itself.

One HTML file (page.html) with its script (page.js) and style (page.css) served beside it by the same
server: no external assets, so it works on a machine without internet and leaks nothing to a CDN, and
no inline code, so the Content-Security-Policy allows only scripts and styles of its own origin. It
reads /v1/model and posts to /v1/classify like any client: paste a text, choose the long-text
strategy (bert14/long_text.py), see every label's score as a bar and, for windows, each window's top
label placed along the text. With an API key on the server, the page itself is open (it holds no
data) and asks for the key, which it sends as `Authorization: Bearer` on each call and keeps in the
page only.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response

HERE = Path(__file__).parent
AUTH_MARK = "__BERT14_AUTH__"  # page.html's placeholder: "1" when the server requires an API key
# The page's script and style, served beside it so that the policy allows no inline code at all.
ASSETS = {"/page.js": ("page.js", "text/javascript"), "/page.css": ("page.css", "text/css")}

# The page runs its own served script and style, and talks to its own origin only.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def add_page(app: FastAPI, auth: bool) -> None:
    html = (HERE / "page.html").read_text(encoding="utf-8").replace(AUTH_MARK, "1" if auth else "0")

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(html, headers=HEADERS)

    for route, (name, media_type) in ASSETS.items():
        app.add_api_route(route, _serving((HERE / name).read_bytes(), media_type), methods=["GET"],
                          include_in_schema=False)  # fmt: skip


def _serving(body: bytes, media_type: str):  # noqa: ANN202 - a route without parameters
    async def asset() -> Response:
        return Response(body, media_type=media_type, headers=HEADERS)

    return asset

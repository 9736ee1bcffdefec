"""`bert14 serve --ui`: a page at / to try the model, served by the server itself.

One HTML file (page.html) with its style and script inline: no external assets, so it works on a
machine without internet and leaks nothing to a CDN. It reads /v1/model and posts to /v1/classify
like any client: paste a text, choose the long-text strategy (bert14/long_text.py), see every label's
score as a bar and, for windows, each window's top label placed along the text. With an API key on
the server, the page itself is open (it holds no data) and asks for the key, which it sends as
`Authorization: Bearer` on each call and keeps in the page only.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

PAGE = Path(__file__).with_name("page.html")
AUTH_MARK = "__BERT14_AUTH__"  # page.html's placeholder: "1" when the server requires an API key

# The page runs its own inline script and talks to its own origin only.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def add_page(app: FastAPI, auth: bool) -> None:
    html = PAGE.read_text(encoding="utf-8").replace(AUTH_MARK, "1" if auth else "0")

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(html, headers=HEADERS)

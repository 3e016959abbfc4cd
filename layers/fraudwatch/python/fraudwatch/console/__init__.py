"""The analysts' console: server-rendered HTML pages of the review cases, no build step.

Jinja2 templates with autoescaping on for every page: whatever a transaction carried (ids, reasons, an
analyst's comment) is text on the page, never markup. The one script (assign, comment, close) posts
JSON to the same `/v1/cases` routes the API documents, so the console holds no logic of its own, and a
cross-site form cannot post to it (a JSON body needs a CORS preflight, which the API never grants);
the Content-Security-Policy admits that script alone, by its hash.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2 import Environment

    from fraudwatch.domain.cases import Case, CasePage, QueueFilter

SCRIPT = (resources.files(__package__) / "templates" / "console.js").read_text()
"""The console's script, inlined into each page and allowed by its hash."""
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; connect-src 'self'; "
    f"script-src 'sha256-{base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()}'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@functools.cache
def _environment() -> Environment:
    """Loaded on the first page only: the scoring routes never import Jinja2 (cold start)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=PackageLoader(__package__, "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _render(name: str, **context: Any) -> str:
    return _environment().get_template(name).render(script=SCRIPT, **context)


def queue_page(page: CasePage, where: QueueFilter, analyst: str) -> str:
    """The queue: open cases, oldest first, with their reasons and scores, and the filters."""
    return _render("queue.html", page=page, where=where, analyst=analyst)


def case_page(case: Case, analyst: str) -> str:
    """One case: the payment, the reasons, the user's recent decisions, the history, and the actions."""
    return _render("case.html", case=case, analyst=analyst)


def error_page(status: int, title: str, detail: str) -> str:
    """An error as a page (not found, invalid), in the console's layout."""
    return _render("error.html", status=status, title=title, detail=detail, analyst="")

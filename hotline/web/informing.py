"""The informing desk for supervisors and admins: district campaigns (write, preview
the audience, approve someone else's, follow the progress, cancel) and the outbox's
dead letters (inspect, replay one or all).

The page is a shell rendered on the server with the districts and topics; every
action goes through the JSON APIs of :mod:`hotline.web.campaigns` and
:mod:`hotline.web.outbox_admin` (same roles, same CSRF token), so the page can do
nothing the API would refuse.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from hotline.web.campaigns import CAMPAIGNS_CONFIG, EDITORS
from hotline.web.common import POOL, Route, html_response, principal, render
from hotline.web.guard import csrf_token

PATH = "/admin/informing"


async def informing_page(request: web.Request) -> web.Response:
    rows = await request.app[POOL].fetch("SELECT code, name_uk, name_en FROM districts "
                                         "ORDER BY name_uk")
    config = request.app.get(CAMPAIGNS_CONFIG)
    topics = ({code: t.uk for code, t in config.topics.items()} if config is not None else {})
    districts = {r["code"]: r["name_uk"] for r in rows}
    # Data for the script goes in attributes (escaped by render), never as inline script.
    return html_response(render("informing.html", name=principal(request).login,
                                csrf=csrf_token(request),
                                districts=json.dumps(districts, ensure_ascii=False),
                                topics=json.dumps(topics, ensure_ascii=False)))


_PAGE = {"200": {"description": "the page", "content": {"text/html": {"schema": {
    "type": "string"}}}}, "401": {"description": "not signed in"},
    "403": {"description": "not a supervisor or admin"}}

#: This module's part of the OpenAPI document (:mod:`hotline.web.openapi`).
OPENAPI_PATHS: dict[str, Any] = {
    PATH: {"get": {"summary": "campaigns and dead letters, for supervisors and admins",
                   "security": [{"session": []}], "responses": _PAGE}},
}

ROUTES = [Route("GET", PATH, informing_page, EDITORS)]

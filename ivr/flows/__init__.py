"""Call flows, one module per FastAGI route, registered by name in :func:`build_routes`."""

from __future__ import annotations

from hotline.core.ports import IvrJournal
from ivr.flows.main_menu import ROUTE_NAME as MAIN_MENU_ROUTE
from ivr.flows.main_menu import make_main_menu
from ivr.menu import IvrConfig
from ivr.server import Route

__all__ = ["MAIN_MENU_ROUTE", "build_routes"]


def build_routes(config: IvrConfig, journal: IvrJournal, server_id: str) -> dict[str, Route]:
    """The route table for :class:`ivr.server.FastAgiServer` (path of the agi:// URL → flow)."""
    return {MAIN_MENU_ROUTE: make_main_menu(config, journal, server_id)}

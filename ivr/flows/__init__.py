"""Call flows, one module per FastAGI route (or step of one), registered by
name in :func:`build_routes`.

Routes: ``ivr`` (:mod:`~ivr.flows.main_menu`, with the steps
:mod:`~ivr.flows.language` and :mod:`~ivr.flows.appeal_status`) and
``survey`` (:mod:`~ivr.flows.survey`). Every node, digit, timeout, retry and
exit goes to the IVR journal (``ivr_steps``) under the step names each module's
docstring lists: the main menu's unprefixed, the others ``<flow>.<event>``.
"""

from __future__ import annotations

from hotline.core.ports import AppealLookup, CallerLanguages, IvrJournal, SurveySink
from ivr.flows.callflow import Callflow
from ivr.flows.main_menu import ROUTE_NAME as MAIN_MENU_ROUTE
from ivr.flows.main_menu import make_main_menu
from ivr.flows.survey import ROUTE_NAME as SURVEY_ROUTE
from ivr.flows.survey import make_survey
from ivr.menu import IvrConfig
from ivr.server import Route

__all__ = ["MAIN_MENU_ROUTE", "SURVEY_ROUTE", "build_routes"]


def build_routes(
    config: IvrConfig,
    journal: IvrJournal,
    server_id: str,
    *,
    languages: CallerLanguages | None = None,
    appeals: AppealLookup | None = None,
    surveys: SurveySink | None = None,
    speakable: frozenset[str] | None = None,
    callflow: Callflow | None = None,
) -> dict[str, Route]:
    """The route table for :class:`ivr.server.FastAgiServer` (path of the agi:// URL → flow).
    ``speakable``: the category and executor names that have prompts."""
    return {
        MAIN_MENU_ROUTE: make_main_menu(config, journal, server_id, languages=languages,
                                        appeals=appeals, speakable=speakable,
                                        callflow=callflow),
        SURVEY_ROUTE: make_survey(config.survey, journal, surveys, server_id),
    }

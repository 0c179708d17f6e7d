"""Route ``survey``: the post-call satisfaction survey (1–5).

The dialplan queues with ``Queue(…,c…)`` so that the caller stays on the line
when the operator hangs up, and then runs ``AGI(agi://…/survey,<member
interface>)``. A configured share of those callers (``[survey] share`` of
``ivr.toml``, chosen by a hash of the call's uniqueid, so a retried AGI asks the
same callers) is asked to press 1 to 5; the score goes on the call
(``calls.survey_score``, through :class:`~hotline.core.ports.SurveySink`), and
so on its operator (``calls.operator_interface``). The prompts play in the
channel's language, which the ``ivr`` route set.

Journal steps (``ivr_steps.step``, detail in brackets):
- ``survey.skipped`` (``share``) — not in the sampled share;
- ``survey.offer`` (``attempt``, ``operator``);
- ``survey.score`` (``score``, ``attempt``, ``stored``: bool, ``operator``);
- ``survey.invalid`` (``digit``, ``attempt``); ``survey.timeout`` (``attempt``);
- ``survey.exit`` (``reason``: scored / no_answer);
- ``survey.hangup`` (``during``) — the caller left; ``survey.error`` (``error``).
"""

from __future__ import annotations

import asyncio
import hashlib

from hotline.core.ports import IvrJournal, SurveySink
from ivr.flows.journal import step_recorder
from ivr.menu import SurveyConfig
from ivr.server import AgiHangup, AgiSession, Route

ROUTE_NAME = "survey"
SCORES = "12345"


def sampled(uniqueid: str, share: float) -> bool:
    """Whether this call is in the surveyed ``share`` (stable per uniqueid)."""
    if share <= 0:
        return False
    if share >= 1:
        return True
    value = int.from_bytes(hashlib.sha256(uniqueid.encode()).digest()[:8], "big") / 2**64
    return value < share


def make_survey(
    config: SurveyConfig,
    journal: IvrJournal,
    surveys: SurveySink | None,
    server_id: str,
    *,
    journal_timeout: float = 1.0,
    store_timeout: float = 2.0,
) -> Route:
    async def survey(session: AgiSession) -> None:
        log = session.log.bind(flow=ROUTE_NAME)
        record = step_recorder(journal, server_id, session.env.uniqueid, log, journal_timeout)
        operator = session.env.args[0] if session.env.args else ""
        if not sampled(session.env.uniqueid, config.share):
            await record("survey.skipped", share=config.share)
            return
        step = "offer"
        try:
            for attempt in range(1, config.max_attempts + 1):
                step = "offer"
                await record("survey.offer", attempt=attempt, operator=operator)
                digit, _ = await session.get_data(config.prompt, config.timeout_ms, 1)
                if not digit:
                    await record("survey.timeout", attempt=attempt)
                    continue
                if digit not in SCORES:
                    await record("survey.invalid", digit=digit, attempt=attempt)
                    continue
                step = "store"
                stored = await _store(session, int(digit), operator)
                await record("survey.score", score=int(digit), attempt=attempt, stored=stored,
                             operator=operator)
                log.info("ivr_survey_scored", score=int(digit), stored=stored)
                step = "thanks"
                await session.stream_file(config.thanks_prompt)
                await record("survey.exit", reason="scored")
                return
            await record("survey.exit", reason="no_answer")
        except AgiHangup as exc:
            log.info("ivr_caller_hung_up", step=f"survey.{step}", reason=str(exc))
            await record("survey.hangup", during=step)
        except Exception as exc:
            await record("survey.error", during=step, error=type(exc).__name__)
            raise

    async def _store(session: AgiSession, score: int, operator: str) -> bool:
        if surveys is None:
            return False
        try:
            async with asyncio.timeout(store_timeout):
                return await surveys.record_survey(
                    server_id, session.env.uniqueid, score, operator)
        except Exception as exc:  # the journal still has the score
            session.log.warning("ivr_survey_store_failed", error=repr(exc))
            return False

    return survey

"""Appeals: lifecycle, duplicates, due dates and routing to executors (issue 7).

- :mod:`.service` — :class:`AppealsService`, the one way to change an appeal;
- :mod:`.routing` — the pure choice of an executor; :mod:`.routing_admin` — rules
  in the case store, loaded from ``config/routing.toml`` and edited by admins;
- :mod:`.addresses` — address keys and distances; :mod:`.config` — the files;
- :mod:`.store` — the SQL.
The status catalogue and the transition table are in :mod:`hotline.core.appeals`,
working days in :mod:`hotline.core.workdays`.

How the other parts use it (``service = AppealsService(pool, calendar=cfg.calendar,
settings=cfg.settings)`` with ``cfg = load_appeals_config(settings.config_path)``):

- operator desktop: ``register(NewAppeal(channel=Channel.PHONE, call_id=…,
  citizen_phone=…, category=…, district=…, address=…, text=…), Actor(OPERATOR, login))``
  → ``Registered`` (``.appeal.number`` to read back; ``.primary`` when it was linked
  as a duplicate); ``list_appeals(actor, AppealFilter(citizen_id=…))`` for the pop;
  ``update_details`` (re-routes), ``assign`` (by hand), ``change_status``;
- Open311 intake: ``register`` with ``intake_key`` (a retried POST gives the same
  appeal, ``created=False``) and ``Actor(SYSTEM, "open311:<channel>")``;
  ``list_appeals(actor, AppealFilter(statuses=…, category_ids=…, created_from=…,
  numbers=…), after=Cursor.decode(token))``; ``AppealSummary.open311_status``,
  ``status_reason`` (status_notes), ``executor_name`` (agency_responsible),
  ``due_at`` (expected_datetime), ``media_url``;
- executor portal: ``Actor(EXECUTOR, login, executor_id=…)``; ``accept``,
  ``start_work``, ``ask_clarification``, ``resolve``, ``reject``, ``decline``
  ("not ours"), ``add_comment``, ``list_appeals`` / ``overdue`` / ``due_soon``;
  ``expected_version`` refuses a change made on a stale page; another
  organisation's appeal is :class:`~hotline.core.appeals.AppealNotFound`;
  ``allowed_targets(status, ActorKind.EXECUTOR)`` for the buttons;
- IVR: :class:`~hotline.core.appeals.AppealLookup` (``open_appeals_of_phone``,
  ``appeal_for_caller``), which the service implements;
- notifications and CRM sync: outbox rows, written in the change's transaction,
  topics ``appeal.created``, ``appeal.status_changed``, ``appeal.updated``,
  ``appeal.citizen_attached``, ``appeal.comment_added``, ``appeal.attachment_added``;
  key ``appeal:<id>:history:<history id>`` (or ``…:comment:<id>``); the payload has
  the number, statuses from/to, the note, category and executor names, due date,
  Open311 status and ``citizen_ids`` (contacts and consent stay in ``citizens``).
"""

from crm_sync.appeals.config import AppealsConfig, load_appeals_config
from crm_sync.appeals.routing_admin import RoutingAdmin, load_routing_config
from crm_sync.appeals.service import (
    AppealFilter,
    AppealsService,
    Cursor,
    NewAppeal,
    NewAttachment,
    Page,
    Registered,
)

__all__ = [
    "AppealFilter",
    "AppealsConfig",
    "AppealsService",
    "Cursor",
    "NewAppeal",
    "NewAttachment",
    "Page",
    "Registered",
    "RoutingAdmin",
    "load_appeals_config",
    "load_routing_config",
]

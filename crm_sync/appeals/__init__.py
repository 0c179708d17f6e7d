"""Appeals: lifecycle, duplicates, due dates and routing to executors (issue 7).

- :mod:`.service` — :class:`AppealsService`, the one way to change an appeal;
- :mod:`.routing` — the pure choice of an executor; :mod:`.routing_admin` — rules
  in the case store, loaded from ``config/routing.toml`` and edited by admins;
- :mod:`.addresses` — address keys and distances; :mod:`.config` — the files;
- :mod:`.store` — the SQL.
The status catalogue and the transition table are in :mod:`hotline.core.appeals`,
working days in :mod:`hotline.core.workdays`.
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

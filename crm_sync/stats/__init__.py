"""Contact-centre statistics: pure arithmetic (:mod:`.metrics`, :mod:`.erlang`)
apart from the queries (:mod:`.queries`, :mod:`.today`), the rollups that keep
reports fast over years (:mod:`.rollup`) and the history generator (:mod:`.history`).

Definitions are Asterisk's (``app_queue``): see :mod:`.metrics`."""

from crm_sync.stats.metrics import percent, service_levels
from crm_sync.stats.today import figures_by_queue

__all__ = ["figures_by_queue", "percent", "service_levels"]

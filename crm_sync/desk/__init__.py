"""The operator's in-call panel (issue 8): the call's appeal form, the knowledge
base, the directory of city services and the wrap-up.

- :mod:`.config` — ``config/desk.toml`` (disposition labels, taxonomy keywords),
  the street list (street → district) and the phone directory, with their checks;
- :mod:`.calls` — the call the panel works on, its disposition and article;
- :mod:`.intake` — the appeal form: every field checked, then the citizen and
  their consent, then :class:`~crm_sync.appeals.AppealsService` registers it;
- :mod:`.search` — the typo-tolerant taxonomy search (pg_trgm);
- :mod:`.knowledge` — knowledge-base articles and their Ukrainian full-text search.
"""

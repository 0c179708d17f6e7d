-- The executor portal's text search: words anywhere in an appeal's address or text.
-- Trigrams (pg_trgm, shipped with PostgreSQL and trusted, so the database owner may
-- create it) serve ILIKE '%word%' for any language and for parts of words, which the
-- 'simple' full-text configuration cannot (a street name typed without its ending).
-- The expression must stay the one crm_sync.appeals.service writes in its filter.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE INDEX appeals_search_trgm_idx ON appeals
    USING gin ((address || ' ' || text) gin_trgm_ops);

-- Executors' users are looked up by their organisation (who works for whom).
CREATE INDEX operators_executor_idx ON operators (executor_id) WHERE executor_id IS NOT NULL;

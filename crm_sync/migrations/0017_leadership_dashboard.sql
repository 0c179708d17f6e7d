-- The leadership dashboard (issue 11): roll-ups that keep every tile under a
-- second over ten years of calls and appeals, the moment an appeal was settled
-- (for "overdue"), and figures imported from elsewhere (the seed's 2017 tables).
--
-- Roll-ups hold whole Kyiv days (months) before their watermark; what comes
-- after it is read live from calls/appeals, so a period still open includes
-- today. crm_sync.leadership.rollups refreshes them.

-- When an appeal became done or rejected (NULL while open): overdue means the
-- due time passed before it was settled, which status_changed_at cannot tell
-- once the appeal is closed a month later.
ALTER TABLE appeals ADD COLUMN settled_at timestamptz;

CREATE FUNCTION appeals_track_settled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IN ('done', 'rejected') AND OLD.status NOT IN ('done', 'rejected') THEN
        NEW.settled_at := coalesce(NEW.status_changed_at, now());
    ELSIF NEW.status NOT IN ('done', 'rejected', 'closed') THEN
        NEW.settled_at := NULL;  -- reopened: on the clock again
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER appeals_track_settled BEFORE UPDATE OF status ON appeals
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION appeals_track_settled();

-- Calls per hour (UTC hour start).
CREATE TABLE leadership_calls_hourly (
    hour      timestamptz PRIMARY KEY,
    offered   integer NOT NULL,
    answered  integer NOT NULL,
    abandoned integer NOT NULL
);

-- Appeals per Kyiv day, channel and district; per Kyiv day, category and district; and the
-- same two per month (the first of the month), so ten years sum few rows.
CREATE TABLE leadership_appeals_channel (
    grain       text NOT NULL CHECK (grain IN ('day', 'month')),
    day         date NOT NULL,
    channel     text NOT NULL,
    district_id integer NOT NULL,  -- 0: no district
    n           integer NOT NULL,
    PRIMARY KEY (grain, day, channel, district_id)
);
CREATE TABLE leadership_appeals_issue (
    grain       text NOT NULL CHECK (grain IN ('day', 'month')),
    day         date NOT NULL,
    category_id integer NOT NULL,
    district_id integer NOT NULL,  -- 0: no district
    n           integer NOT NULL,
    PRIMARY KEY (grain, day, category_id, district_id)
);

-- Per creation month, executor and category: the counts the ratings are made of.
CREATE TABLE leadership_executor_monthly (
    month       date NOT NULL,
    executor_id integer NOT NULL,
    category_id integer NOT NULL,
    received    integer NOT NULL,
    due         integer NOT NULL,
    overdue     integer NOT NULL,
    settled     integer NOT NULL,
    reopened    integer NOT NULL,
    rejected    integer NOT NULL,
    PRIMARY KEY (month, executor_id, category_id)
);

-- name: 'calls' | 'appeals' | 'executors'; upto: everything before it is rolled up.
CREATE TABLE leadership_watermarks (
    name text PRIMARY KEY,
    upto timestamptz NOT NULL
);

-- Figures for a year that did not come from our own appeals (the seed's 2017
-- tables): counts per executor and measure, and the published values next to them.
CREATE TABLE leadership_figures (
    year        integer NOT NULL,
    executor_id integer NOT NULL REFERENCES executors (id) ON DELETE CASCADE,
    measure     text NOT NULL,
    value       bigint NOT NULL,
    PRIMARY KEY (year, executor_id, measure)
);
CREATE TABLE leadership_published (
    year        integer NOT NULL,
    executor_id integer NOT NULL REFERENCES executors (id) ON DELETE CASCADE,
    key         text NOT NULL,        -- e.g. K3, rating, place:overall
    value       numeric(12, 4) NOT NULL,
    PRIMARY KEY (year, executor_id, key)
);

-- Appeals' lifecycle (issue 7): the status catalogue, history with who/why/channel,
-- citizens attached to an appeal (duplicates), comments, attachments, routing
-- decisions and richer routing rules, SLA per category, numbers by Kyiv year.

-- The one catalogue of statuses: hotline.core.appeals.AppealStatus repeats it
-- and tests/integration/test_appeals_schema.py compares the two.
ALTER TABLE appeals DROP CONSTRAINT appeals_status_check;
UPDATE appeals SET status = 'done' WHERE status = 'resolved';
ALTER TABLE appeals ADD CONSTRAINT appeals_status_check CHECK (status IN (
    'registered', 'routed', 'accepted', 'in_progress', 'needs_clarification', 'done',
    'rejected', 'reopened', 'closed'));

ALTER TABLE appeals
    ADD COLUMN address_norm      text NOT NULL DEFAULT '',   -- crm_sync.appeals.addresses
    ADD COLUMN latitude          double precision CHECK (latitude BETWEEN -90 AND 90),
    ADD COLUMN longitude         double precision CHECK (longitude BETWEEN -180 AND 180),
    ADD COLUMN duplicate_of      bigint REFERENCES appeals (id),
    ADD COLUMN status_reason     text,                       -- why the last status change
    ADD COLUMN status_changed_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN closed_at         timestamptz,
    ADD COLUMN reopen_count      integer NOT NULL DEFAULT 0,
    ADD COLUMN version           integer NOT NULL DEFAULT 1, -- +1 on every change
    ADD COLUMN intake_key        text,                       -- a channel's idempotency key
    ADD CONSTRAINT appeals_point_both CHECK ((latitude IS NULL) = (longitude IS NULL)),
    ADD CONSTRAINT appeals_not_own_duplicate CHECK (duplicate_of <> id),
    ADD CONSTRAINT appeals_intake_key_unique UNIQUE (channel, intake_key);

-- Duplicate search: open primaries of a category at an address or near a point.
CREATE INDEX appeals_dup_address_idx ON appeals (category_id, address_norm)
    WHERE duplicate_of IS NULL AND address_norm <> ''
      AND status IN ('registered', 'routed', 'accepted', 'in_progress',
                     'needs_clarification', 'reopened');
CREATE INDEX appeals_dup_point_idx ON appeals (category_id, latitude, longitude)
    WHERE duplicate_of IS NULL AND latitude IS NOT NULL
      AND status IN ('registered', 'routed', 'accepted', 'in_progress',
                     'needs_clarification', 'reopened');
CREATE INDEX appeals_duplicate_of_idx ON appeals (duplicate_of) WHERE duplicate_of IS NOT NULL;
-- Keyset pages, newest first: an executor's list (everything; the open part, as
-- a whole or one status; overdue), Open311 GET requests (all, or one service
-- code). Most appeals end closed, so the open part gets indexes of its own.
CREATE INDEX appeals_executor_page_idx ON appeals (executor_id, created_at DESC, id DESC);
CREATE INDEX appeals_executor_open_page_idx ON appeals (executor_id, created_at DESC, id DESC)
    WHERE status IN ('registered', 'routed', 'accepted', 'in_progress',
                     'needs_clarification', 'reopened');
CREATE INDEX appeals_executor_open_status_page_idx
    ON appeals (executor_id, status, created_at DESC, id DESC)
    WHERE status IN ('registered', 'routed', 'accepted', 'in_progress',
                     'needs_clarification', 'reopened');
CREATE INDEX appeals_page_idx ON appeals (created_at DESC, id DESC);
CREATE INDEX appeals_category_page_idx ON appeals (category_id, created_at DESC, id DESC);
DROP INDEX appeals_created_idx;  -- appeals_page_idx serves its queries
DROP INDEX appeals_executor_status_due_idx;  -- superseded by the two below
-- Overdue and due soon: only what is on an executor's clock, city-wide or per executor.
CREATE INDEX appeals_on_clock_due_idx ON appeals (due_at)
    WHERE status IN ('registered', 'routed', 'accepted', 'in_progress', 'reopened');
CREATE INDEX appeals_executor_on_clock_due_idx ON appeals (executor_id, due_at)
    WHERE status IN ('registered', 'routed', 'accepted', 'in_progress', 'reopened');

-- History: every change, who made it, through which channel, and why.
ALTER TABLE appeal_history
    ADD COLUMN event       text NOT NULL DEFAULT 'status'
                           CHECK (event IN ('created', 'status', 'updated', 'duplicate_linked',
                                            'citizen_attached')),
    ADD COLUMN actor_kind  text NOT NULL DEFAULT 'system'
                           CHECK (actor_kind IN ('citizen', 'operator', 'supervisor', 'admin',
                                                 'executor', 'system')),
    ADD COLUMN channel     text NOT NULL DEFAULT 'system'
                           CHECK (channel IN ('phone', 'web', 'mobile', 'facebook',
                                              'gov_contact_centre', 'executor_portal', 'ivr',
                                              'admin', 'system')),
    ADD COLUMN executor_id integer REFERENCES executors (id),  -- the executor after the change
    ADD COLUMN details     jsonb NOT NULL DEFAULT '{}',
    ADD CONSTRAINT appeal_history_from_status_check CHECK (from_status IN (
        'registered', 'routed', 'accepted', 'in_progress', 'needs_clarification', 'done',
        'rejected', 'reopened', 'closed')),
    ADD CONSTRAINT appeal_history_to_status_check CHECK (to_status IN (
        'registered', 'routed', 'accepted', 'in_progress', 'needs_clarification', 'done',
        'rejected', 'reopened', 'closed'));

-- Citizens of an appeal: its author, and those whose report was a duplicate of it.
CREATE TABLE appeal_citizens (
    appeal_id   bigint NOT NULL REFERENCES appeals (id) ON DELETE CASCADE,
    citizen_id  bigint NOT NULL REFERENCES citizens (id),
    role        text NOT NULL CHECK (role IN ('author', 'joined')),
    via_appeal  bigint REFERENCES appeals (id),          -- the duplicate that joined them
    attached_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (appeal_id, citizen_id)
);
CREATE INDEX appeal_citizens_citizen_idx ON appeal_citizens (citizen_id);

CREATE TABLE appeal_comments (
    id          bigserial PRIMARY KEY,
    appeal_id   bigint NOT NULL REFERENCES appeals (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    actor_kind  text NOT NULL,
    channel     text NOT NULL,
    visibility  text NOT NULL CHECK (visibility IN ('internal', 'citizen')),
    body        text NOT NULL CHECK (body <> '')
);
CREATE INDEX appeal_comments_appeal_idx ON appeal_comments (appeal_id, at);

-- Metadata only: the files live where the API's client put them.
CREATE TABLE appeal_attachments (
    id           bigserial PRIMARY KEY,
    appeal_id    bigint NOT NULL REFERENCES appeals (id) ON DELETE CASCADE,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,
    url          text NOT NULL CHECK (url ~ '^https?://'),
    content_type text,
    caption      text NOT NULL DEFAULT '',
    UNIQUE (appeal_id, url)
);

-- Routing rules: any category (NULL), streets or a circle, the fallback, who owns the row.
ALTER TABLE routing_rules ALTER COLUMN category_id DROP NOT NULL;
ALTER TABLE routing_rules
    ADD COLUMN name             text NOT NULL DEFAULT '',
    ADD COLUMN address_prefixes text[] NOT NULL DEFAULT '{}',  -- normalised street prefixes
    ADD COLUMN area_lat         double precision,
    ADD COLUMN area_lon         double precision,
    ADD COLUMN area_radius_m    double precision CHECK (area_radius_m > 0),
    ADD COLUMN fallback         boolean NOT NULL DEFAULT false,
    ADD COLUMN active           boolean NOT NULL DEFAULT true,
    -- seed: the taxonomy's default; config: config/routing.toml (replaced on each
    -- load); admin: edited by a person (a load never overwrites it)
    ADD COLUMN source           text NOT NULL DEFAULT 'seed'
                                CHECK (source IN ('seed', 'config', 'admin')),
    ADD COLUMN updated_at       timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN updated_by       text NOT NULL DEFAULT '',
    ADD CONSTRAINT routing_rules_area_whole CHECK (
        (area_lat IS NULL) = (area_lon IS NULL) AND (area_lat IS NULL) = (area_radius_m IS NULL)),
    ADD CONSTRAINT routing_rules_fallback_anywhere CHECK (NOT fallback OR (
        category_id IS NULL AND district_id IS NULL AND address_prefixes = '{}'
        AND area_lat IS NULL));
CREATE UNIQUE INDEX routing_rules_one_fallback ON routing_rules ((true)) WHERE fallback AND active;
CREATE INDEX routing_rules_category_idx ON routing_rules (category_id) WHERE active;

-- Every routing decision, with the rule that made it and why.
CREATE TABLE appeal_routings (
    id              bigserial PRIMARY KEY,
    appeal_id       bigint NOT NULL REFERENCES appeals (id) ON DELETE CASCADE,
    at              timestamptz NOT NULL DEFAULT now(),
    trigger         text NOT NULL CHECK (trigger IN ('created', 'category_changed',
                        'address_changed', 'declined', 'manual', 'reopened')),
    actor           text NOT NULL,
    executor_id     integer REFERENCES executors (id),    -- NULL: nobody (no rule, no fallback)
    rule_id         integer REFERENCES routing_rules (id) ON DELETE SET NULL,
    reason          text NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}',
    declined_at     timestamptz,                          -- the executor said "not ours"
    declined_by     text,
    declined_reason text
);
CREATE INDEX appeal_routings_appeal_idx ON appeal_routings (appeal_id, id);

-- SLA per category in working days (NULL: the default of config/appeals.toml).
ALTER TABLE categories
    ADD COLUMN sla_working_days integer CHECK (sla_working_days BETWEEN 1 AND 365);

-- Numbers: the year is Kyiv's at registration, the sequence is city-wide and
-- never resets, so the part after the year alone is unique and no per-year
-- counter row serialises concurrent registrations.
CREATE FUNCTION appeal_number_at(at timestamptz, n bigint) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT '1551-' || to_char(at AT TIME ZONE 'Europe/Kyiv', 'YYYY') || '-'
           || lpad(n::text, greatest(6, length(n::text)), '0')
$$;
CREATE OR REPLACE FUNCTION next_appeal_number() RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT appeal_number_at(now(), nextval('appeal_number_seq'))
$$;

-- Hotline 1551 case store, schema v1 (PostgreSQL 15+: UNIQUE NULLS NOT DISTINCT).
-- Applied by crm_sync.migrate inside one transaction. Never edit once applied:
-- add a new numbered file instead (the checksum is verified).

-- Taxonomy and the executor network ---------------------------------------

CREATE TABLE districts (
    id          serial PRIMARY KEY,
    code        text NOT NULL UNIQUE,          -- ascii slug, e.g. holosiivskyi
    name_en     text NOT NULL,
    name_uk     text NOT NULL
);

CREATE TABLE spheres (
    id            serial PRIMARY KEY,
    code          text NOT NULL UNIQUE,        -- ascii slug, e.g. housing
    name_uk       text NOT NULL,
    name_en       text NOT NULL,
    share_percent numeric(5, 2)                -- share of appeals in 2017 (seed)
);

CREATE TABLE categories (
    id            serial PRIMARY KEY,
    code          text NOT NULL UNIQUE,        -- ascii slug, e.g. no_hot_water
    name_uk       text NOT NULL,
    name_en       text NOT NULL,
    sphere_id     integer NOT NULL REFERENCES spheres (id),
    default_queue text NOT NULL                -- Asterisk queue for calls on this issue
);
CREATE INDEX categories_sphere_idx ON categories (sphere_id);

CREATE TABLE executors (
    id          serial PRIMARY KEY,
    code        text NOT NULL UNIQUE,
    name        text NOT NULL,
    name_uk     text,
    kind        text NOT NULL
                CHECK (kind IN ('district_admin', 'housing_office', 'utility', 'city_department')),
    district_id integer REFERENCES districts (id),
    active      boolean NOT NULL DEFAULT true
);
CREATE INDEX executors_district_idx ON executors (district_id);

CREATE TABLE routing_rules (
    id          serial PRIMARY KEY,
    category_id integer NOT NULL REFERENCES categories (id),
    district_id integer REFERENCES districts (id),   -- NULL: any district
    executor_id integer NOT NULL REFERENCES executors (id),
    priority    integer NOT NULL DEFAULT 100,        -- lower wins
    UNIQUE NULLS NOT DISTINCT (category_id, district_id, executor_id)
);

-- People -----------------------------------------------------------------

CREATE TABLE citizens (
    id                 bigserial PRIMARY KEY,
    phone              text NOT NULL UNIQUE,
    name               text NOT NULL DEFAULT '',
    preferred_language text,
    district_id        integer REFERENCES districts (id),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE operators (
    id              serial PRIMARY KEY,
    login           text NOT NULL UNIQUE,
    display_name    text NOT NULL,
    role            text NOT NULL
                    CHECK (role IN ('operator', 'supervisor', 'admin', 'executor', 'leadership')),
    password_hash   text,
    queue_interface text UNIQUE,                     -- e.g. Local/101@hotline-operators/n
    executor_id     integer REFERENCES executors (id), -- for role = executor
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE operator_state_changes (
    id          bigserial PRIMARY KEY,
    operator_id integer REFERENCES operators (id),
    interface   text NOT NULL,                       -- as AMI reports it
    at          timestamptz NOT NULL,
    state       text NOT NULL,                       -- logged_in / paused / available / in_call / ...
    reason      text,
    queue       text
);
CREATE INDEX operator_state_changes_interface_at_idx ON operator_state_changes (interface, at);
CREATE INDEX operator_state_changes_operator_at_idx ON operator_state_changes (operator_id, at);

-- Calls ------------------------------------------------------------------

CREATE TABLE calls (
    id                 bigserial PRIMARY KEY,
    call_key           text NOT NULL UNIQUE,         -- <server>:<asterisk boot epoch>:<uniqueid>
    asterisk_server    text NOT NULL,
    uniqueid           text NOT NULL,
    linkedid           text NOT NULL,
    linkedids          text[] NOT NULL DEFAULT '{}',
    channel            text NOT NULL,
    caller_number      text NOT NULL DEFAULT '',
    caller_name        text NOT NULL DEFAULT '',
    language           text NOT NULL DEFAULT '',
    started_at         timestamptz NOT NULL,
    answered_at        timestamptz,
    ended_at           timestamptz,
    ivr_choice         text,
    ivr_source         text,
    queue              text,
    wait_seconds       integer,
    talk_seconds       integer,
    operator_interface text,
    operator_name      text,
    outcome            text NOT NULL DEFAULT 'in_progress'
                       CHECK (outcome IN ('answered', 'abandoned', 'ivr_only', 'timeout',
                                          'no_agents', 'in_progress')),
    hangup_cause       integer,
    hangup_cause_text  text,
    citizen_id         bigint REFERENCES citizens (id) ON DELETE SET NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX calls_caller_started_idx ON calls (caller_number, started_at DESC);  -- screen-pop
CREATE INDEX calls_started_idx ON calls (started_at);
CREATE INDEX calls_queue_started_idx ON calls (queue, started_at);
CREATE INDEX calls_outcome_started_idx ON calls (outcome, started_at);
CREATE INDEX calls_linkedid_idx ON calls (linkedid);
CREATE INDEX calls_citizen_idx ON calls (citizen_id, started_at DESC);

CREATE TABLE queue_attempts (
    id                 bigserial PRIMARY KEY,
    call_id            bigint NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    seq                integer NOT NULL,
    queue              text NOT NULL,
    entered_at         timestamptz NOT NULL,
    answered_at        timestamptz,
    left_at            timestamptz,
    position           integer,
    wait_seconds       integer,
    talk_seconds       integer,
    ring_seconds       integer,
    outcome            text,
    operator_interface text,
    operator_name      text,
    completed_by       text,
    UNIQUE (call_id, seq)
);
CREATE INDEX queue_attempts_queue_entered_idx ON queue_attempts (queue, entered_at);

CREATE TABLE ivr_steps (
    id              bigserial PRIMARY KEY,
    asterisk_server text NOT NULL,
    uniqueid        text NOT NULL,
    at              timestamptz NOT NULL,
    step            text NOT NULL,
    detail          jsonb NOT NULL DEFAULT '{}',
    -- makes a retried write (at-least-once) land once
    UNIQUE (asterisk_server, uniqueid, at, step)
);
CREATE INDEX ivr_steps_at_idx ON ivr_steps (at);

-- Appeals ----------------------------------------------------------------

CREATE SEQUENCE appeal_number_seq;

-- 1551-2026-000123: year (Kyiv time) and a city-wide sequence, six digits or more.
CREATE FUNCTION next_appeal_number() RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT '1551-' || to_char(now() AT TIME ZONE 'Europe/Kyiv', 'YYYY') || '-'
           || lpad(n::text, greatest(6, length(n::text)), '0')
    FROM (SELECT nextval('appeal_number_seq') AS n) AS s
$$;

CREATE TABLE appeals (
    id          bigserial PRIMARY KEY,
    number      text NOT NULL UNIQUE DEFAULT next_appeal_number(),
    channel     text NOT NULL
                CHECK (channel IN ('phone', 'web', 'mobile', 'facebook', 'gov_contact_centre')),
    citizen_id  bigint REFERENCES citizens (id),
    call_id     bigint REFERENCES calls (id) ON DELETE SET NULL,
    category_id integer NOT NULL REFERENCES categories (id),
    address     text NOT NULL DEFAULT '',
    district_id integer REFERENCES districts (id),
    text        text NOT NULL DEFAULT '',
    status      text NOT NULL DEFAULT 'registered'
                CHECK (status IN ('registered', 'routed', 'in_progress', 'resolved', 'closed',
                                  'rejected')),
    executor_id integer REFERENCES executors (id),
    due_at      timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX appeals_citizen_idx ON appeals (citizen_id, created_at DESC);       -- screen-pop
CREATE INDEX appeals_status_due_idx ON appeals (status, due_at);
CREATE INDEX appeals_executor_status_due_idx ON appeals (executor_id, status, due_at);
CREATE INDEX appeals_call_idx ON appeals (call_id);
CREATE INDEX appeals_created_idx ON appeals (created_at);

CREATE TABLE appeal_history (
    id          bigserial PRIMARY KEY,
    appeal_id   bigint NOT NULL REFERENCES appeals (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    from_status text,
    to_status   text NOT NULL,
    note        text
);
CREATE INDEX appeal_history_appeal_at_idx ON appeal_history (appeal_id, at);

-- Outbox (external CRM, SMS, e-mail; at-least-once) ------------------------

CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    topic        text NOT NULL,
    key          text NOT NULL UNIQUE,               -- idempotency key
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    available_at timestamptz NOT NULL DEFAULT now(),
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    delivered_at timestamptz
);
CREATE INDEX outbox_pending_idx ON outbox (available_at) WHERE delivered_at IS NULL;

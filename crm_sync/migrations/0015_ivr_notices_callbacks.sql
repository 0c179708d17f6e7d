-- IVR district notices, callbacks instead of waiting, and the emergency hours
-- override (issue 9, ivr-b).

-- A caller who left the IVR with a callback booked is a call outcome of its own.
ALTER TABLE calls DROP CONSTRAINT calls_outcome_check;
ALTER TABLE calls ADD CONSTRAINT calls_outcome_check
    CHECK (outcome IN ('answered', 'abandoned', 'ivr_only', 'timeout', 'no_agents',
                       'in_progress', 'callback'));

-- Announcements played before the menu to callers of the districts named.
CREATE TABLE announcements (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL
                  CHECK (kind IN ('water', 'heating', 'power', 'road', 'emergency', 'other')),
    text          text NOT NULL CHECK (length(text) BETWEEN 1 AND 1000),
    district_ids  integer[] NOT NULL CHECK (cardinality(district_ids) > 0),
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL,
    audio_source  text NOT NULL DEFAULT 'synthesised'
                  CHECK (audio_source IN ('synthesised', 'recording')),
    -- an uploaded recording (8 kHz mono 16-bit WAV), kept so any host can play it
    recording     bytea,
    cancelled_at  timestamptz,
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);
CREATE INDEX announcements_active_idx ON announcements USING gin (district_ids)
    WHERE cancelled_at IS NULL;

-- Callback requests: arrived_at is the caller's original arrival, their place in line.
CREATE TABLE callback_requests (
    id              bigserial PRIMARY KEY,
    asterisk_server text NOT NULL,
    uniqueid        text NOT NULL,            -- the original call's channel
    queue           text NOT NULL,
    caller_number   text NOT NULL,
    reason          text NOT NULL CHECK (reason IN ('wait', 'closed')),
    arrived_at      timestamptz NOT NULL,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'dialing', 'done', 'failed', 'cancelled')),
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL CHECK (max_attempts BETWEEN 1 AND 10),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_by      text,
    claimed_until   timestamptz,
    finished_at     timestamptz,
    UNIQUE (asterisk_server, uniqueid)         -- one request per call, whatever retries
);
CREATE INDEX callback_requests_due_idx ON callback_requests (queue, arrived_at, id)
    WHERE status IN ('pending', 'dialing');

-- Every Originate the dialer sent: one row per (request, attempt), so an attempt
-- is placed at most once (the Originate's ActionID and ChannelId are derived from it).
CREATE TABLE callback_attempts (
    request_id   bigint NOT NULL REFERENCES callback_requests (id),
    attempt      integer NOT NULL,
    dialer       text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    result       text CHECK (result IN ('answered', 'failed')),
    detail       text,
    finished_at  timestamptz,
    PRIMARY KEY (request_id, attempt)
);

-- The emergency override of the working hours: one row per scope ('*' = every queue).
CREATE TABLE hours_overrides (
    scope      text PRIMARY KEY,
    mode       text NOT NULL CHECK (mode IN ('open', 'closed')),
    reason     text NOT NULL,
    set_by     text NOT NULL,
    set_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE hours_override_audit (
    id       bigserial PRIMARY KEY,
    scope    text NOT NULL,
    mode     text,                              -- NULL: the override was lifted
    reason   text NOT NULL,
    set_by   text NOT NULL,
    at       timestamptz NOT NULL DEFAULT now()
);

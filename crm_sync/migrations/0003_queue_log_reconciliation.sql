-- Asterisk's queue_log in the case store, and call records reconciled with it.
-- (Issue 6, item 13: AMI loses queue facts under load; queue_log does not.)

-- Where a talk time came from: app_queue's AgentComplete, derived from
-- AgentConnect to the end of the bridge, or corrected to queue_log.
ALTER TABLE calls ADD COLUMN talk_source text
    CHECK (talk_source IN ('agent_complete', 'derived', 'queue_log'));
-- When queue_log's lines for this call were last applied to it.
ALTER TABLE calls ADD COLUMN reconciled_at timestamptz;
ALTER TABLE queue_attempts ADD COLUMN talk_source text
    CHECK (talk_source IN ('agent_complete', 'derived', 'queue_log'));

-- Every queue_log line, as Asterisk wrote it (like realtime queue_log would).
CREATE TABLE queue_log_events (
    id              bigserial PRIMARY KEY,
    asterisk_server text NOT NULL,
    at              timestamptz NOT NULL,
    callid          text NOT NULL,                 -- the caller channel's Uniqueid, or NONE
    queue           text NOT NULL,
    agent           text NOT NULL,
    event           text NOT NULL,
    data            text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX queue_log_events_call_idx ON queue_log_events (asterisk_server, callid);
CREATE INDEX queue_log_events_at_idx ON queue_log_events (at);

-- How far the reconciler has read each queue_log file; committed in the same
-- transaction as the lines it covers, so a restart neither skips nor repeats.
CREATE TABLE queue_log_offsets (
    asterisk_server text NOT NULL,
    path            text NOT NULL,
    inode           bigint NOT NULL,
    byte_offset     bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (asterisk_server, path)
);

-- A figure of a call that queue_log corrected (one row per call and field, the latest).
CREATE TABLE call_corrections (
    id              bigserial PRIMARY KEY,
    call_id         bigint NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    at              timestamptz NOT NULL DEFAULT now(),
    source          text NOT NULL DEFAULT 'queue_log',
    field           text NOT NULL,                 -- e.g. talk_seconds, attempts[0].outcome
    was             text,                          -- before: what AMI said (or an earlier correction)
    became          text,                          -- queue_log's figure
    UNIQUE (call_id, field)
);

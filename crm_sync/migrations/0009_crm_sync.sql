-- External CRM sync (issue 10). The CRM is one more provider of the outbox relay
-- (provider 'crm', order key per appeal); what is recorded here is what the relay
-- itself does not keep.

-- How far the CRM router's backfill has read `outbox`: events fanned out before the
-- router existed (or by a process without it) are turned into CRM messages once.
CREATE TABLE crm_cursor (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_event_id bigint NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
INSERT INTO crm_cursor DEFAULT VALUES;

-- Status updates received from the CRM's webhook, by the CRM's update id: a replay
-- finds its row and changes nothing.
CREATE TABLE crm_updates (
    update_id   text PRIMARY KEY,
    number      text NOT NULL,
    status      text NOT NULL,
    result      text NOT NULL DEFAULT 'pending'
                CHECK (result IN ('pending', 'applied', 'unchanged', 'refused', 'unknown')),
    detail      text,
    received_at timestamptz NOT NULL DEFAULT now()
);

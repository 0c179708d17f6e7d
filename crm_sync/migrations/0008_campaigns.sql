-- District campaigns (issue 10): citizens subscribe to a topic in a district (a
-- subscription counts once confirmed by its link); a campaign is written by one
-- supervisor or admin, approved by another, and sent through the outbox in batches.

CREATE TABLE subscriptions (
    id           bigserial PRIMARY KEY,
    citizen_id   bigint NOT NULL REFERENCES citizens (id),
    district_id  integer NOT NULL REFERENCES districts (id),
    topic        text NOT NULL,                      -- config/campaigns.toml
    language     text NOT NULL DEFAULT 'uk' CHECK (language IN ('uk', 'en')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    confirmed_at timestamptz,
    cancelled_at timestamptz,
    UNIQUE (citizen_id, district_id, topic)
);
-- What a campaign's audience query reads.
CREATE INDEX subscriptions_audience_idx ON subscriptions (topic, district_id, id)
    WHERE confirmed_at IS NOT NULL AND cancelled_at IS NULL;

CREATE TABLE campaigns (
    id           bigserial PRIMARY KEY,
    topic        text NOT NULL,
    district_ids integer[] NOT NULL CHECK (cardinality(district_ids) > 0),
    text_uk      text NOT NULL,
    text_en      text NOT NULL,
    send_at      timestamptz NOT NULL,
    status       text NOT NULL DEFAULT 'draft'
                 CHECK (status IN ('draft', 'approved', 'cancelled')),
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    approved_by  text,
    approved_at  timestamptz,
    cancelled_by text,
    cancelled_at timestamptz,
    recipients   integer,                            -- counted when approved
    -- Four eyes, also for whoever writes SQL by hand.
    CHECK (approved_by IS NULL OR approved_by <> created_by)
);

-- The outbox events a campaign was cut into (one per batch of subscribers).
CREATE TABLE campaign_batches (
    campaign_id  bigint NOT NULL REFERENCES campaigns (id),
    event_id     bigint NOT NULL REFERENCES outbox (id),
    size         integer NOT NULL,
    PRIMARY KEY (campaign_id, event_id)
);
CREATE INDEX campaign_batches_event_idx ON campaign_batches (event_id);

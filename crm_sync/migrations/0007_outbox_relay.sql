-- The outbox relay (issue 10): one message per recipient per event, delivered by
-- providers (sms, email; later the external CRM) with an idempotency key of ours.
-- A source row of `outbox` is fanned out once (its delivered_at set in the same
-- transaction as its messages are inserted); each message is then claimed with a
-- lease, delivered outside any transaction, and its result recorded.

CREATE TABLE outbox_messages (
    id                  bigserial PRIMARY KEY,
    event_id            bigint NOT NULL REFERENCES outbox (id),
    idempotency_key     text NOT NULL UNIQUE,
    provider            text NOT NULL,                 -- sms, email, crm, …
    -- Messages of one order key go out one at a time, in id order (one citizen's
    -- texts arrive in the order their appeal changed).
    order_key           text NOT NULL,
    citizen_id          bigint REFERENCES citizens (id),
    recipient           text NOT NULL,                 -- phone, address or endpoint
    subject             text NOT NULL DEFAULT '',
    body                text NOT NULL,
    html                text,
    meta                jsonb NOT NULL DEFAULT '{}',   -- template, language, segments, …
    status              text NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'failed',
                                          'dead', 'cancelled')),
    attempts            integer NOT NULL DEFAULT 0,
    available_at        timestamptz NOT NULL DEFAULT now(),
    lease_until         timestamptz,
    leased_by           text,
    provider_message_id text,
    last_error          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz,
    delivered_at        timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
-- What a worker looks at: the rows still to send.
CREATE INDEX outbox_messages_due_idx ON outbox_messages (available_at, id)
    WHERE status IN ('queued', 'sending');
-- The head of each order key.
CREATE INDEX outbox_messages_order_idx ON outbox_messages (order_key, id)
    WHERE status IN ('queued', 'sending');
CREATE UNIQUE INDEX outbox_messages_provider_id_idx
    ON outbox_messages (provider, provider_message_id) WHERE provider_message_id IS NOT NULL;
CREATE INDEX outbox_messages_dead_idx ON outbox_messages (id) WHERE status = 'dead';
CREATE INDEX outbox_messages_event_idx ON outbox_messages (event_id);

-- Delivery reports as received (a provider may send one twice: the first counts).
CREATE TABLE delivery_reports (
    provider            text NOT NULL,
    provider_message_id text NOT NULL,
    status              text NOT NULL CHECK (status IN ('delivered', 'failed')),
    received_at         timestamptz NOT NULL DEFAULT now(),
    detail              text,
    PRIMARY KEY (provider, provider_message_id, status)
);

-- A citizen's choices for notifications (preferred_language is in 0001).
ALTER TABLE citizens
    ADD COLUMN email          text,
    ADD COLUMN notify_channel text NOT NULL DEFAULT 'sms'
                              CHECK (notify_channel IN ('sms', 'email', 'none')),
    ADD COLUMN notify_consent boolean NOT NULL DEFAULT false,
    ADD COLUMN consent_at     timestamptz,
    ADD COLUMN opted_out_at   timestamptz,
    ADD COLUMN opt_out_via    text;

-- One row per provider: the next free send slot. Every relay process takes its
-- slots here, so the provider's rate holds for all of them together.
CREATE TABLE provider_send_slots (
    provider text PRIMARY KEY,
    next_at  timestamptz NOT NULL
);

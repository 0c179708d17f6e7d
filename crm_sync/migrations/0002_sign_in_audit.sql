-- Sign-in audit and per-person session epochs.
-- Never edit once applied: add a new numbered file instead (the checksum is verified).

-- Bumped whenever a person's access changes (role, reset, deactivation): a session
-- carries the epoch it was made under and is void once the two differ.
ALTER TABLE operators ADD COLUMN session_epoch integer NOT NULL DEFAULT 0;

CREATE TABLE sign_in_audit (
    id             bigserial PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    operator_id    integer REFERENCES operators (id) ON DELETE SET NULL,
    login          text,        -- a known person's login only, never what a stranger typed
    client_address text,        -- the browser's address (behind a trusted proxy: its client)
    outcome        text NOT NULL CHECK (outcome IN ('success', 'failure', 'refused')),
    reason         text NOT NULL
);
CREATE INDEX sign_in_audit_at_idx ON sign_in_audit (at);
CREATE INDEX sign_in_audit_operator_idx ON sign_in_audit (operator_id, at);

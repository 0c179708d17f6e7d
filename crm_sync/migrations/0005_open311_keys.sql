-- Open311 GeoReport v2 intake (issue 7): one api_key per intake channel's client
-- (web site, mobile app, Facebook bot, government contact centre). Only a hash
-- of each key is kept: the key is shown once, when it is made, and cannot be
-- read back from the case store. A revoked key stays, for the audit.
CREATE TABLE api_keys (
    id          serial PRIMARY KEY,
    channel     text NOT NULL
                CHECK (channel IN ('web', 'mobile', 'facebook', 'gov_contact_centre')),
    label       text NOT NULL DEFAULT '',
    prefix      text NOT NULL,                 -- the key's first characters, to tell keys apart
    key_sha256  bytea NOT NULL UNIQUE CHECK (length(key_sha256) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL DEFAULT '',
    revoked_at  timestamptz
);

-- The operator desk (issue 8): operators' skills, the queues they log in to.
-- Queue names are the catalogue's (config/queues.toml); the desk checks them
-- against it when they are set.
CREATE TABLE operator_skills (
    operator_id integer NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    queue       text NOT NULL CHECK (queue ~ '^[a-z][a-z0-9_]{0,31}$'),
    penalty     integer NOT NULL DEFAULT 0 CHECK (penalty BETWEEN 0 AND 100),
    PRIMARY KEY (operator_id, queue)
);


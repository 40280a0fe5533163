-- Bramble inventory, version 1 (SQLite). Times are Unix milliseconds.
CREATE TABLE switches (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    address     TEXT NOT NULL,
    driver      TEXT NOT NULL,
    trunk_port  INTEGER NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Kept apart from `switches` so no query that feeds the API can select a secret.
CREATE TABLE switch_credentials (
    switch_id   TEXT PRIMARY KEY REFERENCES switches(id) ON DELETE CASCADE,
    credentials TEXT NOT NULL
);

CREATE TABLE shelves (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    switch_id   TEXT NOT NULL REFERENCES switches(id),
    first_port  INTEGER NOT NULL,
    last_port   INTEGER NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE slots (
    id              TEXT PRIMARY KEY,
    shelf_id        TEXT NOT NULL REFERENCES shelves(id),
    switch_id       TEXT NOT NULL REFERENCES switches(id),
    port            INTEGER NOT NULL,
    vlan            INTEGER NOT NULL UNIQUE,
    storage_net     TEXT NOT NULL UNIQUE,
    controller_ip   TEXT NOT NULL,
    pi_ip           TEXT NOT NULL UNIQUE,
    public_ipv6     TEXT NOT NULL UNIQUE,
    retired_at      BIGINT,
    UNIQUE (switch_id, port)
);

CREATE TABLE pis (
    id           TEXT PRIMARY KEY,
    serial       TEXT UNIQUE,
    mac          TEXT UNIQUE,
    model        TEXT NOT NULL,
    slot_id      TEXT UNIQUE REFERENCES slots(id),
    owner        TEXT,
    image        TEXT,
    state        TEXT NOT NULL,
    failed_step  TEXT,
    power        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX pis_owner ON pis (owner);

CREATE TABLE images (
    name        TEXT PRIMARY KEY,
    release     TEXT NOT NULL,
    arch        TEXT NOT NULL,
    version     TEXT,
    status      TEXT NOT NULL,
    size_bytes  BIGINT,
    created_at  BIGINT NOT NULL
);

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    pi_id            TEXT REFERENCES pis(id),
    shelf_id         TEXT REFERENCES shelves(id),
    params           TEXT NOT NULL,
    state            TEXT NOT NULL,
    step             INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    customer_message TEXT,
    idempotency_key  TEXT,
    request_hash     TEXT NOT NULL,
    requested_by     TEXT NOT NULL,
    customer         TEXT,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    finished_at      BIGINT,
    UNIQUE (requested_by, idempotency_key)
);
-- The database, not the handlers, guarantees one active job per Pi.
CREATE UNIQUE INDEX jobs_one_active_per_pi ON jobs (pi_id) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_state ON jobs (state, kind);

CREATE TABLE events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        BIGINT NOT NULL,
    pi_id     TEXT,
    job_id    TEXT,
    customer  TEXT,
    actor     TEXT NOT NULL,
    kind      TEXT NOT NULL,
    message   TEXT NOT NULL,
    data      TEXT NOT NULL
);
CREATE INDEX events_pi ON events (pi_id, id);
CREATE INDEX events_customer ON events (customer, id);

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    hash        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    customer    TEXT,
    label       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

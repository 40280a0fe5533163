-- Bramble cluster, version 5 (SQLite). Times are Unix milliseconds.
-- SQLite serves one controller at a time (a file lock keeps a second one out), but the
-- schema is the same as PostgreSQL's so the code has one shape.
CREATE TABLE controllers (
    name          TEXT PRIMARY KEY,
    instance      TEXT NOT NULL,
    address       TEXT NOT NULL,
    version       TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL,
    stopped_at    BIGINT
);

CREATE TABLE leases (
    name         TEXT PRIMARY KEY,
    holder       TEXT NOT NULL,
    expires_at   BIGINT NOT NULL,
    term         BIGINT NOT NULL,
    acquired_at  BIGINT NOT NULL
);

ALTER TABLE switches ADD COLUMN controller TEXT;
ALTER TABLE switches ADD COLUMN l2_domain TEXT NOT NULL DEFAULT 'default';

-- Storage VLANs become unique per layer-2 domain. SQLite cannot drop a column's UNIQUE,
-- so the table is rebuilt; `pis.slot_id` refers to it by name, and the deferred foreign
-- keys are checked at commit, once the new table holds every row again.
PRAGMA defer_foreign_keys = ON;
CREATE TABLE slots_new (
    id              TEXT PRIMARY KEY,
    shelf_id        TEXT NOT NULL REFERENCES shelves(id),
    switch_id       TEXT NOT NULL REFERENCES switches(id),
    port            INTEGER NOT NULL,
    vlan            INTEGER NOT NULL,
    storage_net     TEXT NOT NULL UNIQUE,
    controller_ip   TEXT NOT NULL,
    pi_ip           TEXT NOT NULL UNIQUE,
    public_ipv6     TEXT NOT NULL UNIQUE,
    retired_at      BIGINT,
    flag            TEXT,
    flagged_at      BIGINT,
    l2_domain       TEXT NOT NULL DEFAULT 'default',
    UNIQUE (switch_id, port)
);
INSERT INTO slots_new (id, shelf_id, switch_id, port, vlan, storage_net, controller_ip, pi_ip,
                       public_ipv6, retired_at, flag, flagged_at)
    SELECT id, shelf_id, switch_id, port, vlan, storage_net, controller_ip, pi_ip,
           public_ipv6, retired_at, flag, flagged_at FROM slots;
DROP TABLE slots;
ALTER TABLE slots_new RENAME TO slots;
CREATE UNIQUE INDEX slots_domain_vlan ON slots (l2_domain, vlan);

ALTER TABLE jobs ADD COLUMN controller TEXT;
ALTER TABLE jobs ADD COLUMN runner TEXT;
CREATE INDEX jobs_claim ON jobs (controller, state, id);

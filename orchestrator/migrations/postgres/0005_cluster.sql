-- Bramble cluster, version 5 (PostgreSQL). Times are Unix milliseconds.
-- Every controller that serves, with its heartbeat. `instance` tells a restart of the
-- same controller from a second process that took its name.
CREATE TABLE controllers (
    name          TEXT PRIMARY KEY,
    instance      TEXT NOT NULL,
    address       TEXT NOT NULL,
    version       TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL,
    stopped_at    BIGINT
);

-- Leadership of the cluster's singletons (webhook delivery, each switch's reconciler):
-- one row per singleton, held by `holder` until `expires_at` (database clock). `term`
-- grows each time the lease changes hands.
CREATE TABLE leases (
    name         TEXT PRIMARY KEY,
    holder       TEXT NOT NULL,
    expires_at   BIGINT NOT NULL,
    term         BIGINT NOT NULL,
    acquired_at  BIGINT NOT NULL
);

-- The controller that serves a switch (its shelves' DHCP, TFTP, roots and jobs), and the
-- layer-2 domain the switch is in: storage VLAN ids are unique per domain. Switches
-- registered before clusters existed belong to the first controller that starts.
ALTER TABLE switches ADD COLUMN controller TEXT;
ALTER TABLE switches ADD COLUMN l2_domain TEXT NOT NULL DEFAULT 'default';
ALTER TABLE slots ADD COLUMN l2_domain TEXT NOT NULL DEFAULT 'default';
ALTER TABLE slots DROP CONSTRAINT slots_vlan_key;
CREATE UNIQUE INDEX slots_domain_vlan ON slots (l2_domain, vlan);

-- The controller that must run a job (NULL: any), and the one that last ran it.
ALTER TABLE jobs ADD COLUMN controller TEXT;
ALTER TABLE jobs ADD COLUMN runner TEXT;
CREATE INDEX jobs_claim ON jobs (controller, state, id);

-- Bramble query indexes, version 6 (PostgreSQL). Every list is a keyset page (WHERE
-- <filter> AND id > cursor ORDER BY id LIMIT n), so each hot filter gets an index that
-- ends in the key: the page is read in order and stops after n rows, whatever the size
-- of the inventory.

-- A customer's Pis, in ID order (replaces pis_owner, its prefix).
DROP INDEX pis_owner;
CREATE INDEX pis_owner_id ON pis (owner, id);
-- An operator's list of Pis in one state.
CREATE INDEX pis_state_id ON pis (state, id);
-- A shelf's slots (its status and its Pis' list); a slot's Pi is pis.slot_id (unique).
CREATE INDEX slots_shelf ON slots (shelf_id, port);

-- A customer's jobs and a Pi's job history, in ID order. A Pi's active job is
-- jobs_one_active_per_pi (0001).
CREATE INDEX jobs_customer_id ON jobs (customer, id);
CREATE INDEX jobs_pi_id ON jobs (pi_id, id);
-- A shelf's active job (racking), checked before a rack is queued.
CREATE INDEX jobs_active_shelf ON jobs (shelf_id) WHERE state IN ('queued', 'running');

-- A job's own events (its evidence, its step records). A Pi's events are events_pi and
-- a customer's events_customer (0001).
CREATE INDEX events_job ON events (job_id, id);
-- The boot timeline (what DHCP and TFTP saw) apart from the audit log. The predicate is
-- db::events::BOOT_TIMELINE word for word: a query uses these only if it repeats it.
-- The latest boot of each Pi (shelf status): one probe, newest first.
CREATE INDEX events_boot_pi ON events (pi_id, id) WHERE (kind LIKE 'dhcp.%' OR kind LIKE 'tftp.%');
-- Retention: boot events older than a cutoff, oldest first.
CREATE INDEX events_boot_at ON events (at) WHERE (kind LIKE 'dhcp.%' OR kind LIKE 'tftp.%');

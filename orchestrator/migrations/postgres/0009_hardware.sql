-- Bramble hardware identity, version 9 (PostgreSQL). Times are Unix milliseconds.
-- Identity belongs to the slot: a board's MAC, serial and model change on a Pi only while
-- an operator has it in maintenance, or when an operator accepts a flagged sighting.

-- An operator's maintenance mark (NULL: not in maintenance): no job runs on the Pi, and a
-- different board seen in its slot becomes its hardware.
ALTER TABLE pis ADD COLUMN maintenance_since BIGINT;
ALTER TABLE pis ADD COLUMN maintenance_by TEXT;

-- Accepted board replacements. `customer` is the Pi's owner then: a customer reads only
-- the rows of their time. `how`: 'maintenance' (seen during maintenance) or 'operator'
-- (a flagged sighting accepted); `accepted_by` the token (or 'dhcp'/'tftp').
CREATE TABLE pi_hardware_history (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pi_id        TEXT NOT NULL REFERENCES pis(id),
    slot_id      TEXT,
    customer     TEXT,
    at           BIGINT NOT NULL,
    old_mac      TEXT,
    old_serial   TEXT,
    old_model    TEXT NOT NULL,
    new_mac      TEXT,
    new_serial   TEXT,
    new_model    TEXT NOT NULL,
    how          TEXT NOT NULL,
    accepted_by  TEXT NOT NULL
);
CREATE INDEX pi_hardware_history_pi ON pi_hardware_history (pi_id, id);

-- At most one sighting per Pi waiting for an operator: what was last seen in its slot
-- that the rule would not apply. `id` changes whenever what was seen changes, so an
-- accept names exactly what it accepts. `reason`: differs, adds, mac_taken,
-- serial_taken (`other_pi` then holds it).
CREATE TABLE hardware_sightings (
    pi_id       TEXT PRIMARY KEY REFERENCES pis(id),
    id          TEXT NOT NULL,
    slot_id     TEXT,
    source      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    other_pi    TEXT,
    mac         TEXT,
    serial      TEXT,
    model       TEXT,
    first_at    BIGINT NOT NULL,
    last_at     BIGINT NOT NULL,
    seen_count  BIGINT NOT NULL
);

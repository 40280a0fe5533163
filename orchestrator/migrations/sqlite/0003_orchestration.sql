-- Bramble orchestration, version 3 (SQLite). Times are Unix milliseconds.
-- What a finished job found, as JSON (a rack-shelf job lists every slot's outcome).
ALTER TABLE jobs ADD COLUMN result TEXT;

-- Why a slot is not ready (racking found no Pi, the reconciler saw the Pi stop drawing
-- power, ...); NULL when nothing is wrong.
ALTER TABLE slots ADD COLUMN flag TEXT;
ALTER TABLE slots ADD COLUMN flagged_at BIGINT;

-- How far the webhook notifier has delivered the event log.
CREATE TABLE webhook_cursor (
    name           TEXT PRIMARY KEY,
    last_event_id  BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

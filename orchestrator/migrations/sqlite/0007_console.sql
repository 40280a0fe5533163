-- Bramble console, version 7 (SQLite). Each Pi's netconsole output, per boot. A boot is
-- numbered per Pi from 1 (`boot`); `kernel_event` is the timeline event (a TFTP read of
-- a kernel) it started after, 0 when none; `customer` is the Pi's owner when it started
-- (a customer sees only boots recorded for them). Lines are kept as received (bytes).
CREATE TABLE console_boots (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    pi_id        TEXT NOT NULL,
    boot         BIGINT NOT NULL,
    customer     TEXT,
    started_at   BIGINT NOT NULL,
    kernel_event BIGINT NOT NULL,
    bytes        BIGINT NOT NULL DEFAULT 0,
    lines        BIGINT NOT NULL DEFAULT 0,
    dropped      BIGINT NOT NULL DEFAULT 0,
    UNIQUE (pi_id, boot)
);
CREATE TABLE console_lines (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    boot_id BIGINT NOT NULL,
    at      BIGINT NOT NULL,
    line    BLOB NOT NULL
);
-- A boot's lines in order (reads, follow mode, pruning).
CREATE INDEX console_lines_boot ON console_lines (boot_id, id);
-- The kernel reads a new boot starts from: a Pi's TFTP reads, newest first.
CREATE INDEX events_tftp_read_pi ON events (pi_id, id) WHERE kind = 'tftp.read';

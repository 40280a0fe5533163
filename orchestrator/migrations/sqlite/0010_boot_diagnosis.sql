-- Bramble boot diagnosis, version 10 (SQLite).
-- A Pi's last boot attempt as its job diagnosed it, as JSON (crate::diagnosis::LastBoot:
-- stage, diagnosis, messages, the port's PoE at the time, phase durations, the owner
-- then); NULL until a job has waited for the Pi to boot.
ALTER TABLE pis ADD COLUMN last_boot TEXT;

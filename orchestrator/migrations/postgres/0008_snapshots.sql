-- Bramble snapshots, version 8 (PostgreSQL). Times are Unix milliseconds.
-- A snapshot of a Pi's root, kept by a reinstall or restore (the root it replaced) or
-- taken on demand. Its directory is roots/.snapshots/<pi_id>/<id> on the controller
-- serving the Pi; the row is what the API shows, and a directory without a row (and
-- without an active job that is making or restoring it) is deleted by that controller.
-- `id` is derived from the job that made it (job-X makes snap-X). `owner` is the
-- Pi's owner when it was taken; a change of owner deletes every row of the Pi in the
-- same transaction.
CREATE TABLE snapshots (
    id          TEXT PRIMARY KEY,
    pi_id       TEXT NOT NULL REFERENCES pis(id),
    owner       TEXT,
    job_id      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    image       TEXT,
    version     TEXT,
    size_bytes  BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX snapshots_pi_id ON snapshots (pi_id, id);

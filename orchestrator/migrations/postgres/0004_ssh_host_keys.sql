-- Bramble SSH host keys, version 4 (PostgreSQL).
-- The fingerprints of the SSH host keys in a Pi's live root, as JSON
-- ([{"type": "ssh-ed25519", "fingerprint": "SHA256:..."}, ...]), written by the reimage
-- job from the root on disk; '[]' for a Pi never provisioned.
ALTER TABLE pis ADD COLUMN ssh_host_keys TEXT NOT NULL DEFAULT '[]';

-- Bramble netboot state, version 2 (PostgreSQL). Times are Unix milliseconds.
-- One row per DHCP client binding (ingress interface + MAC, never the xid). A row is
-- written, and committed, before the ACK that hands the address out is sent.
CREATE TABLE dhcp_leases (
    interface   TEXT NOT NULL,
    mac         TEXT NOT NULL,
    addr        TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    serial      TEXT,
    slot_id     TEXT,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (interface, mac)
);
CREATE INDEX dhcp_leases_addr ON dhcp_leases (addr);

-- Addresses clients declined (someone else answers ARP for them): kept for diagnosis.
CREATE TABLE dhcp_declines (
    id          BIGSERIAL PRIMARY KEY,
    interface   TEXT NOT NULL,
    mac         TEXT NOT NULL,
    addr        TEXT NOT NULL,
    at          BIGINT NOT NULL
);

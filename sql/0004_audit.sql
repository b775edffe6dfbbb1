-- 0004: the audit log (GATEKEEPER_AUDIT=postgres): one row per decision,
-- written in batches by the service from a bounded queue, and deleted by it
-- once older than GATEKEEPER_AUDIT_RETENTION_DAYS.
--
-- What a row may hold is deliberately narrow: never a credential, a body, a
-- query string or any header value beyond the ones below. `path` is the
-- normalised path, without the query (a query may hold ?api_key=). A
-- request that did not parse leaves method, host and path NULL rather than
-- keeping raw header bytes.
--
-- No constraint references the policy tables: a row outlives the client,
-- key or route it names. No trigger either: the NOTIFY triggers of 0001 are
-- per policy table, so audit rows wake no replica.
CREATE TABLE gk_audit (
    id          BIGSERIAL PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL,           -- when the decision was made
    request_id  TEXT,                           -- X-Request-ID: printable, at most 128 bytes
    client_id   TEXT,
    key_id      TEXT,
    route_id    TEXT,
    method      TEXT,
    host        TEXT,                           -- lower case, without port
    path        TEXT,                           -- normalised, without the query
    decision    TEXT NOT NULL CHECK (decision IN ('allow', 'deny')),
    reason      TEXT NOT NULL,                  -- X-Auth-Reason
    source      INET,                           -- X-Real-IP from a trusted proxy, else the peer
    duration_us INTEGER NOT NULL CHECK (duration_us >= 0)
);

-- Retention deletes by age; `audit query` filters by client or reason
-- within a time range, newest first.
CREATE INDEX gk_audit_at ON gk_audit (at);
CREATE INDEX gk_audit_client_at ON gk_audit (client_id, at);
CREATE INDEX gk_audit_reason_at ON gk_audit (reason, at);

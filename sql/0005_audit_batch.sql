-- 0005: one row per audit batch the writer committed, so a batch whose
-- reply was lost (the connection broke after PostgreSQL received, and
-- perhaps committed, the INSERT) can be sent again without writing its
-- rows twice.
--
-- The writer inserts a batch's rows and its row here in one statement:
-- either both are committed or neither is. On an error that leaves it in
-- doubt it sends the same statement again with the same id; `ON CONFLICT
-- (id) DO NOTHING` makes that a no-op when the first attempt landed (and
-- waits for it when it is still running), so every decision is written at
-- most once and counted as written exactly when it is in gk_audit.
--
-- A unique id per batch rather than per row: one small index entry per
-- batch (up to 1,000 decisions) instead of a unique index on gk_audit.
-- Retention deletes rows here by the same age as gk_audit's.
CREATE TABLE gk_audit_batch (
    id      BIGINT PRIMARY KEY,             -- random per writer, then sequential
    at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    records INTEGER NOT NULL CHECK (records > 0)
);

CREATE INDEX gk_audit_batch_at ON gk_audit_batch (at);

//! Retention: deletes `gk_audit` rows (and `gk_audit_batch` markers) past
//! their age, in bounded batches, once at start and then hourly. Replicas
//! sharing a database take turns through an advisory lock.

use std::time::{Duration, SystemTime};

use deadpool_postgres::Pool;
use metrics::Counter;
use tokio::sync::watch;

use super::writer::WriteError;
use crate::metrics::AUDIT_DELETED;

/// How often retention runs (and once at start).
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);
/// Most rows one retention DELETE removes: short transactions, short locks.
pub const DELETE_BATCH: i64 = 5000;
/// Retention's lock, so replicas sharing a database do not delete the same
/// rows at once: the others skip the round ("gk_audit" in ASCII).
const RETENTION_LOCK: i64 = 0x676b_5f61_7564_6974;

pub(super) const TRY_LOCK: &str = "SELECT pg_try_advisory_xact_lock($1)";

// Oldest first through the (at) index, at most $2 rows.
pub(super) const DELETE_OLD: &str = "
DELETE FROM gk_audit WHERE id IN (
    SELECT id FROM gk_audit WHERE at < $1 ORDER BY at LIMIT $2)";

// The batch markers (0005) go by the same age: a batch is sent again
// within seconds of its first attempt, never days later.
pub(super) const DELETE_OLD_BATCHES: &str = "
DELETE FROM gk_audit_batch WHERE id IN (
    SELECT id FROM gk_audit_batch WHERE at < $1 ORDER BY at LIMIT $2)";

pub(super) struct Retention {
    pool: Pool,
    days: u32,
    deleted: Counter,
}

impl Retention {
    pub(super) fn new(pool: Pool, days: u32) -> Retention {
        let deleted = metrics::counter!(AUDIT_DELETED);
        deleted.increment(0);
        Retention {
            pool,
            days,
            deleted,
        }
    }

    /// A pass at once, then every `RETENTION_INTERVAL`, until `stop` flips.
    pub(super) async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(RETENTION_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => {}
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = self.pass(SystemTime::now()) => {}
            }
        }
    }

    /// Deletes every row older than the retention period, a batch at a
    /// time, then the batch markers of the same age; an error ends the
    /// pass (the next one retries).
    async fn pass(&self, now: SystemTime) {
        let Some(cutoff) = cutoff(now, self.days) else {
            return;
        };
        let mut total = 0;
        for statement in [DELETE_OLD, DELETE_OLD_BATCHES] {
            loop {
                match self.delete_batch(statement, cutoff).await {
                    Ok(n) => {
                        if statement == DELETE_OLD {
                            total += n;
                            self.deleted.increment(n);
                        }
                        if n < DELETE_BATCH as u64 {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot delete old audit rows; retrying in an hour");
                        return;
                    }
                }
            }
        }
        if total > 0 {
            tracing::info!(
                deleted = total,
                retention_days = self.days,
                "deleted old audit rows"
            );
        }
    }

    /// One batch in its own transaction; 0 when another replica holds the
    /// lock (it is doing the same work).
    async fn delete_batch(&self, statement: &str, cutoff: SystemTime) -> Result<u64, WriteError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let locked: bool = tx.query_one(TRY_LOCK, &[&RETENTION_LOCK]).await?.get(0);
        if !locked {
            return Ok(0);
        }
        let n = tx.execute(statement, &[&cutoff, &DELETE_BATCH]).await?;
        tx.commit().await?;
        Ok(n)
    }
}

/// Rows made before this are past `days`; none when that is before 1970.
fn cutoff(now: SystemTime, days: u32) -> Option<SystemTime> {
    now.checked_sub(Duration::from_secs(u64::from(days) * 86_400))
        .filter(|t| *t > SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_is_whole_days_back_and_never_before_1970() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100 * 86_400);
        assert_eq!(
            cutoff(now, 30),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(70 * 86_400))
        );
        assert_eq!(cutoff(now, 100), None);
        assert_eq!(cutoff(now, 36_525), None);
    }
}

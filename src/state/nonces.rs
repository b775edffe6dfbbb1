//! The two HMAC nonce stores behind `Nonces`: in process (each (client,
//! nonce) accepted once while its signature could still be fresh; shared by
//! all workers; bounded in memory) and in Redis, shared by the replicas.
//!
//! Each also says when its memory began ([`NonceCheck::began`]): the
//! in-process store at the start of the process (a restart forgets every
//! nonce); Redis at the second recorded in its epoch marker, a key beside
//! the nonces that is lost when they are (see `Redis::insert_nonce_once`).
//! What to refuse because of it is decided in `decide::verify::hmac`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Dependency, Outage};

use super::redis::{Redis, Unavailable};
use super::{Answer, NonceCheck, Nonces};

#[derive(Debug, PartialEq, Eq)]
pub enum NonceOutcome {
    Fresh,
    Replayed,
    /// The store is full of live nonces: fail closed.
    Full,
}

/// (client id, nonce) → Unix second until which it is remembered.
type Seen = HashMap<(Box<str>, Box<str>), i64>;

pub struct NonceStore {
    seen: Mutex<Seen>,
    capacity: usize,
    /// The Unix second this store was created: the process's start.
    began: i64,
}

impl NonceStore {
    pub fn new(capacity: usize, began: i64) -> NonceStore {
        NonceStore {
            seen: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            began,
        }
    }

    /// Records the nonce until `expires_at` (Unix seconds) unless it was seen.
    pub fn insert_once(
        &self,
        client: &str,
        nonce: &str,
        now: i64,
        expires_at: i64,
    ) -> NonceOutcome {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let key = (Box::from(client), Box::from(nonce));
        if let Some(until) = seen.get(&key) {
            if *until >= now {
                return NonceOutcome::Replayed;
            }
        }
        if seen.len() >= self.capacity {
            seen.retain(|_, until| *until >= now);
            if seen.len() >= self.capacity {
                return NonceOutcome::Full;
            }
        }
        seen.insert(key, expires_at);
        NonceOutcome::Fresh
    }
}

impl Nonces for NonceStore {
    fn insert_once<'a>(
        &'a self,
        client: &'a str,
        nonce: &'a str,
        now: i64,
        until: i64,
    ) -> Answer<'a, NonceCheck> {
        let began = self.began;
        let answer = match NonceStore::insert_once(self, client, nonce, now, until) {
            NonceOutcome::Fresh => Ok(NonceCheck { fresh: true, began }),
            NonceOutcome::Replayed => Ok(NonceCheck {
                fresh: false,
                began,
            }),
            NonceOutcome::Full => Err(Outage::of(Dependency::NonceStore)),
        };
        Box::pin(std::future::ready(answer))
    }
}

/// Nonces in Redis (`SET NX EX`), shared by the replicas.
pub struct RedisNonces(Arc<Redis>);

impl RedisNonces {
    pub fn new(redis: Arc<Redis>) -> RedisNonces {
        RedisNonces(redis)
    }
}

impl Nonces for RedisNonces {
    fn insert_once<'a>(
        &'a self,
        client: &'a str,
        nonce: &'a str,
        now: i64,
        until: i64,
    ) -> Answer<'a, NonceCheck> {
        Box::pin(async move {
            let (fresh, began) = self
                .0
                .insert_nonce_once(client, nonce, redis_nonce_ttl(now, until), now)
                .await
                .map_err(|Unavailable| Outage::of(Dependency::Redis))?;
            Ok(NonceCheck { fresh, began })
        })
    }
}

/// What one replica's two nonce stores know of each other under
/// `GATEKEEPER_REDIS_FAILURE=local`: the last second each answered. The
/// in-process stand-in never saw what Redis accepted, nor Redis what the
/// stand-in accepted during an outage, so each store's memory, as far as
/// this replica can tell, begins no earlier than the other's last answer.
/// (Other replicas' acceptances stay unknown: README, "Redis".)
#[derive(Default)]
pub struct Handover {
    shared: AtomicI64,
    local: AtomicI64,
}

/// Which of a [`Handover`]'s stores a [`HandedOver`] is.
#[derive(Clone, Copy)]
pub enum Side {
    Shared,
    Local,
}

/// A nonce store whose memory begins no earlier than the other side's last
/// answer (see [`Handover`]).
pub struct HandedOver<N> {
    store: N,
    side: Side,
    handover: Arc<Handover>,
}

impl<N> HandedOver<N> {
    pub fn new(store: N, side: Side, handover: Arc<Handover>) -> HandedOver<N> {
        HandedOver {
            store,
            side,
            handover,
        }
    }
}

impl<N: Nonces> Nonces for HandedOver<N> {
    fn insert_once<'a>(
        &'a self,
        client: &'a str,
        nonce: &'a str,
        now: i64,
        until: i64,
    ) -> Answer<'a, NonceCheck> {
        Box::pin(async move {
            let (mine, other) = match self.side {
                Side::Shared => (&self.handover.shared, &self.handover.local),
                Side::Local => (&self.handover.local, &self.handover.shared),
            };
            let check = self.store.insert_once(client, nonce, now, until).await?;
            mine.fetch_max(now, Ordering::Relaxed);
            Ok(NonceCheck {
                fresh: check.fresh,
                began: check.began.max(other.load(Ordering::Relaxed)),
            })
        })
    }
}

/// How long Redis keeps a nonce, in whole seconds from `now`, so that it
/// outlives the timestamp's validity. The timestamp stays valid through the
/// whole Unix second `until`, i.e. until the real time `until + 1`; `now` is
/// truncated (the real time may be up to a second later) and Redis counts
/// `EX` from when it receives the command: `until + 2 - now` seconds expire
/// at least a second after the last moment the signature is accepted (that
/// second also absorbs sub-second clock differences between replicas).
pub fn redis_nonce_ttl(now: i64, until: i64) -> u64 {
    u64::try_from(until.saturating_sub(now).saturating_add(2))
        .unwrap_or(0)
        .max(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_accepted_once_per_client_until_it_expires() {
        let s = NonceStore::new(10, 0);
        assert_eq!(s.insert_once("a", "n", 100, 700), NonceOutcome::Fresh);
        assert_eq!(s.insert_once("a", "n", 200, 800), NonceOutcome::Replayed);
        assert_eq!(s.insert_once("b", "n", 200, 800), NonceOutcome::Fresh);
        assert_eq!(s.insert_once("a", "n", 701, 1301), NonceOutcome::Fresh);
    }

    #[tokio::test]
    async fn the_store_says_its_memory_began_when_it_was_created() {
        let s = NonceStore::new(10, 1_000);
        let first = Nonces::insert_once(&s, "a", "n", 1_010, 1_310)
            .await
            .unwrap();
        let again = Nonces::insert_once(&s, "a", "n", 1_011, 1_310)
            .await
            .unwrap();
        assert_eq!(
            first,
            NonceCheck {
                fresh: true,
                began: 1_000
            }
        );
        assert_eq!(
            again,
            NonceCheck {
                fresh: false,
                began: 1_000
            }
        );
    }

    /// Redis answers at 100, is down at 103 (the stand-in answers), is back
    /// at 110: each side's memory begins at the other's last answer.
    #[tokio::test]
    async fn each_side_of_a_fallback_begins_where_the_other_last_answered() {
        let handover = Arc::new(Handover::default());
        let shared = HandedOver::new(NonceStore::new(10, 0), Side::Shared, handover.clone());
        let local = HandedOver::new(NonceStore::new(10, 50), Side::Local, handover);
        assert_eq!(
            shared.insert_once("a", "1", 100, 400).await.unwrap().began,
            0
        );
        assert_eq!(
            local.insert_once("a", "2", 103, 400).await.unwrap().began,
            100
        );
        assert_eq!(
            local.insert_once("a", "3", 104, 400).await.unwrap().began,
            100
        );
        let back = shared.insert_once("a", "4", 110, 400).await.unwrap();
        assert_eq!(
            back,
            NonceCheck {
                fresh: true,
                began: 104
            }
        );
    }

    #[test]
    fn a_full_store_refuses_rather_than_forgets() {
        let s = NonceStore::new(2, 0);
        assert_eq!(s.insert_once("a", "1", 0, 100), NonceOutcome::Fresh);
        assert_eq!(s.insert_once("a", "2", 0, 100), NonceOutcome::Fresh);
        assert_eq!(s.insert_once("a", "3", 0, 100), NonceOutcome::Full);
        assert_eq!(s.insert_once("a", "3", 101, 200), NonceOutcome::Fresh);
    }
}

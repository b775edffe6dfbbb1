//! The Redis limiter against a real Redis (`GATEKEEPER_TEST_REDIS`, by
//! default `redis://127.0.0.1:6379`): the same verdicts as the in-process
//! limiter, all-or-nothing charges, expiry, peeks that write nothing, and
//! atomicity under concurrency. Each test owns a random key prefix and
//! deletes its keys at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_redis::redis::AsyncCommands;
use deadpool_redis::{Connection, Pool, Runtime};
use gatekeeper::core::decision::RateInfo;
use gatekeeper::core::limiter::{distinct, Charge, LimitKey, LocalLimiter, RateDenied};
use gatekeeper::core::model::Limit;
use gatekeeper::state::redis::limiter_script::{Ask, Mode, RedisLimiter};

type Outcome = Result<Option<RateInfo>, RateDenied>;

const SEC_US: u64 = 1_000_000;
/// A realistic epoch in µs (2023), near where Lua doubles stop being exact
/// to the nanosecond but still are to the microsecond.
const EPOCH_US: u64 = 1_700_000_000 * SEC_US;

struct Fixture {
    pool: Pool,
    prefix: String,
    limiter: RedisLimiter,
}

impl Fixture {
    fn new() -> Fixture {
        let url = std::env::var("GATEKEEPER_TEST_REDIS")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let pool = deadpool_redis::Config::from_url(url)
            .create_pool(Some(Runtime::Tokio1))
            .expect("a Redis pool");
        let mut random = [0u8; 8];
        getrandom::getrandom(&mut random).expect("the OS RNG works");
        Fixture {
            pool,
            prefix: format!("gktest:{}:", hex::encode(random)),
            limiter: RedisLimiter::new(),
        }
    }

    async fn conn(&self) -> Connection {
        self.pool.get().await.expect("Redis answers")
    }

    async fn ask(&self, charges: &[Charge<'_>], mode: Mode, now_us: Option<u64>) -> Outcome {
        let mut conn = self.conn().await;
        self.limiter
            .check_and_charge(&mut conn, &self.prefix, charges, mode, now_us)
            .await
            .expect("the script runs")
    }

    async fn charge(&self, charges: &[Charge<'_>], now_us: u64) -> Outcome {
        self.ask(charges, Mode::Charge, Some(now_us)).await
    }

    /// The Redis keys holding `key`'s state, one per limit it was charged
    /// under (`<prefix><key>#<limit>`).
    async fn redis_keys(&self, key: &LimitKey) -> Vec<String> {
        let pattern = format!("{}{}#*", self.prefix, key.0);
        let mut keys: Vec<String> = self.conn().await.keys(pattern).await.unwrap();
        keys.sort();
        keys
    }

    async fn exists(&self, key: &LimitKey) -> bool {
        !self.redis_keys(key).await.is_empty()
    }

    async fn pttl(&self, key: &LimitKey) -> i64 {
        let keys = self.redis_keys(key).await;
        assert_eq!(keys.len(), 1, "one limit's state: {keys:?}");
        let pttl: i64 = self.conn().await.pttl(&keys[0]).await.unwrap();
        pttl
    }

    /// Every stored state of `key`: (Redis key, TAT).
    async fn stored(&self, key: &LimitKey) -> Vec<(String, String)> {
        let mut stored = Vec::new();
        for name in self.redis_keys(key).await {
            let tat: String = self.conn().await.get(&name).await.unwrap();
            stored.push((name, tat));
        }
        stored
    }

    /// Deletes every key under this test's prefix.
    async fn clean_up(self) {
        let mut conn = self.conn().await;
        let pattern = format!("{}*", self.prefix);
        let keys: Vec<String> = {
            let mut iter = conn.scan_match::<_, String>(pattern).await.unwrap();
            let mut keys = Vec::new();
            while let Some(key) = futures_util::StreamExt::next(&mut iter).await {
                keys.push(key);
            }
            keys
        };
        if !keys.is_empty() {
            let _: () = conn.del(keys).await.unwrap();
        }
    }
}

fn key(name: &str) -> LimitKey {
    LimitKey(name.into())
}

fn limit(s: &str, burst: u32) -> Limit {
    Limit::parse(s).unwrap().with_burst(burst).unwrap()
}

fn one(key: &LimitKey, limit: Limit) -> [Charge<'_>; 1] {
    [Charge { key, limit }]
}

/// splitmix64: a reproducible request sequence without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Limits whose `T` is a whole number of microseconds, so both limiters use
/// the same `T`; bursts above, below and equal to the count. Every `T` is at
/// least 1 s, longer than the test runs, so no key expires in real time
/// while the simulated clock says it is still in debt.
fn equivalence_limits() -> Vec<Limit> {
    vec![
        limit("5/1m", 5),
        limit("3/10s", 1),
        limit("10/10s", 3),
        limit("2/4s", 5),
        limit("7/1h", 2),
        limit("4/8s", 4),
    ]
}

#[tokio::test]
async fn redis_gives_exactly_the_local_limiters_verdicts_for_a_random_sequence() {
    let fx = Fixture::new();
    let local = LocalLimiter::new(1_000);
    let keys = [key("c:a"), key("c:b"), key("g:a:r1"), key("g:b:r2")];
    let limits = equivalence_limits();
    let mut current: Vec<Limit> = (0..keys.len()).map(|i| limits[i]).collect();
    let steps_us = [
        0,
        0,
        0,
        0,
        1,
        SEC_US / 10,
        SEC_US,
        2 * SEC_US,
        7 * SEC_US,
        61 * SEC_US,
    ];
    let (mut rng, mut now_us) = (Rng(42), EPOCH_US);
    let (mut admitted, mut denied, mut multi_denied) = (0, 0, 0);
    for step in 0..600 {
        now_us += rng.pick(&steps_us);
        if rng.below(25) == 0 {
            let k = rng.below(keys.len() as u64) as usize;
            current[k] = rng.pick(&limits);
        }
        let charges: Vec<Charge<'_>> = (0..=rng.below(3))
            .map(|_| rng.below(keys.len() as u64) as usize)
            .map(|k| Charge {
                key: &keys[k],
                limit: current[k],
            })
            .collect();
        let mode = if rng.below(6) == 0 {
            Mode::Peek
        } else {
            Mode::Charge
        };
        let shared = fx.ask(&charges, mode, Some(now_us)).await;
        let now_ns = now_us * 1_000;
        if mode == Mode::Peek {
            assert_eq!(
                shared.map(drop),
                local.peek(&charges, now_ns),
                "step {step}"
            );
            continue;
        }
        let expected = local.check_and_charge(&charges, now_ns);
        assert_eq!(shared, expected, "step {step}: {charges:?} at {now_us} µs");
        match (shared, distinct(&charges).count()) {
            (Ok(_), _) => admitted += 1,
            (Err(_), 1) => denied += 1,
            (Err(_), _) => {
                denied += 1;
                multi_denied += 1;
            }
        }
    }
    assert!(
        admitted > 100 && denied > 50,
        "{admitted} admitted, {denied} denied"
    );
    assert!(multi_denied > 20, "{multi_denied} multi-charge denials");
    fx.clean_up().await;
}

/// One script call for a batch of asks decides what the same asks one by
/// one decide: a batch of up to 8 random asks (repeated keys across and
/// within asks, peeks, changed limits) at one instant, checked against the
/// in-process limiter ask by ask.
#[tokio::test]
async fn a_batch_decides_what_its_asks_one_by_one_decide() {
    let fx = Fixture::new();
    let local = LocalLimiter::new(1_000);
    let keys = [key("c:a"), key("c:b"), key("g:a:r1")];
    let limits = equivalence_limits();
    let mut current: Vec<Limit> = (0..keys.len()).map(|i| limits[i]).collect();
    let (mut rng, mut now_us) = (Rng(7), EPOCH_US);
    let (mut admitted, mut denied, mut batched) = (0, 0, 0);
    let mut conn = fx.conn().await;
    for round in 0..80 {
        now_us += rng.pick(&[0, 1, SEC_US, 3 * SEC_US, 20 * SEC_US]);
        if rng.below(10) == 0 {
            let k = rng.below(keys.len() as u64) as usize;
            current[k] = rng.pick(&limits);
        }
        let batch: Vec<(Vec<Charge<'_>>, Mode)> = (0..=rng.below(8))
            .map(|_| {
                let charges = (0..=rng.below(2))
                    .map(|_| rng.below(keys.len() as u64) as usize)
                    .map(|k| Charge {
                        key: &keys[k],
                        limit: current[k],
                    })
                    .collect();
                let mode = if rng.below(5) == 0 {
                    Mode::Peek
                } else {
                    Mode::Charge
                };
                (charges, mode)
            })
            .collect();
        let asks: Vec<Ask> = batch
            .iter()
            .filter_map(|(charges, mode)| Ask::new(&fx.prefix, charges, *mode))
            .collect();
        let outcomes = fx
            .limiter
            .run(&mut conn, &asks, Some(now_us))
            .await
            .expect("the script runs");
        assert_eq!(outcomes.len(), batch.len(), "round {round}");
        batched += usize::from(batch.len() > 1);
        let now_ns = now_us * 1_000;
        for (i, ((charges, mode), outcome)) in batch.iter().zip(outcomes).enumerate() {
            if *mode == Mode::Peek {
                assert_eq!(
                    outcome.map(drop),
                    local.peek(charges, now_ns),
                    "round {round}, ask {i}"
                );
                continue;
            }
            let expected = local.check_and_charge(charges, now_ns);
            assert_eq!(outcome, expected, "round {round}, ask {i}: {charges:?}");
            if outcome.is_ok() {
                admitted += 1;
            } else {
                denied += 1;
            }
        }
    }
    assert!(batched > 50, "{batched} rounds of more than one ask");
    assert!(
        admitted > 50 && denied > 50,
        "{admitted} admitted, {denied} denied"
    );
    drop(conn);
    fx.clean_up().await;
}

#[tokio::test]
async fn a_denied_multi_charge_call_charges_nothing() {
    let fx = Fixture::new();
    let (grant, client) = (key("g:a:r"), key("c:a"));
    let (tight, loose) = (limit("1/1m", 1), limit("10/1m", 10));
    assert!(fx.charge(&one(&grant, tight), EPOCH_US).await.is_ok());
    let tat_before = fx.stored(&grant).await;
    let both = [
        Charge {
            key: &client,
            limit: loose,
        },
        Charge {
            key: &grant,
            limit: tight,
        },
    ];
    let denied = fx.charge(&both, EPOCH_US).await.unwrap_err();
    assert_eq!((denied.retry_after_secs, denied.info.limit), (60, 1));
    assert!(!fx.exists(&client).await, "the admitting limit was written");
    assert_eq!(fx.stored(&grant).await, tat_before);
    let alone = fx.charge(&one(&client, loose), EPOCH_US).await;
    assert_eq!(alone.map(|i| i.map(|i| i.remaining)), Ok(Some(9)));
    fx.clean_up().await;
}

#[tokio::test]
async fn a_changed_limit_starts_from_full() {
    let fx = Fixture::new();
    let k = key("c:a");
    assert!(fx
        .charge(&one(&k, limit("1/1m", 1)), EPOCH_US)
        .await
        .is_ok());
    assert!(fx
        .charge(&one(&k, limit("1/1m", 1)), EPOCH_US)
        .await
        .is_err());
    // Same count and window, another burst: still another limit.
    let reburst = fx.charge(&one(&k, limit("1/1m", 3)), EPOCH_US).await;
    assert_eq!(reburst.map(|i| i.map(|i| i.remaining)), Ok(Some(2)));
    let doubled = fx.charge(&one(&k, limit("2/1m", 2)), EPOCH_US).await;
    assert_eq!(doubled.map(|i| i.map(|i| i.remaining)), Ok(Some(1)));
    fx.clean_up().await;
}

#[tokio::test]
async fn a_key_expires_when_its_tat_passes() {
    let fx = Fixture::new();
    let k = key("c:a");
    let five_a_minute = limit("5/1m", 5);
    for _ in 0..2 {
        assert!(fx.charge(&one(&k, five_a_minute), EPOCH_US).await.is_ok());
    }
    // Two charges from full: the TAT is 2 × 12 s ahead.
    let pttl = fx.pttl(&k).await;
    assert!((23_000..=24_000).contains(&pttl), "PTTL {pttl}");

    // A sub-second window on the Redis clock: T = 150 ms.
    let fast = key("c:fast");
    let sub_second = Limit {
        count: 2,
        window: Duration::from_millis(300),
        burst: 1,
    };
    assert!(fx
        .ask(&one(&fast, sub_second), Mode::Charge, None)
        .await
        .is_ok());
    let pttl = fx.pttl(&fast).await;
    assert!((1..=150).contains(&pttl), "PTTL {pttl}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while fx.exists(&fast).await {
        assert!(Instant::now() < deadline, "the key outlived its TAT");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fx.clean_up().await;
}

/// The script writes a key once per batch: with the TAT and expiry of the
/// batch's last charge of it, not its first.
#[tokio::test]
async fn a_key_charged_by_several_asks_of_a_batch_keeps_the_last_tat() {
    let fx = Fixture::new();
    let (k, other) = (key("c:a"), key("c:b"));
    let five_a_minute = limit("5/1m", 5);
    let asks: Vec<Ask> = [&k, &other, &k, &k]
        .into_iter()
        .filter_map(|key| Ask::new(&fx.prefix, &one(key, five_a_minute), Mode::Charge))
        .collect();
    let mut conn = fx.conn().await;
    let outcomes = fx
        .limiter
        .run(&mut conn, &asks, Some(EPOCH_US))
        .await
        .expect("the script runs");
    drop(conn);
    let remaining: Vec<_> = outcomes
        .into_iter()
        .map(|o| o.map(|info| info.map(|i| i.remaining)))
        .collect();
    assert_eq!(
        remaining,
        [Ok(Some(4)), Ok(Some(4)), Ok(Some(3)), Ok(Some(2))]
    );
    // Three charges from full: the TAT is 3 × 12 s ahead, and so is the expiry.
    let tat = (EPOCH_US + 36 * SEC_US).to_string();
    assert_eq!(
        fx.stored(&k)
            .await
            .into_iter()
            .map(|(_, t)| t)
            .collect::<Vec<_>>(),
        [tat]
    );
    let pttl = fx.pttl(&k).await;
    assert!((35_000..=36_000).contains(&pttl), "PTTL {pttl}");
    // The next batch goes on from there.
    assert_eq!(
        fx.charge(&one(&k, five_a_minute), EPOCH_US)
            .await
            .map(|i| i.map(|i| i.remaining)),
        Ok(Some(1))
    );
    fx.clean_up().await;
}

#[tokio::test]
async fn peek_judges_like_a_charge_and_never_writes() {
    let fx = Fixture::new();
    let (k, two) = (key("f:10.0.0.1"), limit("2/1m", 2));
    for _ in 0..3 {
        let peeked = fx.ask(&one(&k, two), Mode::Peek, Some(EPOCH_US)).await;
        assert_eq!(peeked.map(|i| i.map(|i| i.remaining)), Ok(Some(1)));
    }
    assert!(!fx.exists(&k).await, "a peek wrote the key");
    for _ in 0..2 {
        assert!(fx.charge(&one(&k, two), EPOCH_US).await.is_ok());
    }
    let stored = fx.stored(&k).await;
    let peeked = fx.ask(&one(&k, two), Mode::Peek, Some(EPOCH_US)).await;
    assert_eq!(peeked.map_err(|d| d.retry_after_secs), Err(30));
    // Neither a denied peek nor one under another limit writes.
    let other = fx
        .ask(&one(&k, limit("3/1m", 3)), Mode::Peek, Some(EPOCH_US))
        .await;
    assert!(other.is_ok());
    assert_eq!(fx.stored(&k).await, stored);
    assert_eq!(fx.charge(&one(&k, two), EPOCH_US).await, peeked);
    fx.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_on_the_redis_clock_admit_exactly_the_burst() {
    let fx = Arc::new(Fixture::new());
    let hundred = limit("100/1m", 100);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let fx = Arc::clone(&fx);
        tasks.spawn(async move {
            let mut requests = tokio::task::JoinSet::new();
            for _ in 0..75 {
                let fx = Arc::clone(&fx);
                requests.spawn(async move {
                    let k = key("c:shared");
                    fx.ask(&one(&k, hundred), Mode::Charge, None).await.is_ok()
                });
            }
            requests
                .join_all()
                .await
                .into_iter()
                .filter(|ok| *ok)
                .count()
        });
    }
    let admitted: usize = tasks.join_all().await.into_iter().sum();
    // One slot comes back every 600 ms: a slow run may see one more each.
    let refilled = (started.elapsed().as_millis() / 600) as usize;
    assert!(
        (100..=100 + refilled).contains(&admitted),
        "{admitted} admitted"
    );
    Arc::into_inner(fx).expect("tasks done").clean_up().await;
}

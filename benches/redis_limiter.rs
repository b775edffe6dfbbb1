//! One Redis limiter round trip (the script, one and two charges) against
//! the local Redis (`GATEKEEPER_BENCH_REDIS`, by default
//! `redis://127.0.0.1:6379`). Skipped with a message when Redis is
//! unreachable. Keys live under a random prefix, deleted at the end.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use deadpool_redis::redis::{self, AsyncCommands};
use deadpool_redis::{Connection, Runtime};
use gatekeeper::core::limiter::{Charge, LimitKey};
use gatekeeper::core::model::Limit;
use gatekeeper::state::redis::limiter_script::{Mode, RedisLimiter};
use tokio::runtime::Runtime as Tokio;

/// A limit no benchmark run can exhaust: T = 1 µs, a second of burst.
fn roomy() -> Limit {
    Limit::parse("1000000/1s").expect("a valid limit")
}

/// A connection that answered PING within a second, or `None`.
fn connect(rt: &Tokio) -> Option<Connection> {
    let url = std::env::var("GATEKEEPER_BENCH_REDIS")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let pool = deadpool_redis::Config::from_url(url)
        .create_pool(Some(Runtime::Tokio1))
        .ok()?;
    rt.block_on(async {
        let attempt = async {
            let mut conn = pool.get().await.ok()?;
            let _: String = redis::cmd("PING").query_async(&mut conn).await.ok()?;
            Some(conn)
        };
        tokio::time::timeout(Duration::from_secs(1), attempt)
            .await
            .ok()
            .flatten()
    })
}

/// One call on the Redis clock; panics unless it admits (a denial would
/// have measured another path).
fn charge_once(
    rt: &Tokio,
    conn: &mut Connection,
    limiter: &RedisLimiter,
    prefix: &str,
    charges: &[Charge<'_>],
) {
    let verdict = rt.block_on(limiter.check_and_charge(conn, prefix, charges, Mode::Charge, None));
    match verdict {
        Ok(Ok(Some(_))) => {}
        other => panic!("the benchmark charge was not admitted: {other:?}"),
    }
}

fn bench_redis_limiter(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let Some(mut conn) = connect(&rt) else {
        eprintln!("redis_limiter: Redis did not answer; skipping");
        return;
    };
    let mut random = [0u8; 8];
    getrandom::getrandom(&mut random).expect("the OS RNG works");
    let prefix = format!("gkbench:{}:", hex::encode(random));
    let limiter = RedisLimiter::new();
    let (grant, client) = (LimitKey("g:a:r".into()), LimitKey("c:a".into()));
    let one = [Charge {
        key: &grant,
        limit: roomy(),
    }];
    let two = [
        one[0],
        Charge {
            key: &client,
            limit: roomy(),
        },
    ];
    let mut group = c.benchmark_group("redis_limiter");
    for (charges, name) in [(&one[..], "one"), (&two[..], "two")] {
        charge_once(&rt, &mut conn, &limiter, &prefix, charges);
        let id = BenchmarkId::new("check_and_charge", name);
        group.bench_function(id, |b| {
            b.iter(|| charge_once(&rt, &mut conn, &limiter, &prefix, black_box(charges)))
        });
    }
    group.finish();
    let keys = [&grant, &client].map(|k| format!("{prefix}{}", k.0));
    let deleted: redis::RedisResult<()> = rt.block_on(conn.del(&keys[..]));
    if deleted.is_err() {
        eprintln!("redis_limiter: could not delete the {prefix}* keys");
    }
}

criterion_group!(benches, bench_redis_limiter);
criterion_main!(benches);

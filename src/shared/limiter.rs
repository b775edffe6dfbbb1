//! The rate limiter every replica shares: GCRA in one Lua script on Redis.
//!
//! This module owns the script and the conversion between the core's
//! nanoseconds and the script's microseconds. It decides nothing itself:
//! the script runs the state step of `core::limiter` (see its module docs
//! for the formulas) and returns each key's `debt` and `ahead`; the core's
//! [`Gcra::verdict`] and [`combine`] turn them into headers or a denial,
//! exactly as for the in-process limiter.
//!
//! # The script
//!
//! One `EVALSHA` (`EVAL` when Redis lacks the script) per call, so a call is
//! atomic across replicas: every distinct key is judged first, and only if
//! all admit, and the mode is [`Mode::Charge`], are they all written. Per key
//! it stores a hash `{tat, sig}`: the TAT in epoch microseconds and the
//! limit it was computed for; a hash for another `sig` counts as full. Each
//! written key expires (`PEXPIRE`, rounded up to the millisecond) when its
//! TAT passes, when it would count as full anyway.
//!
//! `now` is Redis `TIME`, so replicas share one clock; tests pass their own.
//! A clock step on the Redis host shifts every TAT at once: backwards it
//! delays, forwards it forgives.
//!
//! # Units
//!
//! Lua numbers are doubles, exact for integers below 2^53; epoch
//! microseconds are about 2^51. `T` is `window / count` rounded down to the
//! microsecond (at least 1 µs), and `T` and `tau` are capped at
//! [`MAX_SPAN_MICROS`] (about 71 years) so `now + tau + T` stays exact: a
//! limit whose `T` is a whole number of microseconds behaves exactly as in
//! `LocalLimiter`; otherwise `T` is shorter by under 1 µs.
//!
//! # Redis Cluster
//!
//! A call touches several keys in one script, which Redis Cluster allows
//! only when they hash to one slot (else `CROSSSLOT`). Single-node and
//! Sentinel deployments are fine; a cluster would need the caller's keys to
//! share a hash tag (`{client}`).

use deadpool_redis::redis::{self, aio::ConnectionLike, ErrorKind, RedisError, RedisResult};

use crate::core::decision::RateInfo;
use crate::core::limiter::{combine, distinct, Charge, Gcra, RateDenied, Verdict};
use crate::core::model::Limit;

const NANOS_PER_MICRO: u64 = 1_000;

/// The longest `T` or `tau` the script is given: `now + tau + T` stays below
/// 2^53 µs until about 2110.
pub const MAX_SPAN_MICROS: u64 = 1 << 51;

/// The state step of `core::limiter` per key, then all-or-nothing writes.
/// KEYS: the buckets, distinct. ARGV[1]: "charge" or "peek"; ARGV[2]: now in
/// µs, or "" for Redis TIME; then per key i, ARGV[3i..3i+2]: T and tau in
/// µs, and the limit's signature. Returns per key {debt, ahead} in µs.
const SCRIPT: &str = r#"
local now = tonumber(ARGV[2])
if not now then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end
local out, tats, all_admit = {}, {}, true
for i, key in ipairs(KEYS) do
  local interval, tolerance, sig = tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1]), ARGV[3 * i + 2]
  local stored = redis.call('HMGET', key, 'tat', 'sig')
  local base = now
  if stored[2] == sig then
    base = math.max(tonumber(stored[1]) or now, now)
  end
  local debt = base + interval - now
  all_admit = all_admit and debt <= tolerance
  tats[i] = now + debt
  out[2 * i - 1] = debt
  out[2 * i] = base - now
end
if all_admit and ARGV[1] == 'charge' then
  for i, key in ipairs(KEYS) do
    redis.call('HSET', key, 'tat', string.format('%.0f', tats[i]), 'sig', ARGV[3 * i + 2])
    redis.call('PEXPIRE', key, math.ceil((tats[i] - now) / 1000))
  end
end
return out
"#;

/// Whether a call writes the charges it admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Admit and charge, all or nothing.
    Charge,
    /// Judge only: would these charges be admitted now? Writes nothing.
    Peek,
}

impl Mode {
    fn as_arg(self) -> &'static str {
        match self {
            Mode::Charge => "charge",
            Mode::Peek => "peek",
        }
    }
}

/// GCRA limits kept in Redis, shared by every replica.
#[derive(Debug)]
pub struct RedisLimiter {
    script: redis::Script,
}

impl Default for RedisLimiter {
    fn default() -> RedisLimiter {
        RedisLimiter::new()
    }
}

impl RedisLimiter {
    pub fn new() -> RedisLimiter {
        RedisLimiter {
            script: redis::Script::new(SCRIPT),
        }
    }

    /// Judges `charges` (a repeated key counts once, with its first limit)
    /// in one round trip and, in [`Mode::Charge`], charges them all if all
    /// admit. `prefix` is prepended to every key. `now_micros` is `None` in
    /// production (Redis `TIME`), a fixed clock in tests. `Ok(Ok(None))`
    /// without a round trip when there is nothing to charge; `Err` only when
    /// Redis could not answer.
    pub async fn check_and_charge<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        prefix: &str,
        charges: &[Charge<'_>],
        mode: Mode,
        now_micros: Option<u64>,
    ) -> RedisResult<Result<Option<RateInfo>, RateDenied>> {
        let charges: Vec<&Charge<'_>> = distinct(charges).collect();
        if charges.is_empty() {
            return Ok(Ok(None));
        }
        let params: Vec<Gcra> = charges.iter().map(|c| micro_gcra(&c.limit)).collect();
        let mut call = self.script.prepare_invoke();
        call.arg(mode.as_arg());
        call.arg(now_micros.map_or(String::new(), |now| now.to_string()));
        for (charge, gcra) in charges.iter().zip(&params) {
            call.key(concat(&[prefix, &charge.key.0]));
            call.arg(gcra.interval_nanos() / NANOS_PER_MICRO);
            call.arg(gcra.tolerance_nanos() / NANOS_PER_MICRO);
            call.arg(signature(&charge.limit));
        }
        let steps: Vec<u64> = call.invoke_async(conn).await?;
        Ok(combine(verdicts(&params, &steps)?))
    }
}

/// A limit's parameters as the script sees them, in nanoseconds that are
/// whole microseconds: `T` rounded down (at least 1 µs), both capped.
fn micro_gcra(limit: &Limit) -> Gcra {
    let window = u64::try_from(limit.window.as_micros()).unwrap_or(u64::MAX);
    let interval = (window / u64::from(limit.count.max(1))).clamp(1, MAX_SPAN_MICROS);
    let burst = u64::from(limit.burst.max(1));
    let burst = u32::try_from(burst.min(MAX_SPAN_MICROS / interval)).unwrap_or(u32::MAX);
    Gcra::new(limit.count, interval * NANOS_PER_MICRO, burst)
}

/// What a stored TAT was computed for; another limit starts from full.
/// (`count/windowns/burst`, built without the formatting machinery: this
/// runs for every limit of every decision.)
fn signature(limit: &Limit) -> String {
    concat(&[
        &limit.count.to_string(),
        "/",
        &limit.window.as_nanos().to_string(),
        "ns/",
        &limit.burst.to_string(),
    ])
}

fn concat(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    parts.iter().for_each(|p| s.push_str(p));
    s
}

/// Each key's `{debt, ahead}` in µs, judged by the core.
fn verdicts(params: &[Gcra], steps: &[u64]) -> RedisResult<Vec<Verdict>> {
    if steps.len() != 2 * params.len() {
        let detail = format!("{} values for {} keys", steps.len(), params.len());
        return Err(RedisError::from((
            ErrorKind::TypeError,
            "unexpected limiter script reply",
            detail,
        )));
    }
    let nanos = |micros: u64| micros.saturating_mul(NANOS_PER_MICRO);
    Ok(params
        .iter()
        .zip(steps.chunks_exact(2))
        .map(|(gcra, step)| gcra.verdict(nanos(step[0]), nanos(step[1])))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::limiter::LimitKey;
    use deadpool_redis::redis::{Arg, Cmd, Pipeline, RedisFuture, Value};
    use std::time::Duration;

    /// Records each command's arguments and answers `reply`.
    struct Recorder {
        sent: Vec<Vec<String>>,
        reply: Value,
    }

    impl ConnectionLike for Recorder {
        fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
            let args = cmd.args_iter().map(|arg| match arg {
                Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                Arg::Cursor => "<cursor>".to_owned(),
            });
            self.sent.push(args.collect());
            let reply = self.reply.clone();
            Box::pin(async move { Ok(reply) })
        }

        fn req_packed_commands<'a>(
            &'a mut self,
            _: &'a Pipeline,
            _: usize,
            _: usize,
        ) -> RedisFuture<'a, Vec<Value>> {
            unreachable!("the limiter sends no pipelines")
        }

        fn get_db(&self) -> i64 {
            0
        }
    }

    fn recorder(reply: &[i64]) -> Recorder {
        let reply = Value::Array(reply.iter().copied().map(Value::Int).collect());
        Recorder {
            sent: Vec::new(),
            reply,
        }
    }

    #[tokio::test]
    async fn no_charges_make_no_round_trip() {
        let mut conn = recorder(&[]);
        let limiter = RedisLimiter::new();
        let verdict = limiter
            .check_and_charge(&mut conn, "p:", &[], Mode::Charge, None)
            .await;
        assert_eq!(verdict, Ok(Ok(None)));
        assert!(conn.sent.is_empty());
    }

    #[tokio::test]
    async fn a_repeated_key_is_sent_once_with_its_first_limit() {
        let k = LimitKey("c:a".into());
        let (first, second) = (
            limit(2, Duration::from_secs(60), 2),
            limit(9, Duration::from_secs(1), 9),
        );
        let charges = [
            Charge {
                key: &k,
                limit: first,
            },
            Charge {
                key: &k,
                limit: second,
            },
        ];
        // From full: debt = T = 30 s, ahead = 0.
        let mut conn = recorder(&[30_000_000, 0]);
        let verdict = RedisLimiter::new()
            .check_and_charge(&mut conn, "p:", &charges, Mode::Peek, Some(7))
            .await;
        let info = RateInfo {
            limit: 2,
            remaining: 1,
            reset_secs: 30,
        };
        assert_eq!(verdict, Ok(Ok(Some(info))));
        let sent = &conn.sent[0][2..];
        let expected = [
            "1",
            "p:c:a",
            "peek",
            "7",
            "30000000",
            "60000000",
            "2/60000000000ns/2",
        ];
        assert_eq!(sent, expected);
    }

    fn limit(count: u32, window: Duration, burst: u32) -> Limit {
        Limit {
            count,
            window,
            burst,
        }
    }

    #[test]
    fn the_interval_is_rounded_down_to_whole_microseconds_and_never_zero() {
        let third = micro_gcra(&limit(3, Duration::from_secs(1), 3));
        assert_eq!(third.interval_nanos(), 333_333_000);
        assert_eq!(third.tolerance_nanos(), 999_999_000);
        let dense = micro_gcra(&limit(u32::MAX, Duration::from_secs(1), 2));
        assert_eq!(dense.interval_nanos(), 1_000);
        assert_eq!(dense.tolerance_nanos(), 2_000);
    }

    #[test]
    fn spans_are_capped_where_lua_doubles_stay_exact() {
        let huge = micro_gcra(&limit(1, Duration::MAX, u32::MAX));
        assert_eq!(huge.interval_nanos(), MAX_SPAN_MICROS * NANOS_PER_MICRO);
        assert_eq!(huge.tolerance_nanos(), MAX_SPAN_MICROS * NANOS_PER_MICRO);
        let daily = micro_gcra(&limit(1, Duration::from_secs(86_400), 1_000));
        assert_eq!(daily.tolerance_nanos(), 86_400_000_000 * 1_000 * 1_000);
    }

    #[test]
    fn a_reply_of_the_wrong_length_is_an_error_not_a_verdict() {
        let params = [micro_gcra(&limit(1, Duration::from_secs(1), 1))];
        assert!(verdicts(&params, &[1]).is_err());
        assert!(verdicts(&params, &[1_000_000, 0]).is_ok());
    }
}

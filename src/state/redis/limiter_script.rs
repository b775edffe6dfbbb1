//! The rate limiter every replica shares: GCRA in one Lua script on Redis.
//!
//! This module owns the script and the conversion between the core's
//! nanoseconds and the script's microseconds. It decides nothing itself:
//! the script runs the state step of `core::limiter` (see its module docs
//! for the formulas) and returns each key's `debt` (its `ahead` is
//! `debt - T`, computed here: half the reply to send and parse); the core's
//! [`Gcra::verdict`] and [`combine`] turn them into headers or a denial,
//! exactly as for the in-process limiter.
//!
//! # The script
//!
//! One `EVALSHA` (`EVAL` when Redis lacks the script) judges a batch of
//! asks (see `state::redis::batch`), in order, each atomically across replicas:
//! every distinct key of an ask is judged first, and only if all admit, and
//! its mode is [`Mode::Charge`], are they all written — before the next ask
//! of the batch is judged, so a batch decides exactly as its asks would one
//! after another. Per key it stores the TAT in epoch microseconds as a plain
//! string; the key's name ends in the limit it was computed for (see
//! [`redis_key`]), so a changed limit finds no state and starts from full.
//! The script keeps the batch's TATs in a Lua table as it goes and writes
//! each charged key once, at the end, with its last TAT: a client's key
//! charged by four decisions of one batch costs one write, not four. Each
//! written key expires (`SET … PX`, rounded up to the millisecond) when
//! that TAT passes, when it would count as full anyway.
//!
//! What a script call costs Redis is mostly the call itself, not the GCRA
//! step: starting the script (~3 µs), `TIME` (~1.5 µs), the first write
//! (~2–3 µs) and every `redis.call` (~1 µs each). So the script reads every
//! key of the batch with one `MGET`, writes each charged key with one `SET`
//! per batch (no hash, no separate `PEXPIRE`), and hands TATs to Redis as
//! Lua numbers, which Redis prints exactly for integers below 2^53 (no
//! `string.format`).
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
//! Redis Cluster runs a script only when all its keys hash to one slot
//! (else `CROSSSLOT`). In a cluster ([`Ask::tagged`]) each key's name holds
//! its owner ([`LimitKey::owner`]: the client) as a hash tag, so the keys of
//! one ask share a slot, and `state::redis::batch` splits a batch into one
//! script call per owner. On one node or behind Sentinel the names carry no
//! tag and a batch is one call, as before.

use deadpool_redis::redis::{self, aio::ConnectionLike, ErrorKind, RedisError, RedisResult};

use crate::core::decision::RateInfo;
pub use crate::core::limiter::Mode;
use crate::core::limiter::{combine, distinct, Charge, Gcra, LimitKey, RateDenied, Verdict};
use crate::core::model::Limit;

const NANOS_PER_MICRO: u64 = 1_000;

/// The longest `T` or `tau` the script is given: `now + tau + T` stays below
/// 2^53 µs until about 2110.
pub const MAX_SPAN_MICROS: u64 = 1 << 51;

/// Judges a batch of asks in order. KEYS: every ask's distinct keys, ask
/// after ask. ARGV[1]: now in µs, or "" for Redis TIME; then per ask: its
/// mode ("charge" or "peek") and its key count n, then per key T and tau in
/// µs. Returns per key of every ask its debt in µs.
const SCRIPT: &str = r#"
local now = tonumber(ARGV[1])
if not now then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end
local stored = redis.call('MGET', unpack(KEYS))
local tat = {}
for i = 1, #KEYS do
  tat[KEYS[i]] = tonumber(stored[i])
end
local out, a, k, written, order = {}, 2, 0, {}, {}
while a <= #ARGV do
  local charge, n = ARGV[a] == 'charge', tonumber(ARGV[a + 1])
  a = a + 2
  local first, admit = #out, true
  for j = 1, n do
    local base = math.max(tat[KEYS[k + j]] or now, now)
    local debt = base + tonumber(ARGV[a]) - now
    admit = admit and debt <= tonumber(ARGV[a + 1])
    out[first + j] = debt
    a = a + 2
  end
  if admit and charge then
    for j = 1, n do
      local key = KEYS[k + j]
      tat[key] = now + out[first + j]
      if not written[key] then
        written[key] = true
        order[#order + 1] = key
      end
    end
  end
  k = k + n
end
for i = 1, #order do
  local key = order[i]
  redis.call('SET', key, tat[key], 'PX', math.ceil((tat[key] - now) / 1000))
end
return out
"#;

/// The script's `mode` argument.
fn mode_arg(mode: Mode) -> &'static str {
    match mode {
        Mode::Charge => "charge",
        Mode::Peek => "peek",
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

/// One caller's charges, owned and ready for the script: each distinct key
/// with its limit's name and parameters. Built before a batch forms, so the
/// batch holds no borrow of the caller's request.
#[derive(Debug)]
pub struct Ask {
    mode: Mode,
    keys: Vec<String>,
    params: Vec<Gcra>,
    /// In a cluster, the owner its keys are tagged with: asks of one owner
    /// may share a script call.
    group: Option<Box<str>>,
}

impl Ask {
    /// `charges` (a repeated key counts once, with its first limit) under
    /// `prefix`; `None` when there is nothing to charge.
    pub fn new(prefix: &str, charges: &[Charge<'_>], mode: Mode) -> Option<Ask> {
        let (keys, params) = distinct(charges)
            .map(|c| (redis_key(prefix, c.key, &c.limit), micro_gcra(&c.limit)))
            .unzip::<_, _, Vec<_>, Vec<_>>();
        (!keys.is_empty()).then_some(Ask {
            mode,
            keys,
            params,
            group: None,
        })
    }

    /// As [`Ask::new`], for Redis Cluster: every key's name carries its
    /// owner as a hash tag after `prefix` (see [`tagged_key`]). The keys of
    /// one decision share an owner (a client's own and grant limits), so
    /// they share a slot.
    pub fn tagged(prefix: &str, charges: &[Charge<'_>], mode: Mode) -> Option<Ask> {
        let (keys, params) = distinct(charges)
            .map(|c| (tagged_key(prefix, c.key, &c.limit), micro_gcra(&c.limit)))
            .unzip::<_, _, Vec<_>, Vec<_>>();
        let group = charges.first()?.key.owner().into();
        (!keys.is_empty()).then_some(Ask {
            mode,
            keys,
            params,
            group: Some(group),
        })
    }

    /// The owner its keys are tagged with, in a cluster.
    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }
}

/// What the script decided for one ask.
pub type Outcome = Result<Option<RateInfo>, RateDenied>;

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
    ) -> RedisResult<Outcome> {
        let Some(ask) = Ask::new(prefix, charges, mode) else {
            return Ok(Ok(None));
        };
        let mut outcomes = self.run(conn, &[ask], now_micros).await?;
        Ok(outcomes.pop().unwrap_or(Ok(None)))
    }

    /// Judges `asks` in one round trip, in order, each all-or-nothing as if
    /// sent alone one after another; one outcome per ask. An empty batch
    /// makes no round trip.
    pub async fn run<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        asks: &[Ask],
        now_micros: Option<u64>,
    ) -> RedisResult<Vec<Outcome>> {
        if asks.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = self.script.prepare_invoke();
        call.arg(now_micros.map_or(String::new(), |now| now.to_string()));
        for ask in asks {
            call.arg(mode_arg(ask.mode));
            call.arg(ask.keys.len());
            for (key, gcra) in ask.keys.iter().zip(&ask.params) {
                call.key(key.as_str());
                call.arg(gcra.interval_nanos() / NANOS_PER_MICRO);
                call.arg(gcra.tolerance_nanos() / NANOS_PER_MICRO);
            }
        }
        let steps: Vec<u64> = call.invoke_async(conn).await?;
        let expected: usize = asks.iter().map(|a| a.keys.len()).sum();
        if steps.len() != expected {
            let detail = format!("{} values for {} keys", steps.len(), expected);
            return Err(RedisError::from((
                ErrorKind::TypeError,
                "unexpected limiter script reply",
                detail,
            )));
        }
        let mut rest = steps.as_slice();
        let outcomes = asks.iter().map(|ask| {
            let (mine, after) = rest.split_at(ask.keys.len());
            rest = after;
            combine(verdicts(&ask.params, mine))
        });
        Ok(outcomes.collect())
    }
}

/// Where one limit of one key keeps its TAT: `prefix`, the key, `#` and
/// what the TAT was computed for, `count/windowns/burst` (another limit
/// starts from full). That suffix never holds a `#`, so the name splits
/// back at its last `#`: distinct (key, limit) pairs never share one. One
/// allocation: this runs for every limit of every decision.
pub fn redis_key(prefix: &str, key: &LimitKey, limit: &Limit) -> String {
    limit_key_name(prefix, None, key, limit)
}

/// [`redis_key`] for Redis Cluster: `prefix`, then the key's owner as a
/// hash tag (`{team-a}`), then as `redis_key`. The tag decides the slot;
/// the rest keeps names distinct.
pub fn tagged_key(prefix: &str, key: &LimitKey, limit: &Limit) -> String {
    limit_key_name(prefix, Some(key.owner()), key, limit)
}

fn limit_key_name(prefix: &str, tag: Option<&str>, key: &LimitKey, limit: &Limit) -> String {
    let mut digits = itoa::Buffer::new();
    let tag = tag.map(|owner| super::hash_tag(true, owner));
    let tag = tag.as_deref().unwrap_or("");
    let mut name = String::with_capacity(prefix.len() + tag.len() + key.0.len() + 48);
    name.push_str(prefix);
    name.push_str(tag);
    name.push_str(&key.0);
    name.push('#');
    name.push_str(digits.format(limit.count));
    name.push('/');
    name.push_str(digits.format(limit.window.as_nanos()));
    name.push_str("ns/");
    name.push_str(digits.format(limit.burst));
    name
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

/// Each key's debt in µs, judged by the core.
fn verdicts<'a>(params: &'a [Gcra], debts: &'a [u64]) -> impl Iterator<Item = Verdict> + 'a {
    params.iter().zip(debts).map(|(gcra, &debt)| {
        let debt = debt.saturating_mul(NANOS_PER_MICRO);
        // debt = max(tat, now) + T - now, so ahead = max(tat, now) - now is
        // debt - T (T whole microseconds, as the script was given it).
        gcra.verdict(debt, debt.saturating_sub(gcra.interval_nanos()))
    })
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
        // From full: debt = T = 30 s (ahead = 0).
        let mut conn = recorder(&[30_000_000]);
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
            "p:c:a#2/60000000000ns/2",
            "7",
            "peek",
            "1",
            "30000000",
            "60000000",
        ];
        assert_eq!(sent, expected);
    }

    #[test]
    fn in_a_cluster_a_clients_keys_carry_its_id_as_one_hash_tag() {
        let (c, g) = (
            LimitKey("c:team-a".into()),
            LimitKey("g:team-a:chat".into()),
        );
        let l = limit(2, Duration::from_secs(60), 2);
        assert_eq!(
            tagged_key("p:rl:", &c, &l),
            "p:rl:{team-a}c:team-a#2/60000000000ns/2"
        );
        assert_eq!(
            tagged_key("p:rl:", &g, &l),
            "p:rl:{team-a}g:team-a:chat#2/60000000000ns/2"
        );
        assert_eq!(
            redis_key("p:rl:", &c, &l),
            "p:rl:c:team-a#2/60000000000ns/2"
        );
        let charges = [Charge { key: &g, limit: l }, Charge { key: &c, limit: l }];
        let ask = Ask::tagged("p:rl:", &charges, Mode::Charge).unwrap();
        assert_eq!(ask.group(), Some("team-a"));
        assert_eq!(
            Ask::new("p:rl:", &charges, Mode::Charge).unwrap().group(),
            None
        );
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

    #[tokio::test]
    async fn a_reply_of_the_wrong_length_is_an_error_not_a_verdict() {
        let k = LimitKey("c:a".into());
        let charges = [Charge {
            key: &k,
            limit: limit(1, Duration::from_secs(1), 1),
        }];
        let limiter = RedisLimiter::new();
        let short = limiter
            .check_and_charge(&mut recorder(&[]), "p:", &charges, Mode::Charge, None)
            .await;
        assert!(short.is_err(), "{short:?}");
        let long = limiter
            .check_and_charge(&mut recorder(&[1, 2]), "p:", &charges, Mode::Charge, None)
            .await;
        assert!(long.is_err(), "{long:?}");
        let whole = limiter
            .check_and_charge(
                &mut recorder(&[1_000_000]),
                "p:",
                &charges,
                Mode::Charge,
                None,
            )
            .await;
        assert!(matches!(whole, Ok(Ok(Some(_)))), "{whole:?}");
    }

    #[tokio::test]
    async fn a_batch_is_one_call_and_its_reply_is_split_per_ask() {
        let (a, b) = (LimitKey("c:a".into()), LimitKey("c:b".into()));
        let one_a_second = limit(1, Duration::from_secs(1), 1);
        let asks = [
            Ask::new(
                "p:",
                &[Charge {
                    key: &a,
                    limit: one_a_second,
                }],
                Mode::Charge,
            ),
            Ask::new(
                "p:",
                &[
                    Charge {
                        key: &b,
                        limit: one_a_second,
                    },
                    Charge {
                        key: &a,
                        limit: one_a_second,
                    },
                ],
                Mode::Peek,
            ),
        ];
        let asks: Vec<Ask> = asks.into_iter().flatten().collect();
        // a admitted from full; then b from full but a 1 s ahead: refused.
        let mut conn = recorder(&[1_000_000, 1_000_000, 2_000_000]);
        let outcomes = RedisLimiter::new()
            .run(&mut conn, &asks, None)
            .await
            .unwrap();
        assert_eq!(conn.sent.len(), 1, "one script call");
        assert!(
            matches!(outcomes[0], Ok(Some(RateInfo { remaining: 0, .. }))),
            "{outcomes:?}"
        );
        assert_eq!(outcomes[1].map_err(|d| d.retry_after_secs), Err(1));
        let sent = &conn.sent[0][2..];
        let expected = [
            "3",
            "p:c:a#1/1000000000ns/1",
            "p:c:b#1/1000000000ns/1",
            "p:c:a#1/1000000000ns/1",
            "",
            "charge",
            "1",
            "1000000",
            "1000000",
            "peek",
            "2",
            "1000000",
            "1000000",
            "1000000",
            "1000000",
        ];
        assert_eq!(sent, expected);
    }
}

//! Unit tests of `core::limiter`.
use super::*;
use std::time::Duration;

const SEC: u64 = NANOS_PER_SEC;
const MS: u64 = NANOS_PER_SEC / 1_000;

fn key(name: &str) -> LimitKey {
    LimitKey(name.into())
}

fn limit(s: &str) -> Limit {
    Limit::parse(s).unwrap()
}

fn one(l: &LocalLimiter, k: &LimitKey, lim: Limit, now: u64) -> Result<RateInfo, RateDenied> {
    let charges = [Charge { key: k, limit: lim }];
    l.check_and_charge(&charges, now).map(|i| i.unwrap())
}

#[test]
fn five_per_minute_admits_five_back_to_back_then_asks_to_retry_after_12_seconds() {
    let (l, k, lim) = (LocalLimiter::new(100), key("c:a"), limit("5/1m"));
    let t0 = 1_000 * SEC;
    for _ in 0..5 {
        assert!(one(&l, &k, lim, t0).is_ok());
    }
    let denied = one(&l, &k, lim, t0).unwrap_err();
    assert_eq!(denied.retry_after_secs, 12);
    assert_eq!(
        denied.info,
        RateInfo {
            limit: 5,
            remaining: 0,
            reset_secs: 60
        }
    );
    assert!(one(&l, &k, lim, t0 + 12 * SEC - 1).is_err());
    assert_eq!(one(&l, &k, lim, t0 + 12 * SEC).map(|i| i.remaining), Ok(0));
    assert!(one(&l, &k, lim, t0 + 12 * SEC).is_err());
}

#[test]
fn a_burst_of_two_at_sixty_per_minute_admits_two_then_one_per_second() {
    let (l, k) = (LocalLimiter::new(100), key("c:a"));
    let lim = limit("60/1m").with_burst(2).unwrap();
    assert!(one(&l, &k, lim, 0).is_ok());
    assert!(one(&l, &k, lim, 0).is_ok());
    assert_eq!(one(&l, &k, lim, 0).unwrap_err().retry_after_secs, 1);
    for s in 1..=5 {
        assert!(one(&l, &k, lim, s * SEC).is_ok(), "second {s}");
        assert!(one(&l, &k, lim, s * SEC).is_err(), "second {s}");
    }
}

#[test]
fn remaining_counts_down_to_zero_and_reset_is_the_seconds_until_full() {
    let (l, k, lim) = (LocalLimiter::new(100), key("c:a"), limit("5/1m"));
    let seen: Vec<(u32, u64)> = (0..5)
        .map(|_| {
            one(&l, &k, lim, 0)
                .map(|i| (i.remaining, i.reset_secs))
                .unwrap()
        })
        .collect();
    assert_eq!(seen, [(4, 12), (3, 24), (2, 36), (1, 48), (0, 60)]);
    // 29.5 s later two slots are back and this request takes one; the
    // debt is 60 - 29.5 + 12 = 42.5 s.
    let info = one(&l, &k, lim, 29_500_000_000).unwrap();
    assert_eq!((info.remaining, info.reset_secs, info.limit), (1, 43, 5));
}

#[test]
fn when_one_charge_denies_neither_is_charged() {
    let l = LocalLimiter::new(100);
    let (grant, client) = (key("g:a:r"), key("c:a"));
    let tight = limit("1/1m");
    let loose = limit("10/1m");
    assert!(one(&l, &grant, tight, 0).is_ok());
    let both = [
        Charge {
            key: &grant,
            limit: tight,
        },
        Charge {
            key: &client,
            limit: loose,
        },
    ];
    let denied = l.check_and_charge(&both, 0).unwrap_err();
    assert_eq!(denied.retry_after_secs, 60);
    assert_eq!(
        denied.info,
        RateInfo {
            limit: 1,
            remaining: 0,
            reset_secs: 60
        }
    );
    assert_eq!(one(&l, &client, loose, 0).map(|i| i.remaining), Ok(9));
}

#[test]
fn a_denial_waits_for_the_slowest_denying_limit() {
    let l = LocalLimiter::new(100);
    let (a, b) = (key("g:a:r"), key("c:a"));
    let (fast, slow) = (limit("2/2s"), limit("1/1m"));
    let both = [
        Charge {
            key: &a,
            limit: fast,
        },
        Charge {
            key: &b,
            limit: slow,
        },
    ];
    assert!(l.check_and_charge(&both, 0).is_ok());
    assert!(one(&l, &a, fast, 0).is_ok());
    let denied = l.check_and_charge(&both, 0).unwrap_err();
    assert_eq!(denied.retry_after_secs, 60);
    assert_eq!(denied.info.limit, 1);
}

#[test]
fn headers_describe_the_lower_remaining_and_the_first_charge_on_a_tie() {
    let l = LocalLimiter::new(100);
    let (g, c) = (key("g:a:r"), key("c:a"));
    let (ten, five) = (limit("10/1m"), limit("5/1m"));
    let lower = [
        Charge {
            key: &g,
            limit: ten,
        },
        Charge {
            key: &c,
            limit: five,
        },
    ];
    let info = l.check_and_charge(&lower, 0).unwrap().unwrap();
    assert_eq!((info.limit, info.remaining), (5, 4));

    let (g2, c2) = (key("g:b:r"), key("c:b"));
    let (per_min, per_hour) = (limit("3/1m"), limit("3/1h"));
    let tie = [
        Charge {
            key: &g2,
            limit: per_min,
        },
        Charge {
            key: &c2,
            limit: per_hour,
        },
    ];
    let info = l.check_and_charge(&tie, 0).unwrap().unwrap();
    assert_eq!((info.remaining, info.reset_secs), (2, 20));
}

#[test]
fn a_changed_limit_for_a_key_starts_fresh() {
    let (l, k) = (LocalLimiter::new(100), key("c:a"));
    assert!(one(&l, &k, limit("1/1m"), 0).is_ok());
    assert!(one(&l, &k, limit("1/1m"), 0).is_err());
    assert_eq!(one(&l, &k, limit("2/1m"), 0).map(|i| i.remaining), Ok(1));
}

#[test]
fn no_charges_means_no_limit() {
    assert_eq!(LocalLimiter::new(1).check_and_charge(&[], 0), Ok(None));
}

#[test]
fn a_key_repeated_in_one_call_is_charged_once() {
    let (l, k, lim) = (LocalLimiter::new(100), key("c:a"), limit("2/1m"));
    let twice = [
        Charge {
            key: &k,
            limit: lim,
        },
        Charge {
            key: &k,
            limit: lim,
        },
    ];
    assert_eq!(
        l.check_and_charge(&twice, 0).unwrap().map(|i| i.remaining),
        Some(1)
    );
    assert!(l.check_and_charge(&twice, 0).is_ok());
    assert!(l.check_and_charge(&twice, 0).is_err());
}

#[test]
fn a_purge_keeps_the_map_bounded_and_forgets_only_what_is_full() {
    let l = LocalLimiter::new(64);
    let lim = limit("1/1s");
    for i in 0..1_000u64 {
        assert!(one(&l, &key(&format!("c:{i}")), lim, i * SEC / 2).is_ok());
        assert!(l.len() <= 64);
    }
    // A key deep in debt outlives the purges of keys that filled up again.
    let (hot, hourly) = (key("c:hot"), limit("1/1h"));
    let now = 1_000 * SEC;
    assert!(one(&l, &hot, hourly, now).is_ok());
    for i in 0..200u64 {
        assert!(one(&l, &key(&format!("c:x{i}")), lim, now + i * SEC).is_ok());
    }
    assert!(l.len() <= 64);
    assert!(one(&l, &hot, hourly, now + 200 * SEC).is_err());
    // All keys live: the bound holds and nothing is denied for lack of room.
    let live = LocalLimiter::new(8);
    let slow = limit("1/1h");
    for i in 0..100 {
        assert!(one(&live, &key(&format!("c:{i}")), slow, 0).is_ok());
        assert!(live.len() <= 8);
    }
}

#[test]
fn spread_requests_at_three_times_the_rate_pass_exactly_one_in_three() {
    let (l, k, lim) = (LocalLimiter::new(100), key("c:a"), limit("5/1m"));
    let step = 4 * SEC; // T / 3
    for _ in 0..5 {
        assert!(one(&l, &k, lim, 0).is_ok());
    }
    let admitted = (1..=15)
        .filter(|i| one(&l, &k, lim, i * step).is_ok())
        .count();
    assert_eq!(admitted, 5);
}

#[test]
fn the_window_slides_with_no_doubling_at_window_boundaries() {
    let (l, k, lim) = (LocalLimiter::new(100), key("c:a"), limit("30/1m"));
    let interval = 2 * SEC;
    let step = interval / 3;
    let mut admitted = 0u64;
    let mut now = 0;
    while now <= 120 * SEC {
        admitted += u64::from(one(&l, &k, lim, now).is_ok());
        now += step;
    }
    assert!(admitted <= 30 + 120 * SEC / interval + 1, "{admitted}");
    assert!(admitted >= 30 + 120 * SEC / interval - 1, "{admitted}");
}

#[test]
fn extreme_values_never_panic() {
    let l = LocalLimiter::new(4);
    let k = key("c:a");
    let huge = Limit {
        count: 1,
        window: Duration::MAX,
        burst: u32::MAX,
    };
    let zero = Limit {
        count: 0,
        window: Duration::ZERO,
        burst: 0,
    };
    let dense = Limit {
        count: u32::MAX,
        window: Duration::from_secs(1),
        burst: u32::MAX,
    };
    for lim in [huge, zero, dense, limit("1/366d")] {
        for now in [0, 1, u64::MAX - 1, u64::MAX, 5] {
            let _ = one(&l, &k, lim, now);
            let _ = one(&l, &k, lim, now);
        }
    }
    assert!(one(&l, &key("c:b"), huge, u64::MAX).is_ok());
}

#[test]
fn a_poisoned_lock_is_recovered() {
    let l = Arc::new(LocalLimiter::new(4));
    let l2 = Arc::clone(&l);
    let _ = std::thread::spawn(move || {
        let _guard = l2.entries.lock();
        panic!("poison the lock");
    })
    .join();
    assert!(l.entries.is_poisoned());
    assert!(one(&l, &key("c:a"), limit("1/1m"), 0).is_ok());
    assert_eq!(l.len(), 1);
}

fn charge(key: &LimitKey, limit: Limit) -> Charge<'_> {
    Charge { key, limit }
}

#[test]
fn peek_predicts_the_charge_and_stores_nothing() {
    let (l, k, lim) = (LocalLimiter::new(100), key("f:10.0.0.1"), limit("2/1m"));
    let charges = [charge(&k, lim)];
    for _ in 0..5 {
        assert_eq!(l.peek(&charges, 0), Ok(()));
    }
    assert!(l.is_empty());
    assert!(l.check_and_charge(&charges, 0).is_ok());
    assert_eq!(l.peek(&charges, 0), Ok(()));
    assert!(l.check_and_charge(&charges, 0).is_ok());
    let peeked = l.peek(&charges, 0).unwrap_err();
    assert_eq!(Err(peeked), l.check_and_charge(&charges, 0));
    assert_eq!(peeked.retry_after_secs, 30);
    assert_eq!(l.peek(&charges, 30 * SEC), Ok(()));
}

#[test]
fn peek_denies_when_any_charge_denies_and_charges_none() {
    let l = LocalLimiter::new(100);
    let (tight, loose) = (key("g:a:r"), key("c:a"));
    assert!(one(&l, &tight, limit("1/1m"), 0).is_ok());
    let both = [
        charge(&loose, limit("10/1m")),
        charge(&tight, limit("1/1m")),
    ];
    assert_eq!(l.peek(&both, 0).map_err(|d| d.info.limit), Err(1));
    assert_eq!(l.len(), 1);
    assert_eq!(l.peek(&[], 0), Ok(()));
}

#[test]
fn peek_treats_a_state_for_another_limit_as_full() {
    let (l, k) = (LocalLimiter::new(100), key("f:a"));
    assert!(one(&l, &k, limit("1/1h"), 0).is_ok());
    assert!(l.peek(&[charge(&k, limit("1/1h"))], 0).is_err());
    assert_eq!(l.peek(&[charge(&k, limit("2/1h"))], 0), Ok(()));
}

fn admit(limit: u32, remaining: u32) -> Verdict {
    Verdict::Admit(RateInfo {
        limit,
        remaining,
        reset_secs: 1,
    })
}

fn deny(limit: u32, retry_after_secs: u64) -> Verdict {
    let info = RateInfo {
        limit,
        remaining: 0,
        reset_secs: 1,
    };
    Verdict::Deny(RateDenied {
        retry_after_secs,
        info,
    })
}

#[test]
fn combine_picks_the_lowest_remaining_and_the_earlier_on_a_tie() {
    assert_eq!(combine([]), Ok(None));
    let picked = |v: Vec<Verdict>| combine(v).map(|i| i.map(|i| i.limit));
    assert_eq!(
        picked(vec![admit(1, 5), admit(2, 3), admit(3, 4)]),
        Ok(Some(2))
    );
    assert_eq!(picked(vec![admit(1, 3), admit(2, 3)]), Ok(Some(1)));
}

#[test]
fn combine_denies_with_the_longest_wait_and_the_earlier_on_a_tie() {
    let picked = |v: Vec<Verdict>| combine(v).map_err(|d| (d.info.limit, d.retry_after_secs));
    assert_eq!(picked(vec![admit(1, 0), deny(2, 5)]), Err((2, 5)));
    assert_eq!(
        picked(vec![deny(1, 5), deny(2, 9), deny(3, 7)]),
        Err((2, 9))
    );
    assert_eq!(
        picked(vec![deny(1, 9), admit(4, 9), deny(2, 9)]),
        Err((1, 9))
    );
}

#[test]
fn a_verdict_from_a_stores_debt_and_ahead_matches_the_local_judgement() {
    let gcra = Gcra::of(&limit("5/1m"));
    let (verdict, tat) = gcra.judge(Some(30 * SEC), 6 * SEC);
    // ahead = 30 - 6 = 24 s; debt = 24 + 12 = 36 s; the new TAT is 6 + 36.
    assert_eq!(tat, 42 * SEC);
    assert_eq!(verdict, gcra.verdict(36 * SEC, 24 * SEC));
    assert_eq!(
        verdict,
        Verdict::Admit(RateInfo {
            limit: 5,
            remaining: 2,
            reset_secs: 36
        })
    );
}

fn shared(l: &LocalLimiter, lim: Limit, replicas: u32, now: u64) -> bool {
    let k = key("c");
    let charges = [Charge {
        key: &k,
        limit: lim,
    }];
    l.check_and_charge_share(&charges, replicas, now).is_ok()
}

/// Back-to-back admissions at `now` from the current state.
fn admitted_at(l: &LocalLimiter, lim: Limit, replicas: u32, now: u64) -> usize {
    (0..1_000)
        .take_while(|_| shared(l, lim, replicas, now))
        .count()
}

#[test]
fn a_share_costs_n_intervals_and_holds_the_burst_divided_rounded_up() {
    let g = Gcra::of(&limit("100/1m")).share(3);
    assert_eq!(g.interval_nanos(), 3 * 600 * MS);
    assert_eq!(g.tolerance_nanos(), 34 * 3 * 600 * MS, "ceil(100 / 3) = 34");
    let l = LocalLimiter::new(10);
    assert_eq!(admitted_at(&l, limit("100/1m"), 3, 0), 34);
    assert!(!shared(&l, limit("100/1m"), 3, 1_799 * MS));
    assert!(
        shared(&l, limit("100/1m"), 3, 1_800 * MS),
        "then one per 3 T"
    );
}

#[test]
fn a_share_of_one_replica_or_of_none_known_is_the_limit_itself() {
    let g = Gcra::of(&limit("7/1s"));
    assert_eq!(g.share(1), g);
    assert_eq!(g.share(0), g);
}

#[test]
fn a_share_of_a_small_limit_still_admits_something() {
    let l = LocalLimiter::new(10);
    assert_eq!(admitted_at(&l, limit("1/1m"), 3, 0), 1);
}

#[test]
fn what_a_replica_admitted_still_counts_when_the_replica_count_changes() {
    let l = LocalLimiter::new(10);
    assert_eq!(admitted_at(&l, limit("100/1m"), 2, 0), 50);
    assert_eq!(admitted_at(&l, limit("100/1m"), 3, 0), 0, "not from full");
    assert_eq!(admitted_at(&l, limit("100/1m"), 1, 0), 0);
}

#[test]
fn replicas_each_enforcing_their_share_admit_about_the_limit_together() {
    // Three replicas, each its own limiter with a third of 100/1m, flooded
    // for a minute from full: the fleet admits the burst (34 × 3 = 102)
    // plus a minute's rate of the whole limit.
    let fleet: Vec<LocalLimiter> = (0..3).map(|_| LocalLimiter::new(10)).collect();
    let mut admitted = 0;
    for ms in 0..60_000u64 {
        for replica in &fleet {
            admitted += usize::from(shared(replica, limit("100/1m"), 3, ms * MS));
        }
    }
    assert!((200..=202).contains(&admitted), "{admitted}");
}

#[test]
fn an_exhausted_share_admits_nothing_until_an_interval_has_passed() {
    let l = LocalLimiter::new(10);
    let k = key("c");
    let charges = [Charge {
        key: &k,
        limit: limit("100/1m"),
    }];
    l.exhaust_share(&charges, 2, 0);
    assert!(!shared(&l, limit("100/1m"), 2, 1_199 * MS));
    assert!(shared(&l, limit("100/1m"), 2, 1_200 * MS), "one per 2 T");
    // Never forgives: a state further ahead is kept.
    assert_eq!(admitted_at(&l, limit("100/1m"), 2, 1_200 * MS), 0);
    l.exhaust_share(&charges, 2, 0);
    assert!(!shared(&l, limit("100/1m"), 2, 2_399 * MS));
}

#[test]
fn a_clients_own_and_grant_limits_share_an_owner_other_keys_own_themselves() {
    assert_eq!(key("c:team-a").owner(), "team-a");
    assert_eq!(key("g:team-a:route-1").owner(), "team-a");
    assert_eq!(key("g:team-a:/v1/x:y").owner(), "team-a");
    assert_eq!(key("f:10.0.0.1").owner(), "f:10.0.0.1");
    assert_eq!(key("f:2001:db8:0:1::/64").owner(), "f:2001:db8:0:1::/64");
    assert_eq!(key("plain").owner(), "plain");
}

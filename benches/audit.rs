//! What auditing adds to a decision, in process: offering a record to the
//! audit queue when it has room and when it is full (a full queue must cost
//! no more: it drops and counts, never waits), and building the record
//! from a decision as `/authz` does, then offering it. Then why the writer
//! never waits on the queue (see `src/audit/writer.rs`).
//!
//! The Prometheus recorder is installed, so the drop counter is the real
//! atomic add. Records are made before the clock starts and the queue is
//! emptied after it stops: in production both happen elsewhere (the
//! request's own parsing, the writer task).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

use gatekeeper::audit::{AuditRecord, AuditSink, RequestFacts};
use gatekeeper::core::decision::{Allow, Decision, Identity};
use gatekeeper::core::model::Method;

/// Records made, offered and drained per round.
const CHUNK: u64 = 10_000;

fn decision() -> Decision {
    Decision::Allow(Allow {
        route_id: "ollama-api".parse().unwrap(),
        identity: Some(Identity {
            client_id: "team-a".parse().unwrap(),
            client_name: Arc::from("Team A"),
            key_id: Some("k7x2m9q4w1zz".parse().unwrap()),
        }),
        rate: None,
        forward_provider_token: false,
    })
}

/// What a parsed request hands over (moved in production, made here).
fn facts() -> RequestFacts {
    RequestFacts {
        method: Method::parse("POST"),
        host: Some("llm.example.com".to_owned()),
        path: Some("/v1/chat/completions".to_owned()),
        source: "10.1.2.3".parse().ok(),
    }
}

const REQUEST_ID: &str = "5f0c1b7e9a2d4c3b8e6f0a1b2c3d4e5f";

/// A queue with room for a whole chunk, or one already full.
fn queue(full: bool) -> (AuditSink, gatekeeper::audit::AuditQueue) {
    if full {
        let (sink, queue) = AuditSink::bounded(1);
        let record = AuditRecord::of(&decision(), facts(), REQUEST_ID, Duration::ZERO);
        assert!(sink.try_record(record), "the first record fits");
        (sink, queue)
    } else {
        AuditSink::bounded(CHUNK as usize)
    }
}

/// Times `offer` over `iters` inputs made by `make`, a chunk at a time,
/// with a fresh queue per chunk (free or full) made off the clock.
fn timed<T>(
    iters: u64,
    full: bool,
    make: impl Fn() -> T,
    offer: impl Fn(&AuditSink, T) -> bool,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let (sink, queue) = queue(full);
        let inputs: Vec<T> = (0..n).map(|_| make()).collect();
        let start = Instant::now();
        for input in inputs {
            black_box(offer(&sink, input));
        }
        total += start.elapsed();
        assert_eq!(queue.len(), if full { 1 } else { n as usize });
        drop(queue);
        left -= n;
    }
    total
}

fn try_record(c: &mut Criterion) {
    gatekeeper::metrics::install().expect("the metrics recorder");
    let d = decision();
    let record = || AuditRecord::of(&d, facts(), REQUEST_ID, Duration::from_micros(3));
    let mut group = c.benchmark_group("audit");
    for (name, full) in [("free queue", false), ("full queue", true)] {
        group.bench_function(format!("try_record, {name}"), |b| {
            b.iter_custom(|iters| timed(iters, full, record, |s, r| s.try_record(r)))
        });
    }
    for (name, full) in [("free queue", false), ("full queue", true)] {
        group.bench_function(format!("build record + try_record, {name}"), |b| {
            b.iter_custom(|iters| {
                timed(iters, full, facts, |s, f| {
                    s.try_record(AuditRecord::of(&d, f, REQUEST_ID, Duration::from_micros(3)))
                })
            })
        });
    }
    group.finish();
}

/// Why the writer polls the queue on a timer instead of waiting on it: a
/// send, spaced as decisions arrive (50 µs apart; only the send timed),
/// into a channel whose receiver task waits in `recv_many` on another
/// runtime (each send wakes it: a lock and a thread unpark) and into one
/// whose receiver polls with `try_recv` every 100 ms (nothing to wake).
fn waking(c: &mut Criterion) {
    let mut group = c.benchmark_group("audit channel");
    group.bench_function("send, receiver waiting in recv_many", |b| {
        let rt = runtime();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(1 << 20);
        rt.spawn(async move {
            let mut buf = Vec::with_capacity(1000);
            while rx.recv_many(&mut buf, 1000).await > 0 {
                buf.clear();
            }
        });
        b.iter_custom(|iters| spaced(iters, &tx));
    });
    group.bench_function("send, receiver polled by a timer", |b| {
        let rt = runtime();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(1 << 20);
        rt.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                while rx.try_recv().is_ok() {}
            }
        });
        b.iter_custom(|iters| spaced(iters, &tx));
    });
    group.finish();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Sends `iters` values 50 µs apart; only the sends are timed.
fn spaced(iters: u64, tx: &tokio::sync::mpsc::Sender<u64>) -> Duration {
    let mut total = Duration::ZERO;
    for i in 0..iters {
        let until = Instant::now() + Duration::from_micros(50);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        let start = Instant::now();
        let _ = black_box(tx.try_send(i));
        total += start.elapsed();
    }
    total
}

criterion_group!(benches, try_record, waking);
criterion_main!(benches);

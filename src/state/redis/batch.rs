//! Limiter calls that arrive together share one script call.
//!
//! Under load a worker thread has several decisions waiting on Redis at
//! once, and what a script call costs Redis is mostly the call itself (see
//! `state::redis::limiter_script`): sent one by one, 32 concurrent decisions cost Redis
//! ~20 µs each and queue behind one another. So each thread keeps one queue
//! per [`Batcher`]: the first caller to find it empty spawns a flush task,
//! and every caller that runs before that task does joins the queue; the
//! task sends them all in one script call (at most [`MAX_BATCH`]). A task
//! runs after the tasks already woken, so the batch is what one turn of the
//! thread's event loop produced: a caller alone is sent at once, and
//! batching never waits for company. Batches are not serialised: several
//! may be in flight on the thread's connection, answered in order.
//!
//! The script judges the asks of a batch in arrival order, each
//! all-or-nothing, so a batch decides exactly what the same calls one after
//! another would. Every caller still waits at most the Redis timeout from
//! the moment it asked: a flush's deadline is its oldest ask's time plus the
//! timeout, so one timer bounds the whole batch. (With a timer per caller,
//! tokio wrote its eventfd for about every other decision — it does so
//! whenever a timer is set earlier than the loop's next wake — a syscall
//! and a spurious wake-up each.) A failed flush fails each of its callers
//! as a failed call would (`Redis::failed`: counted, marked down,
//! fallback).
//!
//! In Redis Cluster a script's keys must share a hash slot, and the asks of
//! a batch are tagged by owner (`Ask::tagged`): a flush sends one script
//! call per owner, concurrently, each deciding its asks in arrival order
//! (asks of different owners touch no common key, so their order does not
//! matter). A failed call fails only its own callers.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::limiter_script::{Ask, Mode, Outcome, RedisLimiter};
use super::{AttemptError, Redis, Unavailable};
use crate::core::limiter::Charge;

/// The most asks one script call judges; more wait for the next flush.
pub const MAX_BATCH: usize = 64;

/// Identifies each `Batcher` in the threads' queue lists.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static QUEUES: RefCell<Vec<(u64, Arc<Mutex<Queue>>)>> = const { RefCell::new(Vec::new()) };
}

/// What a flush tells each caller: its outcome, or why Redis gave none.
type Reply = Result<Outcome, AttemptError>;

/// An ask in the queue: when it was asked and where its outcome goes.
struct Waiting {
    ask: Ask,
    asked: Instant,
    reply: oneshot::Sender<Reply>,
}

#[derive(Default)]
struct Queue {
    /// In arrival order.
    waiting: Vec<Waiting>,
    /// A flush task is spawned and will take what is queued.
    scheduled: bool,
}

/// The shared limiter, with the calls of each thread batched.
pub struct Batcher {
    id: u64,
    redis: Arc<Redis>,
    limiter: Arc<RedisLimiter>,
    /// `<prefix>rl:`, before every limit key.
    prefix: String,
}

impl Batcher {
    pub fn new(redis: Arc<Redis>) -> Batcher {
        Batcher {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            prefix: redis.key("rl:"),
            redis,
            limiter: Arc::new(RedisLimiter::new()),
        }
    }

    /// Judges `charges` and, in [`Mode::Charge`], charges them all if all
    /// admit, in the next script call this thread makes. `what` names the
    /// operation in metrics and logs. While Redis is marked down this fails
    /// at once.
    pub async fn ask(
        &self,
        what: &'static str,
        charges: &[Charge<'_>],
        mode: Mode,
    ) -> Result<Outcome, Unavailable> {
        let ask = match self.redis.is_cluster() {
            false => Ask::new(&self.prefix, charges, mode),
            true => Ask::tagged(&self.prefix, charges, mode),
        };
        let Some(ask) = ask else {
            return Ok(Ok(None));
        };
        if !self.redis.is_up() {
            return Err(self.redis.fell_back(what));
        }
        let (reply, answer) = oneshot::channel();
        let asked = Instant::now();
        let queue = self.queue();
        let start = {
            let mut q = lock(&queue);
            q.waiting.push(Waiting { ask, asked, reply });
            !std::mem::replace(&mut q.scheduled, true)
        };
        if start {
            Flush::spawn(queue, Arc::clone(&self.redis), Arc::clone(&self.limiter));
        }
        // No timer here: the flush that takes this ask is bounded by a
        // deadline no later than `asked` + the timeout.
        match answer.await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(error)) => Err(self.redis.failed(what, &error)),
            Err(_) => Err(self.redis.failed(what, &AttemptError::Abandoned)),
        }
    }

    /// This thread's queue for this batcher.
    fn queue(&self) -> Arc<Mutex<Queue>> {
        QUEUES.with(|queues| {
            let mut queues = queues.borrow_mut();
            let queue = crate::metrics::kept(&mut queues, self.id, Arc::default);
            Arc::clone(queue)
        })
    }
}

/// Sends what is queued, as one batch.
struct Flush {
    queue: Arc<Mutex<Queue>>,
    redis: Arc<Redis>,
    limiter: Arc<RedisLimiter>,
    /// Set once this flush has taken its batch from the queue.
    taken: bool,
}

impl Flush {
    fn spawn(queue: Arc<Mutex<Queue>>, redis: Arc<Redis>, limiter: Arc<RedisLimiter>) {
        let flush = Flush {
            queue,
            redis,
            limiter,
            taken: false,
        };
        tokio::spawn(flush.run());
    }

    async fn run(mut self) {
        let (asks, replies, oldest) = {
            let mut q = lock(&self.queue);
            let n = q.waiting.len().min(MAX_BATCH);
            let oldest = q.waiting.first().map(|w| w.asked);
            let (asks, replies): (Vec<Ask>, Vec<_>) =
                q.waiting.drain(..n).map(|w| (w.ask, w.reply)).unzip();
            if q.waiting.is_empty() {
                q.scheduled = false;
            } else {
                // More than one batch waits: the next one goes out at once.
                Flush::spawn(
                    Arc::clone(&self.queue),
                    Arc::clone(&self.redis),
                    Arc::clone(&self.limiter),
                );
            }
            (asks, replies, oldest)
        };
        self.taken = true;
        let Some(oldest) = oldest else { return };
        let deadline = oldest + self.redis.timeout;
        let answers = match self.redis.is_cluster() {
            false => fan_out(self.send(&asks, deadline).await, asks.len()),
            true => self.send_per_slot(asks, deadline).await,
        };
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _ = reply.send(answer);
        }
    }

    /// One script call per owner (hash tag), all at once; the replies in
    /// the asks' order.
    async fn send_per_slot(&self, asks: Vec<Ask>, deadline: Instant) -> Vec<Reply> {
        let total = asks.len();
        let mut groups: Vec<(Vec<usize>, Vec<Ask>)> = Vec::new();
        for (at, ask) in asks.into_iter().enumerate() {
            match groups.iter_mut().find(|(_, g)| g[0].group() == ask.group()) {
                Some((ats, group)) => {
                    ats.push(at);
                    group.push(ask);
                }
                None => groups.push((vec![at], vec![ask])),
            }
        }
        let sent = groups.iter().map(|(_, group)| self.send(group, deadline));
        let results = futures_util::future::join_all(sent).await;
        let mut answers: Vec<Option<Reply>> = (0..total).map(|_| None).collect();
        for ((ats, group), result) in groups.iter().zip(results) {
            for (at, answer) in ats.iter().zip(fan_out(result, group.len())) {
                answers[*at] = Some(answer);
            }
        }
        let missing = || Err(AttemptError::Abandoned);
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(missing))
            .collect()
    }

    /// One script call for `asks`, by `deadline`.
    async fn send(&self, asks: &[Ask], deadline: Instant) -> Result<Vec<Outcome>, AttemptError> {
        let limiter = &self.limiter;
        self.redis
            .attempt_until(deadline, |mut conn| async move {
                limiter.run(&mut conn, asks, None).await
            })
            .await
    }
}

impl Drop for Flush {
    /// A flush task dropped before it ran (its runtime stopping) must not
    /// leave the queue marked as scheduled, or nothing queued later would be
    /// sent. The callers still queued get no reply: their answers' senders
    /// drop, and they fail over as for any failed call.
    fn drop(&mut self) {
        if !self.taken {
            let mut q = lock(&self.queue);
            q.scheduled = false;
            q.waiting.clear();
        }
    }
}

/// One reply per ask: its outcome, or the call's error for each of `n`.
fn fan_out(result: Result<Vec<Outcome>, AttemptError>, n: usize) -> Vec<Reply> {
    match result {
        Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
        Err(error) => vec![Err(error); n],
    }
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(|e| e.into_inner())
}

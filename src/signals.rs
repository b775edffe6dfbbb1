//! The process's signals, as futures the composition root is handed:
//! [`terminate`] (SIGTERM or SIGINT) stops the service, [`hangup`] (SIGHUP)
//! asks the policy source to read the policy again.
//!
//! Only `serve` listens to the process; an in-process App (the test
//! harness) gets its stop as any future and its hang-ups from
//! [`Hangups::trigger`], so building one installs no signal handler.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

/// Resolves on the first SIGTERM or SIGINT. The handlers are installed on
/// the first poll; before that, either signal stops the process at once.
pub async fn terminate() {
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            tracing::error!("cannot listen for SIGTERM/SIGINT; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

/// The process's SIGHUPs. Once this returns, a SIGHUP no longer kills the
/// process (its default action): `serve` calls it before anything
/// listens, so `systemctl reload` never stops the service. Must be called
/// inside the Tokio runtime.
pub fn hangup() -> Hangups {
    match signal(SignalKind::hangup()) {
        Ok(s) => Hangups(Inner::Signal(s)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; it would stop the service");
            Hangups::never()
        }
    }
}

/// Requests to read the policy again: the process's SIGHUP, a trigger held
/// by whoever built the App, or none at all.
pub struct Hangups(Inner);

enum Inner {
    Signal(Signal),
    Trigger(mpsc::UnboundedReceiver<()>),
    Never,
}

/// Sends a hang-up to the [`Hangups`] it was made with.
#[derive(Clone)]
pub struct HangupTrigger(mpsc::UnboundedSender<()>);

impl HangupTrigger {
    /// False once the App that listened has stopped.
    pub fn send(&self) -> bool {
        self.0.send(()).is_ok()
    }
}

impl Hangups {
    /// No hang-up ever arrives.
    pub fn never() -> Hangups {
        Hangups(Inner::Never)
    }

    /// Hang-ups sent in process, through the returned trigger.
    pub fn trigger() -> (HangupTrigger, Hangups) {
        let (tx, rx) = mpsc::unbounded_channel();
        (HangupTrigger(tx), Hangups(Inner::Trigger(rx)))
    }

    /// The next hang-up; pending forever when none can come.
    pub async fn recv(&mut self) {
        let arrived = match &mut self.0 {
            Inner::Signal(s) => s.recv().await.is_some(),
            Inner::Trigger(rx) => rx.recv().await.is_some(),
            Inner::Never => false,
        };
        if !arrived {
            // The stream ended (every trigger dropped): nothing more to wait for.
            self.0 = Inner::Never;
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_trigger_delivers_each_hangup_and_a_dropped_one_delivers_none() {
        let (trigger, mut hangups) = Hangups::trigger();
        assert!(trigger.send());
        tokio::time::timeout(Duration::from_secs(1), hangups.recv())
            .await
            .expect("the hang-up arrives");
        drop(trigger);
        let waited = tokio::time::timeout(Duration::from_millis(50), hangups.recv()).await;
        assert!(waited.is_err(), "no hang-up without a trigger");
    }

    #[tokio::test]
    async fn never_is_never() {
        let waited = tokio::time::timeout(Duration::from_millis(20), Hangups::never().recv()).await;
        assert!(waited.is_err());
    }
}

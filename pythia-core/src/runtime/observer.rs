//! Settle observers: code told of each message's final outcome once the broker has it
//! ([`SettleObserver`]), fed in batches by a task of their own so that the driver never waits.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::broker::Outcome;
use crate::message::Message;

/// How long a stopping runtime waits for its observers to take the last outcomes.
pub(crate) const OBSERVER_FLUSH_DEADLINE: Duration = Duration::from_secs(10);

/// Most settled batches merged into one call of an observer.
const MAX_MERGED: usize = 4096;

/// A message and the outcome the broker settled it with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settled {
    /// The message, as the runtime fetched it (with what [`SettleObserver::on_start`]
    /// attached).
    pub message: Message,
    /// What the runtime decided, after its [`RetryPolicy`](crate::RetryPolicy): ack, retry
    /// (with its delay) or dead letter (with its reason).
    pub outcome: Outcome,
}

impl Settled {
    /// A settled message (for observers' own tests).
    pub fn new(message: Message, outcome: Outcome) -> Self {
        Self { message, outcome }
    }
}

/// Told of every message's final outcome, after the runtime's retry policy decided it and the
/// broker confirmed it: the place for side records (job status, deleting a job's checkpoint)
/// that must agree with what actually happened to the message.
///
/// Registered with [`WorkerRuntime::with_settle_observer`](crate::WorkerRuntime::with_settle_observer).
///
/// # Behaviour
///
/// * [`on_settled`](Self::on_settled) gets the outcomes of one or more settled batches at once,
///   in settle order, on a task of its own: a slow observer never slows fetching, handling or
///   settling. Observers registered together are called one after the other for each batch.
/// * Every settled message is seen, those the runtime dead-letters without running them
///   (delivered again after crashes, past `max_attempts`) included. A message handed back
///   unfinished on shutdown, or whose settle never reached the broker, is not: its delivery did
///   not end.
/// * When the runtime stops, the last outcomes are passed on before `run()` returns (waiting
///   at most 10 s for the observers).
/// * [`on_start`](Self::on_start) is called on the runtime's task just before the handler gets
///   the message: it may attach [`Extensions`](crate::Extensions) that the handler, the layers
///   and `on_settled` all see. Keep it cheap.
/// * Without observers the runtime does none of this: no task, no copy of any outcome.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use pythia_core::{MemoryBroker, Message, Settled, SettleObserver, WorkerError, WorkerRuntime, worker_fn};
///
/// #[derive(Default)]
/// struct Outcomes(Mutex<Vec<String>>);
/// impl SettleObserver for Outcomes {
///     async fn on_settled(&self, batch: &[Settled]) {
///         let mut seen = self.0.lock().unwrap();
///         seen.extend(batch.iter().map(|s| format!("{} {}", s.message.body_str().unwrap(), s.outcome.label())));
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let broker = MemoryBroker::new("q");
/// broker.push(Message::new("good"));
/// broker.push(Message::new("bad"));
/// let seen = Arc::new(Outcomes::default());
/// WorkerRuntime::new(broker, worker_fn(|m: Message| async move {
///     if m.body().as_ref() == b"bad" { Err(WorkerError::reject("bad")) } else { Ok(()) }
/// }))
/// .with_settle_observer(Arc::clone(&seen))
/// .with_burst(true)
/// .with_signal_handling(false)
/// .run()
/// .await
/// .unwrap();
/// let mut seen = seen.0.lock().unwrap().clone();
/// seen.sort();
/// assert_eq!(seen, ["bad dead_letter", "good ack"]);
/// # }
/// ```
pub trait SettleObserver: Send + Sync + 'static {
    /// Called just before the handler runs `message` (not for messages dead-lettered without
    /// running): attach what the handler or `on_settled` needs. Does nothing by default.
    fn on_start(&self, message: &mut Message) {
        let _ = message;
    }

    /// Called with settled messages and their outcomes, in settle order.
    fn on_settled(&self, batch: &[Settled]) -> impl Future<Output = ()> + Send;
}

impl<O: SettleObserver> SettleObserver for Arc<O> {
    fn on_start(&self, message: &mut Message) {
        (**self).on_start(message);
    }

    fn on_settled(&self, batch: &[Settled]) -> impl Future<Output = ()> + Send {
        (**self).on_settled(batch)
    }
}

/// A [`SettleObserver`] with its type erased.
pub(crate) trait ErasedObserver: Send + Sync {
    fn on_start(&self, message: &mut Message);
    fn on_settled<'a>(
        &'a self,
        batch: &'a [Settled],
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

impl<O: SettleObserver> ErasedObserver for O {
    fn on_start(&self, message: &mut Message) {
        SettleObserver::on_start(self, message);
    }

    fn on_settled<'a>(
        &'a self,
        batch: &'a [Settled],
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(SettleObserver::on_settled(self, batch))
    }
}

/// The observers of one runtime.
pub(crate) type Observers = Arc<[Arc<dyn ErasedObserver>]>;

/// What the driver holds for its observers: them (for `on_start`) and their task's inbox.
pub(crate) struct ObserverFeed {
    pub(crate) observers: Observers,
    pub(crate) inbox: mpsc::UnboundedSender<Vec<Settled>>,
}

/// Feeds settled batches to the observers until the driver drops its sender, merging what
/// queued up meanwhile into one call.
pub(crate) async fn observer_loop(
    observers: Observers,
    mut rx: mpsc::UnboundedReceiver<Vec<Settled>>,
) {
    while let Some(mut batch) = rx.recv().await {
        while batch.len() < MAX_MERGED {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        for o in observers.iter() {
            o.on_settled(&batch).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::{MemoryBroker, RetryPolicy, WorkerError, WorkerRuntime, worker_fn};

    /// Attaches a counter on start; records what it saw, slowly (the runtime must wait for it).
    #[derive(Default)]
    struct Recorder {
        seen: Mutex<Vec<(String, &'static str, u32)>>,
        calls: AtomicU32,
    }

    struct Touched(AtomicU32);

    impl SettleObserver for Recorder {
        fn on_start(&self, message: &mut Message) {
            message.insert_extension(Touched(AtomicU32::new(0)));
        }

        async fn on_settled(&self, batch: &[Settled]) {
            self.calls.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut seen = self.seen.lock().unwrap();
            for s in batch {
                let touched = s
                    .message
                    .extension::<Touched>()
                    .map_or(0, |t| t.0.load(Ordering::Relaxed));
                seen.push((
                    s.message.body_str().unwrap().to_owned(),
                    s.outcome.label(),
                    touched,
                ));
            }
        }
    }

    #[tokio::test]
    async fn observers_see_every_final_outcome_before_run_returns() {
        let broker = MemoryBroker::new("q");
        broker.push(Message::new("ok"));
        broker.push(Message::new("reject"));
        broker.push(Message::new("flaky"));
        // Delivered again after crashes, past max_attempts: dead-lettered without running.
        broker.push(Message::new("crashed").with_attempt(9));
        let recorder = Arc::new(Recorder::default());
        let worker = worker_fn(|m: Message| async move {
            // What on_start attached is the handler's too, and changes show in the observer.
            m.extension::<Touched>()
                .expect("attached on start")
                .0
                .fetch_add(1, Ordering::Relaxed);
            match (m.body_str().unwrap(), m.attempt()) {
                ("reject", _) => Err(WorkerError::reject("no")),
                ("flaky", 1) => Err(WorkerError::retry("later")),
                _ => Ok(()),
            }
        });
        let summary = WorkerRuntime::new(broker.clone(), worker)
            .with_retry_policy(
                RetryPolicy::default()
                    .with_max_attempts(3)
                    .with_initial_delay(Duration::from_millis(10)),
            )
            .with_settle_observer(Arc::clone(&recorder))
            .run_burst()
            .await;
        assert_eq!(
            (summary.acked, summary.retried, summary.dead_lettered),
            (2, 1, 2)
        );
        let mut seen = recorder.seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("crashed".to_owned(), "dead_letter", 0),
                ("flaky".to_owned(), "ack", 1),
                ("flaky".to_owned(), "retry", 1),
                ("ok".to_owned(), "ack", 1),
                ("reject".to_owned(), "dead_letter", 1),
            ]
        );
        assert!(recorder.calls.load(Ordering::Relaxed) >= 1);
    }
}

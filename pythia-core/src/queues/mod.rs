//! Many queues in one worker: [`QueueSet`], a [`Broker`] made of several, fetching by strict or
//! weighted [`Priority`].
//!
//! # Why a broker
//!
//! A worker that serves `critical`, `default` and `low` wants one concurrency budget, one
//! shutdown, one signal listener and one metrics exporter, not three runtimes competing for the
//! same cores. So the set of queues is itself a [`Broker`]: one [`WorkerRuntime`] drives it as
//! it drives one queue, and the set routes each call to the queue it concerns. A runtime fed by
//! a single broker never goes through it, so one queue costs what it always did.
//!
//! # Behaviour
//!
//! * **Fetch.** [`Priority::Strict`] asks the queues in order with [`Broker::try_fetch`] (no
//!   waiting) and fills the batch from the first that have messages: a lower queue gives only
//!   when every higher one was empty. [`Priority::Weighted`] (Sidekiq's semantics) picks, for
//!   each fetch, one queue at random in proportion to its weight among those not yet found
//!   empty, and takes the batch from the first non-empty one picked; over many fetches a queue
//!   kept non-empty gets its weight's share. When every queue is empty, the fetch waits
//!   [`idle_poll`](QueueSet::with_idle_poll) (100 ms by default) and returns empty, so an empty
//!   high queue never holds up a lower one for longer than that.
//! * **Settle and release** go back to the queue each message came from, one batch per queue
//!   (the queues of one batch concurrently).
//! * **Maintenance** runs each queue's [`maintain`](Broker::maintain) on that queue's own
//!   interval (the set asks to be maintained at the shortest of them).
//! * **Drained** (burst mode) means every queue is drained; **close** reaches every queue.
//! * **Stats**: [`stats`](Broker::stats) is the sum of the queues' (the oldest age the largest);
//!   the runtime samples [`stats_per_queue`](Broker::stats_per_queue), so each queue's gauges
//!   carry its own `queue` label, and per-message metrics carry the queue of the message.
//! * **Guarantee**: at-least-once only when every queue is.
//!
//! Queues of different broker types (a list and a stream) mix through [`BoxedBroker`], which
//! erases the type (a boxed future per call and a boxed token per delivery).
//!
//! ```
//! use pythia_core::queues::QueueSet;
//! use pythia_core::{worker_fn, MemoryBroker, Message, WorkerRuntime};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let critical = MemoryBroker::new("critical");
//! let low = MemoryBroker::new("low");
//! low.push(Message::new("report"));
//! critical.push(Message::new("password reset"));
//!
//! // Strict: `critical` is drained before `low` gets a turn.
//! let queues = QueueSet::strict([critical.clone(), low.clone()]).unwrap();
//! let summary = WorkerRuntime::new(queues, worker_fn(|_msg| async { Ok(()) }))
//!     .with_burst(true)
//!     .run()
//!     .await
//!     .unwrap();
//! assert_eq!(summary.acked, 2);
//!
//! // Weighted 6:3:1 instead: `QueueSet::weighted([(a, 6), (b, 3), (c, 1)])`.
//! # }
//! ```
//!
//! [`WorkerRuntime`]: crate::WorkerRuntime

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::message::Source;

mod boxed;
mod broker;

pub use self::boxed::{BoxedBroker, BoxedToken};

/// How a [`QueueSet`] chooses the queue of each fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Priority {
    /// Always the highest non-empty queue (the order they were given in).
    Strict,
    /// A queue at random in proportion to its weight, among the non-empty ones.
    Weighted,
}

/// The handle of a delivery from a [`QueueSet`]: which queue it came from and that queue's own
/// token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueueToken<T> {
    /// The position of the queue in the set.
    pub queue: usize,
    /// The token of the queue's broker.
    pub token: T,
}

/// One queue of a set: its broker and its weight.
#[derive(Debug)]
struct Member<B> {
    broker: B,
    weight: u32,
}

/// Several brokers consumed by one runtime, with strict or weighted priority: see the
/// [module docs](self) for the behaviour.
///
/// Tokens must be `Clone` (every broker of this workspace has a `Copy` token): a settle batch
/// is split into one batch per queue.
#[derive(Debug)]
pub struct QueueSet<B: Broker> {
    members: Vec<Member<B>>,
    priority: Priority,
    idle_poll: Duration,
    source: Source,
    sources: Vec<Source>,
    /// When each queue was last maintained (`None`: never).
    maintained: Mutex<Vec<Option<Instant>>>,
}

impl<B: Broker> QueueSet<B>
where
    B::Token: Clone,
{
    /// Default wait of a fetch that found every queue empty: 100 ms.
    pub const DEFAULT_IDLE_POLL: Duration = Duration::from_millis(100);

    /// Queues in strict priority, highest first.
    ///
    /// Fails (a [`Config`](crate::BrokerErrorKind::Config) error) when there are no queues or
    /// two share a name.
    pub fn strict(brokers: impl IntoIterator<Item = B>) -> Result<Self, BrokerError> {
        Self::build(
            brokers.into_iter().map(|b| (b, 1)).collect(),
            Priority::Strict,
        )
    }

    /// Queues with weights (Sidekiq's `-q critical,6 -q default,3 -q low,1`).
    ///
    /// Fails (a [`Config`](crate::BrokerErrorKind::Config) error) when there are no queues, two
    /// share a name or a weight is 0.
    pub fn weighted(brokers: impl IntoIterator<Item = (B, u32)>) -> Result<Self, BrokerError> {
        Self::build(brokers.into_iter().collect(), Priority::Weighted)
    }

    fn build(brokers: Vec<(B, u32)>, priority: Priority) -> Result<Self, BrokerError> {
        if brokers.is_empty() {
            return Err(BrokerError::config("a queue set needs at least one queue"));
        }
        let sources: Vec<Source> = brokers.iter().map(|(b, _)| b.source().clone()).collect();
        for (i, s) in sources.iter().enumerate() {
            if sources[..i].iter().any(|o| o.name() == s.name()) {
                return Err(BrokerError::config(format!(
                    "queue {:?} appears twice in the set",
                    s.name()
                )));
            }
        }
        if let Some((b, _)) = brokers.iter().find(|(_, w)| *w == 0) {
            return Err(BrokerError::config(format!(
                "queue {:?} has weight 0: give it at least 1, or leave it out",
                b.source().name()
            )));
        }
        let names: Vec<&str> = sources.iter().map(Source::name).collect();
        let kind = sources[0].broker();
        let source = Source::new(kind, names.join(","));
        let n = brokers.len();
        Ok(Self {
            members: brokers
                .into_iter()
                .map(|(broker, weight)| Member { broker, weight })
                .collect(),
            priority,
            idle_poll: Self::DEFAULT_IDLE_POLL,
            source,
            sources,
            maintained: Mutex::new(vec![None; n]),
        })
    }

    /// How long a fetch that found every queue empty waits before it returns empty (at least
    /// 1 ms). Shorter: a message arriving in an idle worker starts sooner, for one
    /// non-blocking read per queue per poll.
    #[must_use]
    pub fn with_idle_poll(mut self, every: Duration) -> Self {
        self.idle_poll = every.max(Duration::from_millis(1));
        self
    }

    /// The priority mode.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// The number of queues.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: a set has at least one queue.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The broker of the queue at `index` (in the order given).
    pub fn get(&self, index: usize) -> Option<&B> {
        self.members.get(index).map(|m| &m.broker)
    }

    /// The weight of the queue at `index` (1 for each queue of a strict set).
    pub fn weight(&self, index: usize) -> Option<u32> {
        self.members.get(index).map(|m| m.weight)
    }
}

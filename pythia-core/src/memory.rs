//! [`MemoryBroker`]: a broker in process memory with the same semantics as the Redis ones.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::broker::{Broker, Delivery, DeliveryGuarantee, Outcome, QueueStats, Settlement};
use crate::dead_letter::DeadLetter;
use crate::error::BrokerError;
use crate::message::{Message, Source};

/// Counters of a [`MemoryBroker`] since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryStats {
    /// Messages pushed by producers.
    pub pushed: u64,
    /// Deliveries handed out by `fetch`.
    pub delivered: u64,
    /// Deliveries acknowledged.
    pub acked: u64,
    /// Deliveries scheduled again.
    pub retried: u64,
    /// Deliveries dead-lettered.
    pub dead_lettered: u64,
    /// Deliveries handed back unprocessed.
    pub released: u64,
    /// Settlements for a delivery that was already settled (ignored: settling is idempotent).
    pub duplicate_settlements: u64,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Message>,
    scheduled: BTreeMap<(Instant, u64), Message>,
    in_flight: HashMap<u64, Message>,
    dead: Vec<DeadLetter>,
    next_token: u64,
    stats: MemoryStats,
    ledger: Option<Vec<(String, &'static str)>>,
}

#[derive(Debug)]
struct Inner {
    source: Source,
    state: Mutex<State>,
    notify: Notify,
    wait: Duration,
}

/// An in-process, at-least-once broker: a FIFO queue, a schedule of retries, in-flight
/// deliveries and a dead-letter list, all in memory.
///
/// It behaves like the Redis brokers (retries come back after their delay with the attempt
/// raised, dead letters keep their reason, released messages go back to the front), so a worker
/// can be tested without Redis. It is also the embedded default for tests of the runtime. It is
/// `Clone`: clones share the same queue.
///
/// ```
/// use pythia_core::{MemoryBroker, Message};
///
/// let broker = MemoryBroker::new("jobs");
/// broker.push(Message::new("hello"));
/// assert_eq!(broker.len(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

impl MemoryBroker {
    /// Default time `fetch` waits for a message before returning an empty batch: 50 ms.
    pub const DEFAULT_FETCH_WAIT: Duration = Duration::from_millis(50);

    /// An empty broker for the queue `name`.
    pub fn new(name: &str) -> Self {
        Self::with_fetch_wait(name, Self::DEFAULT_FETCH_WAIT)
    }

    /// An empty broker whose `fetch` waits at most `wait` for a message.
    pub fn with_fetch_wait(name: &str, wait: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                source: Source::new("memory", name),
                state: Mutex::new(State::default()),
                notify: Notify::new(),
                wait,
            }),
        }
    }

    /// Records every settlement as `(message id, "ack" | "retry" | "dead_letter")`, readable
    /// with [`ledger`](Self::ledger). Off by default (it grows without bound).
    #[must_use]
    pub fn recording_settlements(self) -> Self {
        self.lock().ledger = Some(Vec::new());
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enqueues one message at the back.
    pub fn push(&self, msg: Message) {
        self.push_many([msg]);
    }

    /// Enqueues messages at the back, in order.
    pub fn push_many(&self, msgs: impl IntoIterator<Item = Message>) {
        let mut st = self.lock();
        let before = st.queue.len();
        let source = self.inner.source.clone();
        st.queue
            .extend(msgs.into_iter().map(|m| m.with_source(source.clone())));
        st.stats.pushed += (st.queue.len() - before) as u64;
        drop(st);
        self.inner.notify.notify_waiters();
    }

    /// Messages waiting in the queue (not scheduled, not in flight).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether the queue is empty (scheduled and in-flight messages aside).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Deliveries handed out and not yet settled or released.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight.len()
    }

    /// Retries waiting for their delay.
    pub fn scheduled(&self) -> usize {
        self.lock().scheduled.len()
    }

    /// The dead-letter list, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.lock().dead.clone()
    }

    /// Counters since creation.
    pub fn stats(&self) -> MemoryStats {
        self.lock().stats
    }

    /// The settlement ledger, if [`recording_settlements`](Self::recording_settlements) is on.
    pub fn ledger(&self) -> Vec<(String, &'static str)> {
        self.lock().ledger.clone().unwrap_or_default()
    }

    fn take_batch(&self, max: usize, now: Instant) -> (Vec<Delivery<u64>>, Option<Instant>) {
        let mut st = self.lock();
        while let Some(entry) = st.scheduled.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let m = entry.remove();
            st.queue.push_back(m);
        }
        let n = max.min(st.queue.len());
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let m = st.queue.pop_front().expect("n <= len");
            let token = st.next_token;
            st.next_token += 1;
            st.in_flight.insert(token, m.clone());
            out.push(Delivery::new(token, m));
        }
        st.stats.delivered += n as u64;
        let next_due = st.scheduled.keys().next().map(|k| k.0);
        (out, next_due)
    }
}

impl Broker for MemoryBroker {
    type Token = u64;

    fn guarantee(&self) -> DeliveryGuarantee {
        DeliveryGuarantee::AtLeastOnce
    }

    fn source(&self) -> &Source {
        &self.inner.source
    }

    async fn fetch(&self, max: usize) -> Result<Vec<Delivery<u64>>, BrokerError> {
        let deadline = Instant::now() + self.inner.wait;
        loop {
            let notified = self.inner.notify.notified();
            let now = Instant::now();
            let (batch, next_due) = self.take_batch(max, now);
            if !batch.is_empty() || now >= deadline {
                return Ok(batch);
            }
            let until = next_due.map_or(deadline, |d| d.min(deadline));
            let _ = tokio::time::timeout_at(until, notified).await;
        }
    }

    async fn try_fetch(&self, max: usize) -> Result<Vec<Delivery<u64>>, BrokerError> {
        Ok(self.take_batch(max, Instant::now()).0)
    }

    async fn settle(&self, batch: &[Settlement<u64>]) -> Result<(), BrokerError> {
        let now = Instant::now();
        let mut st = self.lock();
        let mut woke = false;
        for s in batch {
            let Some(msg) = st.in_flight.remove(&s.token) else {
                st.stats.duplicate_settlements += 1;
                continue;
            };
            let label = s.outcome.label();
            if let Some(ledger) = st.ledger.as_mut() {
                ledger.push((msg.id().to_owned(), label));
            }
            match &s.outcome {
                Outcome::Ack => st.stats.acked += 1,
                Outcome::Retry { delay } => {
                    st.stats.retried += 1;
                    let next = msg.clone().with_attempt(msg.attempt().saturating_add(1));
                    let seq = st.next_token;
                    st.next_token += 1;
                    st.scheduled.insert((now + *delay, seq), next);
                    woke = true;
                }
                Outcome::DeadLetter { reason } => {
                    st.stats.dead_lettered += 1;
                    st.dead.push(DeadLetter::new(
                        msg,
                        Some(reason.clone()),
                        Some(SystemTime::now()),
                    ));
                }
            }
        }
        drop(st);
        if woke {
            self.inner.notify.notify_waiters();
        }
        Ok(())
    }

    async fn release(&self, batch: Vec<Delivery<u64>>) -> Result<(), BrokerError> {
        let mut st = self.lock();
        for d in batch.into_iter().rev() {
            if let Some(m) = st.in_flight.remove(&d.token) {
                st.queue.push_front(m);
                st.stats.released += 1;
            }
        }
        drop(st);
        self.inner.notify.notify_waiters();
        Ok(())
    }

    async fn is_drained(&self) -> Result<bool, BrokerError> {
        let st = self.lock();
        Ok(st.queue.is_empty() && st.scheduled.is_empty() && st.in_flight.is_empty())
    }

    async fn stats(&self) -> Result<Option<QueueStats>, BrokerError> {
        let st = self.lock();
        Ok(Some(QueueStats {
            depth: st.queue.len() as u64,
            in_flight: st.in_flight.len() as u64,
            scheduled: st.scheduled.len() as u64,
            dead_letters: st.dead.len() as u64,
            oldest_age: st.queue.front().and_then(Message::age),
            consumers: 1,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_retry_at_the_last_attempt_number_keeps_it_instead_of_wrapping_to_one() {
        let broker = MemoryBroker::with_fetch_wait("q", Duration::ZERO);
        broker.push(Message::new("x").with_attempt(u32::MAX));
        let batch = broker.fetch(1).await.unwrap();
        let settlement = Settlement {
            token: batch[0].token,
            message: batch[0].message.clone(),
            outcome: Outcome::Retry {
                delay: Duration::ZERO,
            },
        };
        broker.settle(&[settlement]).await.unwrap();
        let again = broker.fetch(1).await.unwrap();
        assert_eq!(again[0].message.attempt(), u32::MAX);
    }
}

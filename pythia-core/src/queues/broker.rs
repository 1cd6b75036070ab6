//! [`QueueSet`] as a [`Broker`]: each call routed to the queues it concerns.

use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::Instant;

use super::{Priority, QueueSet, QueueToken};
use crate::broker::{Broker, Delivery, DeliveryGuarantee, QueueStats, Settlement};
use crate::error::{BrokerError, BrokerErrorKind};
use crate::message::Source;

/// The first error of several, a fatal one ([`Config`](BrokerErrorKind::Config) or
/// [`Closed`](BrokerErrorKind::Closed)) before any other, so that the runtime stops on it.
fn worst(errors: impl IntoIterator<Item = BrokerError>) -> Option<BrokerError> {
    let mut first: Option<BrokerError> = None;
    for e in errors {
        let fatal = matches!(e.kind(), BrokerErrorKind::Config | BrokerErrorKind::Closed);
        match &first {
            None => first = Some(e),
            Some(f)
                if fatal
                    && !matches!(f.kind(), BrokerErrorKind::Config | BrokerErrorKind::Closed) =>
            {
                first = Some(e);
            }
            Some(_) => {}
        }
    }
    first
}

fn tag<T>(queue: usize, batch: Vec<Delivery<T>>) -> Vec<Delivery<QueueToken<T>>> {
    batch
        .into_iter()
        .map(|d| {
            Delivery::new(
                QueueToken {
                    queue,
                    token: d.token,
                },
                d.message,
            )
        })
        .collect()
}

impl<B: Broker> QueueSet<B>
where
    B::Token: Clone,
{
    /// One pass over the queues without waiting: the batch of the first non-empty ones.
    ///
    /// A queue that fails is passed over (its error returned only when no other queue gave
    /// anything): messages already taken from a higher queue are never dropped for a lower
    /// queue's error, and one unreachable queue does not stop the others.
    async fn sweep(&self, max: usize) -> Result<Vec<Delivery<QueueToken<B::Token>>>, BrokerError> {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        match self.priority {
            Priority::Strict => {
                for (queue, m) in self.members.iter().enumerate() {
                    match m.broker.try_fetch(max - out.len()).await {
                        Ok(got) if out.is_empty() => out = tag(queue, got),
                        Ok(got) => out.extend(tag(queue, got)),
                        Err(e) => errors.push(e),
                    }
                    if out.len() >= max {
                        break;
                    }
                }
            }
            Priority::Weighted => {
                let mut left: Vec<usize> = (0..self.members.len()).collect();
                let mut total: u64 = self.members.iter().map(|m| u64::from(m.weight)).sum();
                while !left.is_empty() {
                    let mut ticket = fastrand::u64(0..total);
                    let pos = left
                        .iter()
                        .position(|&q| {
                            let w = u64::from(self.members[q].weight);
                            if ticket < w {
                                true
                            } else {
                                ticket -= w;
                                false
                            }
                        })
                        .expect("tickets add up to the weights left");
                    let queue = left.swap_remove(pos);
                    total -= u64::from(self.members[queue].weight);
                    match self.members[queue].broker.try_fetch(max).await {
                        Ok(got) if !got.is_empty() => {
                            out = tag(queue, got);
                            break;
                        }
                        Ok(_) => {}
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
        match worst(errors) {
            Some(e) if out.is_empty() => Err(e),
            Some(e) => {
                tracing::debug!(error = %e, "a queue of the set failed to fetch; serving the others");
                Ok(out)
            }
            None => Ok(out),
        }
    }
}

impl<B: Broker> Broker for QueueSet<B>
where
    B::Token: Clone,
{
    type Token = QueueToken<B::Token>;

    fn guarantee(&self) -> DeliveryGuarantee {
        if self
            .members
            .iter()
            .all(|m| m.broker.guarantee() == DeliveryGuarantee::AtLeastOnce)
        {
            DeliveryGuarantee::AtLeastOnce
        } else {
            DeliveryGuarantee::AtMostOnce
        }
    }

    /// The kind of the first queue and the names of all, comma-separated (`critical,default,low`):
    /// the label of the runtime's metrics that belong to no one queue (in flight, fetch sizes,
    /// broker errors).
    fn source(&self) -> &Source {
        &self.source
    }

    async fn fetch(&self, max: usize) -> Result<Vec<Delivery<Self::Token>>, BrokerError> {
        let max = max.max(1);
        let out = self.sweep(max).await?;
        if out.is_empty() {
            tokio::time::sleep(self.idle_poll).await;
        }
        Ok(out)
    }

    async fn try_fetch(&self, max: usize) -> Result<Vec<Delivery<Self::Token>>, BrokerError> {
        self.sweep(max.max(1)).await
    }

    async fn settle(&self, batch: &[Settlement<Self::Token>]) -> Result<(), BrokerError> {
        let n = self.members.len();
        let mut per_queue: Vec<Vec<Settlement<B::Token>>> = (0..n).map(|_| Vec::new()).collect();
        for s in batch {
            per_queue[s.token.queue].push(Settlement {
                token: s.token.token.clone(),
                message: s.message.clone(),
                outcome: s.outcome.clone(),
            });
        }
        let results = join_all(
            per_queue
                .iter()
                .enumerate()
                .filter(|(_, b)| !b.is_empty())
                .map(|(q, b)| self.members[q].broker.settle(b)),
        )
        .await;
        worst(results.into_iter().filter_map(Result::err)).map_or(Ok(()), Err)
    }

    async fn release(&self, batch: Vec<Delivery<Self::Token>>) -> Result<(), BrokerError> {
        let n = self.members.len();
        let mut per_queue: Vec<Vec<Delivery<B::Token>>> = (0..n).map(|_| Vec::new()).collect();
        for d in batch {
            per_queue[d.token.queue].push(Delivery::new(d.token.token, d.message));
        }
        let results = join_all(
            per_queue
                .into_iter()
                .enumerate()
                .filter(|(_, b)| !b.is_empty())
                .map(|(q, b)| self.members[q].broker.release(b)),
        )
        .await;
        worst(results.into_iter().filter_map(Result::err)).map_or(Ok(()), Err)
    }

    async fn is_drained(&self) -> Result<bool, BrokerError> {
        for m in &self.members {
            if !m.broker.is_drained().await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Maintains each queue whose own interval has passed since its last maintenance.
    async fn maintain(&self) -> Result<(), BrokerError> {
        let now = Instant::now();
        // The runtime calls this every `tick` (the shortest interval): a queue is due half a
        // tick before its time rather than one whole tick after it.
        let half_tick = self.maintenance_interval().unwrap_or_default() / 2;
        let due: Vec<usize> = {
            let mut last = self.maintained.lock().expect("maintenance times");
            self.members
                .iter()
                .enumerate()
                .filter(|(q, m)| {
                    let Some(every) = m.broker.maintenance_interval() else {
                        return false;
                    };
                    let due = last[*q].is_none_or(|t| now + half_tick >= t + every);
                    if due {
                        last[*q] = Some(now);
                    }
                    due
                })
                .map(|(q, _)| q)
                .collect()
        };
        let results = join_all(due.iter().map(|&q| self.members[q].broker.maintain())).await;
        worst(results.into_iter().filter_map(Result::err)).map_or(Ok(()), Err)
    }

    fn maintenance_interval(&self) -> Option<Duration> {
        self.members
            .iter()
            .filter_map(|m| m.broker.maintenance_interval())
            .min()
    }

    /// The queues' snapshots added up (the oldest age is the largest); `None` when no queue
    /// reports.
    async fn stats(&self) -> Result<Option<QueueStats>, BrokerError> {
        let all = self.stats_per_queue().await?;
        let mut sum: Option<QueueStats> = None;
        for s in all.into_iter().flatten() {
            let t = sum.get_or_insert_with(QueueStats::default);
            t.depth += s.depth;
            t.in_flight += s.in_flight;
            t.scheduled += s.scheduled;
            t.dead_letters += s.dead_letters;
            t.consumers = t.consumers.max(s.consumers);
            t.oldest_age = t.oldest_age.max(s.oldest_age);
        }
        Ok(sum)
    }

    fn queues(&self) -> &[Source] {
        &self.sources
    }

    async fn stats_per_queue(&self) -> Result<Vec<Option<QueueStats>>, BrokerError> {
        let results = join_all(self.members.iter().map(|m| m.broker.stats())).await;
        results.into_iter().collect()
    }

    /// The queue the delivery came from is throttled, the others keep being served.
    fn throttle(&self, token: &Self::Token, pause: Duration) -> bool {
        self.members
            .get(token.queue)
            .is_some_and(|m| m.broker.throttle(&token.token, pause))
    }

    async fn close(&self) -> Result<(), BrokerError> {
        let results = join_all(self.members.iter().map(|m| m.broker.close())).await;
        worst(results.into_iter().filter_map(Result::err)).map_or(Ok(()), Err)
    }
}

//! A sharded stream's fetch: reads on the shards as tasks of their own, a read that outlives
//! its fetch parked for the next one, and a batch filled from whichever shards answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use pythia_core::{BrokerError, Delivery};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::ShardEntryId;
use super::broker::ShardedStreamBroker;
use crate::stream::{MAX_FETCH_BATCH, StreamEntryId};

/// The smallest share of a fetch one shard is asked for in the first round: a small batch
/// goes to fewer shards (in turn), so that a backlog costs one read per fetch, not one per
/// shard.
const MIN_SHARE: usize = 64;
/// The least time a read gets past its block time before a fetch goes on without it: above
/// the server's timer resolution (a blocked read times out at the next `hz` tick, 100 ms by
/// default) and a busy machine's scheduling delays.
const REPLY_MARGIN: Duration = Duration::from_millis(250);
/// How long a fetch leaves a shard alone after a failed read.
const SHARD_RETRY: Duration = Duration::from_millis(500);

/// One shard's reply to a read.
pub(super) type ShardRead = Result<Vec<Delivery<StreamEntryId>>, BrokerError>;

/// What the broker tracks of one shard.
#[derive(Debug, Default)]
pub(super) struct ShardState {
    /// A read that outlasted the fetch that started it; its entries go to a later fetch, and
    /// the shard is not read again before.
    pub(super) parked: StdMutex<Option<JoinHandle<ShardRead>>>,
    /// After a failed read: not before this time again.
    retry_at: StdMutex<Option<Instant>>,
    /// The shard's maintenance while it runs (kept here, so that a maintenance call dropped
    /// by the runtime at shutdown leaves it for `close` to wait for).
    pub(super) maintenance: tokio::sync::Mutex<Option<JoinHandle<Result<(), BrokerError>>>>,
    /// Whether the last read failed (to log the change once each way).
    failing: AtomicBool,
}

impl ShardState {
    fn is_busy(&self) -> bool {
        self.parked.lock().expect("parked read").is_some()
    }

    /// Whether a fetch may read the shard now: no read outstanding, no failure just now.
    fn is_free(&self, now: Instant) -> bool {
        !self.is_busy()
            && self
                .retry_at
                .lock()
                .expect("retry time")
                .is_none_or(|t| now >= t)
    }
}

/// A fetch's batch under way: at most `max`, the rest kept for the next fetch.
pub(super) struct Batch {
    pub(super) max: usize,
    pub(super) out: Vec<Delivery<ShardEntryId>>,
    pub(super) failure: Option<BrokerError>,
}

impl Batch {
    fn room(&self) -> usize {
        self.max.saturating_sub(self.out.len())
    }
}

impl ShardedStreamBroker {
    /// [`Broker::fetch`] (`wait`: for at most the poll interval when nothing is ready) or
    /// [`Broker::try_fetch`] (not waiting): up to `max` entries from the shards.
    pub(super) async fn fetch_shards(
        &self,
        max: usize,
        wait: bool,
    ) -> Result<Vec<Delivery<ShardEntryId>>, BrokerError> {
        self.ensure_ready().await?;
        let n = self.shards.len();
        let max = max.clamp(1, MAX_FETCH_BATCH);
        let mut batch = Batch {
            max,
            out: Vec::new(),
            failure: None,
        };
        {
            let mut surplus = self.surplus.lock().expect("surplus");
            let take = max.min(surplus.len());
            batch.out.extend(surplus.drain(..take));
        }
        self.collect_parked(&mut batch).await;
        if batch.room() == 0 {
            return Ok(batch.out);
        }
        let first = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let now = Instant::now();
        let free: Vec<usize> = (0..n)
            .map(|k| (first + k) % n)
            .filter(|&s| self.states[s].is_free(now))
            .collect();
        if free.is_empty() {
            // No shard can be read now (reads outstanding, or failed a moment ago): give them
            // the poll interval.
            if batch.out.is_empty() && wait {
                let deadline = Instant::now() + self.poll_interval;
                while Instant::now() < deadline && batch.out.is_empty() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    self.collect_parked(&mut batch).await;
                }
            }
            return match (batch.out.is_empty(), batch.failure) {
                (true, Some(e)) => Err(e),
                _ => Ok(batch.out),
            };
        }

        // As many shards as the batch has room for shares of MIN_SHARE, an equal share each,
        // at once; the first shard asked gets the rounding extra.
        let room = batch.room();
        let width = (room / MIN_SHARE).clamp(1, free.len());
        let (share, extra) = (room / width, room % width);
        let asked: Vec<(usize, usize)> = free
            .iter()
            .take(width)
            .enumerate()
            .map(|(k, &shard)| (shard, share + usize::from(k < extra)))
            .collect();
        let reads: Vec<_> = asked
            .iter()
            .map(|&(shard, want)| self.start_read(shard, want, None))
            .collect();
        let deadline = Instant::now() + self.reply_margin();
        let mut may_have_more = Vec::new();
        for (&(shard, want), read) in asked.iter().zip(reads) {
            if self.finish_read(shard, read, deadline, &mut batch).await >= Some(want) {
                may_have_more.push(shard);
            }
        }

        // The rest of the batch: from shards that filled their share, then those not asked.
        let not_asked = free.iter().skip(width).copied();
        for shard in may_have_more.into_iter().chain(not_asked) {
            if batch.room() == 0 {
                break;
            }
            let read = self.start_read(shard, batch.room(), None);
            let deadline = Instant::now() + self.reply_margin();
            self.finish_read(shard, read, deadline, &mut batch).await;
        }

        if !batch.out.is_empty() {
            return Ok(batch.out);
        }
        if let Some(e) = batch.failure {
            return Err(e);
        }
        // Every shard is empty: wait on one, in turn, for at most the poll interval.
        let shard = free[0];
        if wait && !self.states[shard].is_busy() {
            let block = self.block();
            let read = self.start_read(shard, max, Some(block));
            let deadline = Instant::now() + block + self.reply_margin();
            self.finish_read(shard, read, deadline, &mut batch).await;
        }
        match batch.failure {
            Some(e) if batch.out.is_empty() => Err(e),
            _ => Ok(batch.out),
        }
    }

    /// How long a read may take past its block time before a fetch goes on without it.
    fn reply_margin(&self) -> Duration {
        self.poll_interval.max(REPLY_MARGIN)
    }

    fn block(&self) -> Duration {
        self.poll_interval
            .min(self.conn.config().block_timeout())
            .max(Duration::from_millis(1))
    }

    /// Starts a read of up to `max` entries of `shard` as a task of its own, blocking up to
    /// `block` (`None`: not at all).
    fn start_read(
        &self,
        shard: usize,
        max: usize,
        block: Option<Duration>,
    ) -> JoinHandle<ShardRead> {
        let shards = Arc::clone(&self.shards);
        let block_ms = block.map(|b| b.as_millis() as u64);
        tokio::spawn(async move { shards[shard].fetch_blocking(max, block_ms).await })
    }

    /// Waits for a read until `deadline`; one that has not answered by then is parked, still
    /// running, for a later fetch.
    async fn finish_read(
        &self,
        shard: usize,
        mut read: JoinHandle<ShardRead>,
        deadline: Instant,
        batch: &mut Batch,
    ) -> Option<usize> {
        match tokio::time::timeout_at(deadline, &mut read).await {
            Ok(joined) => self.take_read(shard, joined, batch),
            Err(_) => {
                tracing::debug!(
                    shard,
                    stream = self.queue.stream(shard),
                    "a shard read is slow; the fetch goes on without it"
                );
                *self.states[shard].parked.lock().expect("parked read") = Some(read);
                None
            }
        }
    }

    /// Adds a finished read's entries to the batch (those that do not fit to the surplus);
    /// returns how many it gave, or `None` when it failed.
    pub(super) fn take_read(
        &self,
        shard: usize,
        joined: Result<ShardRead, tokio::task::JoinError>,
        batch: &mut Batch,
    ) -> Option<usize> {
        let read = joined.unwrap_or_else(|e| {
            Err(BrokerError::backend(format!(
                "a shard read task failed: {e}"
            )))
        });
        let state = &self.states[shard];
        let failing = &state.failing;
        match read {
            Ok(entries) => {
                *state.retry_at.lock().expect("retry time") = None;
                if failing.swap(false, Ordering::AcqRel) {
                    tracing::info!(
                        shard,
                        stream = self.queue.stream(shard),
                        "shard readable again"
                    );
                }
                let n = entries.len();
                let tag = shard as u32;
                let mut entries = entries
                    .into_iter()
                    .map(|d| Delivery::new(ShardEntryId::new(tag, d.token), d.message));
                let room = batch.room();
                batch.out.extend(entries.by_ref().take(room));
                self.surplus.lock().expect("surplus").extend(entries);
                Some(n)
            }
            Err(e) => {
                *state.retry_at.lock().expect("retry time") = Some(Instant::now() + SHARD_RETRY);
                if !failing.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        shard,
                        stream = self.queue.stream(shard),
                        error = %e,
                        "cannot read a shard; reading the others"
                    );
                }
                batch.failure.get_or_insert(e);
                None
            }
        }
    }

    /// Takes the entries of parked reads that have finished.
    async fn collect_parked(&self, batch: &mut Batch) {
        for shard in 0..self.shards.len() {
            let finished = {
                let mut parked = self.states[shard].parked.lock().expect("parked read");
                match parked.as_ref() {
                    Some(read) if read.is_finished() => parked.take(),
                    _ => None,
                }
            };
            if let Some(read) = finished {
                self.take_read(shard, read.await, batch);
            }
        }
    }
}

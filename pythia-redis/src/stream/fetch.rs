//! Reading a stream for its group: `XREADGROUP` on the broker's blocking connection, the
//! reply walked into deliveries, and the order in which a fetch serves unanswered claims,
//! reclaimed entries, a lost reply's entries and then new ones.

use std::sync::atomic::Ordering;

use pythia_core::{BrokerError, Delivery};
use redis::Value;

use super::wire::{ReadBatch, decode_read_reply};
use super::{MAX_FETCH_BATCH, StreamBroker, StreamEntryId};

/// Reads in a row that may come back with nothing but entries for other groups.
const SKIP_ROUNDS: usize = 4;

/// Where an `XREADGROUP` reads from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ReadFrom {
    /// New entries (`>`), blocking this long (`None`: not blocking).
    New(Option<u64>),
    /// This consumer's pending entries after the id (history), not blocking.
    PendingAfter(StreamEntryId),
}

impl StreamBroker {
    pub(super) fn block_ms(&self) -> u64 {
        (self.conn.config().block_timeout().as_millis() as u64).max(1)
    }

    /// One `XREADGROUP` on the dedicated connection.
    pub(super) async fn read_group(
        &self,
        max: usize,
        from: ReadFrom,
    ) -> Result<ReadBatch, BrokerError> {
        let call = self
            .commands
            .read_group(self.membership.consumer(), max, from);
        let started = std::time::Instant::now();
        let reply: Value = match self.blocking.query(&self.conn, &call).await? {
            Ok(v) => v,
            Err(e) => {
                self.note_error(&e);
                if matches!(from, ReadFrom::New(_)) && e.code() != Some("NOGROUP") {
                    // The server may have delivered entries whose reply never arrived: they sit
                    // in this consumer's pending list, and nobody else will take them while it
                    // lives. Read them back before anything new.
                    self.recovering.store(true, Ordering::Release);
                }
                return Err(self.conn.error("XREADGROUP", e));
            }
        };
        let batch = self.decode_read(reply);
        // A read that found entries: its round trip (one that waited for new entries includes
        // the wait; an empty one is a wait, not Redis' time, and is not timed).
        if !batch.deliveries.is_empty() {
            self.conn
                .client_metrics()
                .observe(crate::client_metrics::Op::Fetch, started);
        }
        Ok(batch)
    }

    fn decode_read(&self, reply: Value) -> ReadBatch {
        decode_read_reply(reply, &self.group, &self.source)
    }

    /// [`Broker::fetch`] with the read blocking up to `block_ms` (`None`: not at all, an empty
    /// batch at once when nothing is new). For the sharded broker, which polls its shards.
    pub(crate) async fn fetch_blocking(
        &self,
        max: usize,
        block_ms: Option<u64>,
    ) -> Result<Vec<Delivery<StreamEntryId>>, BrokerError> {
        self.fetch_batch(max, block_ms)
            .await
            .inspect_err(|e| self.recent.note(e))
    }

    async fn fetch_batch(
        &self,
        max: usize,
        block_ms: Option<u64>,
    ) -> Result<Vec<Delivery<StreamEntryId>>, BrokerError> {
        self.ensure_ready().await?;
        let max = max.clamp(1, MAX_FETCH_BATCH);
        if self.has_unanswered_claims() {
            self.recover_unanswered_claims().await?;
        }
        let reclaimed = self.take_reclaimed(max);
        if !reclaimed.is_empty() {
            return Ok(reclaimed);
        }
        if self.recovering.load(Ordering::Acquire) {
            let recovered = self.recover_lost_reply(max).await?;
            if !recovered.is_empty() || self.recovering.load(Ordering::Acquire) {
                return Ok(recovered);
            }
        }
        for _ in 0..SKIP_ROUNDS {
            let batch = self.read_group(max, ReadFrom::New(block_ms)).await?;
            if let Some(last) = batch.last {
                *self.read_mark.lock().expect("read mark lock") = last;
            }
            self.ack_ids(&batch.to_ack).await?;
            if !batch.deliveries.is_empty() || batch.to_ack.is_empty() {
                return Ok(batch.deliveries);
            }
        }
        Ok(Vec::new())
    }
}

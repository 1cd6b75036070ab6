//! The reaper: a dead consumer's in-flight and staged items go back to the front of the queue
//! (`lua/reliable_reap.lua`), judged dead only through `consumer/liveness.rs`.

use std::collections::HashMap;

use pythia_core::{BrokerError, envelope};

use super::{REAP_BATCH, ReliableListBroker};
use crate::connection::SharedConnection;
use crate::consumer::liveness::peers_alive;
use crate::consumer::retry_schedule::retry_payload;
use crate::list::ReliableListCommands;

impl ReliableListBroker {
    /// The consumers registered for this queue, dead or alive.
    pub(super) async fn consumers(
        &self,
        m: &mut SharedConnection,
    ) -> Result<Vec<String>, BrokerError> {
        redis::cmd("SMEMBERS")
            .arg(self.membership.registry())
            .query_async(m)
            .await
            .map_err(|e| self.conn.error("SMEMBERS", e))
    }

    /// Returns the work of every consumer whose heartbeat has expired; returns how many items.
    ///
    /// Does nothing until this consumer has heartbeated without a break for a whole heartbeat
    /// lifetime (after it starts, and after any outage): a missing heartbeat then means a dead
    /// consumer, not one that could not reach Redis either (see `consumer/liveness.rs`).
    pub async fn reap_dead_consumers(&self) -> Result<u64, BrokerError> {
        if !self.membership.may_judge_others() {
            return Ok(0);
        }
        let mut m = self.mgr();
        let members = self.consumers(&mut m).await?;
        let mut total = 0;
        for (c, alive) in peers_alive(
            &self.conn,
            &mut m,
            &self.keys,
            &members,
            self.membership.consumer(),
        )
        .await?
        {
            if !alive {
                total += self.reap(c, false).await?;
            }
        }
        Ok(total)
    }

    /// Returns `consumer`'s in-flight and staged items to the queue, while its heartbeat is
    /// absent (or whatever it says, with `force`: this consumer's own leftovers).
    pub(super) async fn reap(&self, consumer: &str, force: bool) -> Result<u64, BrokerError> {
        let mut m = self.mgr();
        let in_flight_key = self.keys.in_flight(consumer);
        let items: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
            .arg(&in_flight_key)
            .query_async(&mut m)
            .await
            .map_err(|e| self.conn.error("HGETALL", e))?;
        // Newest delivery first: each goes to the front, so the oldest ends up next in line.
        let mut items: Vec<(u64, String, Vec<u8>)> = items
            .into_iter()
            .map(|(id, raw)| (id.parse().unwrap_or(u64::MAX), id, raw))
            .collect();
        items.sort_unstable_by_key(|(n, _, _)| std::cmp::Reverse(*n));
        let mut total = 0u64;
        let mut chunks: Vec<&[(u64, String, Vec<u8>)]> = items.chunks(REAP_BATCH).collect();
        if chunks.is_empty() {
            chunks.push(&[]); // still move staged items and forget the consumer
        }
        let theirs = ReliableListCommands::new(&self.keys, consumer);
        for chunk in chunks {
            let payloads: Vec<(&str, Vec<u8>)> = chunk
                .iter()
                .map(|(_, id, raw)| {
                    let msg = envelope::decode(raw.clone().into(), &self.source);
                    (id.as_str(), retry_payload(&msg))
                })
                .collect();
            let n: i64 = theirs
                .reap(self.side, force, &payloads)
                .query(&mut m)
                .await
                .map_err(|e| self.conn.error("reap", e))?;
            if n < 0 {
                return Ok(total); // its heartbeat came back: alive after all
            }
            total += n as u64;
        }
        if total > 0 {
            self.reclaimed.increment(total);
            tracing::info!(
                dead_consumer = consumer,
                reclaimed = total,
                queue = self.keys.queue(),
                "returned a dead consumer's messages to the queue"
            );
        }
        Ok(total)
    }
}

//! Reclaiming the work of dead consumers: the scan of the group (a Pythia consumer is dead when
//! its heartbeat has expired and this one may judge), the claim script, the entries of a claim or
//! a read whose reply was lost.

use super::fetch::ReadFrom;
use super::*;
use crate::consumer::liveness::peers_alive;

impl StreamBroker {
    /// Takes up to `max` reclaimed entries waiting for the runtime.
    pub(super) fn take_reclaimed(&self, max: usize) -> Vec<Delivery<StreamEntryId>> {
        let mut r = self.reclaimed.lock().expect("reclaimed lock");
        if r.queue.is_empty() {
            return Vec::new();
        }
        let n = max.min(r.queue.len());
        let batch: Vec<_> = r.queue.drain(..n).collect();
        for d in &batch {
            r.in_flight.insert(d.token);
        }
        batch
    }

    pub(super) fn forget_reclaimed(&self, ids: impl Iterator<Item = StreamEntryId>) {
        let mut r = self.reclaimed.lock().expect("reclaimed lock");
        if !r.in_flight.is_empty() {
            for id in ids {
                r.in_flight.remove(&id);
            }
        }
    }

    pub(super) fn reclaimed_len(&self) -> usize {
        self.reclaimed.lock().expect("reclaimed lock").queue.len()
    }

    /// Reads back entries delivered to this consumer by a read whose reply was lost.
    pub(super) async fn recover_lost_reply(
        &self,
        max: usize,
    ) -> Result<Vec<Delivery<StreamEntryId>>, BrokerError> {
        // No claim may add entries to this consumer's pending list while it is read back.
        let _claiming = self.claim_lock.lock().await;
        let from = *self.read_mark.lock().expect("read mark lock");
        let batch = self.read_group(max, ReadFrom::PendingAfter(from)).await?;
        let Some(last) = batch.last else {
            self.recovering.store(false, Ordering::Release);
            return Ok(Vec::new());
        };
        *self.read_mark.lock().expect("read mark lock") = last;
        self.ack_ids(&batch.to_ack).await?;
        let deliveries: Vec<_> = {
            let r = self.reclaimed.lock().expect("reclaimed lock");
            // Entries of a claim whose reply was lost are delivered by the claim's recovery.
            let claimed = self
                .unanswered_claims
                .lock()
                .expect("unanswered claims lock");
            batch
                .deliveries
                .into_iter()
                .filter(|d| {
                    !r.in_flight.contains(&d.token)
                        && !r.queue.iter().any(|q| q.token == d.token)
                        && !claimed.contains(&d.token)
                })
                .collect()
        };
        if !deliveries.is_empty() {
            // The history read counted a delivery; this is the same delivery as the lost one.
            let ids: Vec<StreamEntryId> = deliveries.iter().map(|d| d.token).collect();
            let mut m = self.mgr();
            redis::cmd("XCLAIM")
                .arg(self.stream())
                .arg(&self.group)
                .arg(self.membership.consumer())
                .arg(0)
                .arg(&ids)
                .arg("RETRYCOUNT")
                .arg(1)
                .arg("JUSTID")
                .query_async::<Value>(&mut m)
                .await
                .map_err(|e| self.conn.error("XCLAIM", e))?;
            tracing::warn!(
                count = deliveries.len(),
                consumer = %self.membership.consumer(),
                "recovered entries whose read reply was lost"
            );
        }
        Ok(deliveries)
    }

    /// Claims the pending entries of every dead consumer of the group for this one; they are
    /// delivered by the next fetches, before new entries. Returns how many were claimed.
    ///
    /// A Pythia consumer is dead when its heartbeat has expired; a consumer without one (another
    /// tool) when it has been idle longer than the foreign idle timeout. Dead consumers left
    /// with nothing pending are removed from the group. Nothing is judged until this consumer
    /// has heartbeated without a break for a whole heartbeat lifetime (after it starts, and
    /// after any outage), so a Redis outage longer than the lifetime never makes live consumers
    /// reclaim each other's running jobs.
    pub async fn reclaim_dead_consumers(&self) -> Result<u64, BrokerError> {
        self.ensure_group_once().await?;
        if !self.membership.may_judge_others() {
            // Not until this consumer has heartbeated without a break for a whole lifetime
            // (after it starts, and after any outage): see `consumer/liveness.rs`.
            return Ok(0);
        }
        let mut m = self.mgr();
        let (info, members): (StreamInfoConsumersReply, Vec<String>) = match redis::pipe()
            .cmd("XINFO")
            .arg("CONSUMERS")
            .arg(self.stream())
            .arg(&self.group)
            .smembers(self.membership.registry())
            .query_async(&mut m)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                self.note_error(&e);
                return Err(self.conn.error("XINFO CONSUMERS", e));
            }
        };
        let peers = peers_alive(
            &self.conn,
            &mut m,
            &self.keys,
            &members,
            self.membership.consumer(),
        )
        .await?;
        let others: Vec<&str> = peers.iter().map(|(c, _)| *c).collect();
        let alive: HashSet<&str> = peers.iter().filter(|(_, a)| *a).map(|(c, _)| *c).collect();
        let in_group: HashSet<&str> = info.consumers.iter().map(|c| c.name.as_str()).collect();
        let stale: Vec<&str> = others
            .into_iter()
            .filter(|c| !in_group.contains(c) && !alive.contains(c))
            .collect();
        if !stale.is_empty() {
            // Registered, never read, and gone: nothing of theirs to reclaim.
            let _: () = redis::cmd("SREM")
                .arg(self.membership.registry())
                .arg(&stale)
                .query_async(&mut m)
                .await
                .map_err(|e| self.conn.error("SREM", e))?;
        }
        let mut total = 0;
        for c in &info.consumers {
            if c.name == self.membership.consumer() || alive.contains(c.name.as_str()) {
                continue;
            }
            let pythia = members.contains(&c.name);
            if pythia {
                total += self.claim_from(&c.name, true, Duration::ZERO).await?.0;
            } else if let Some(limit) = self.foreign_idle_timeout
                && c.idle as u128 >= limit.as_millis()
            {
                total += self.claim_from(&c.name, false, limit).await?.0;
            }
        }
        Ok(total)
    }

    pub(super) async fn claim_from(
        &self,
        dead: &str,
        check_heartbeat: bool,
        min_idle: Duration,
    ) -> Result<(u64, bool), BrokerError> {
        let _claiming = self.claim_lock.lock().await;
        let mut m = self.mgr();
        let (mut total, mut lost) = (0u64, 0u64);
        let mut all = false;
        loop {
            let room = RECLAIMED_QUEUE_CAP.saturating_sub(self.reclaimed_len());
            let want = room.min(CLAIM_BATCH);
            if want == 0 {
                break;
            }
            // A dead consumer's claimed entries leave its pending list; this consumer's own
            // leftovers do not, so they are walked past.
            let after = if dead == self.membership.consumer() {
                *self.leftovers_taken.lock().expect("leftovers lock")
            } else {
                None
            };
            let candidates = self.pending_of(dead, min_idle, after, want).await?;
            if dead == self.membership.consumer()
                && let Some(last) = candidates.last()
            {
                *self.leftovers_taken.lock().expect("leftovers lock") = Some(*last);
            }
            let claim = self.commands.claim(
                &self.keys.heartbeat(dead),
                self.membership.registry(),
                self.membership.consumer(),
                dead,
                check_heartbeat,
                min_idle.as_millis() as u64,
                &candidates,
            );
            let reply: Value = match claim.query(&mut m).await {
                Ok(reply) => reply,
                Err(e) => {
                    self.note_error(&e);
                    // The script may have run and only its reply been lost (a reply timeout, a
                    // killed connection): the entries would sit in this live consumer's pending
                    // list, where nobody else takes them. The next fetch looks for them there.
                    self.unanswered_claims
                        .lock()
                        .expect("unanswered claims lock")
                        .extend(candidates);
                    return Err(self.conn.error("reclaim", e));
                }
            };
            let Value::Array(items) = reply else {
                return Err(BrokerError::backend(
                    "reclaim script gave a malformed reply",
                ));
            };
            let mut items = items.into_iter();
            let status = items.next().and_then(as_int).unwrap_or(-1);
            lost += items.next().and_then(as_int).unwrap_or(0).max(0) as u64;
            if status < 0 {
                all = true;
                break; // its heartbeat came back: alive after all
            }
            let mut got = Vec::new();
            let mut to_ack = Vec::new();
            while let (Some(id), Some(count), Some(fields)) =
                (items.next(), items.next(), items.next())
            {
                let (Some(id_bytes), Some(count), Value::Array(fields)) =
                    (value_bytes(id), as_int(count), fields)
                else {
                    continue;
                };
                let Some(id) = StreamEntryId::parse(&id_bytes) else {
                    continue;
                };
                let extra = u32::try_from(count.max(0)).unwrap_or(u32::MAX);
                match self.claimed_delivery(id, id_bytes, fields, extra) {
                    Ok(d) => got.push(d),
                    Err(other_group) => to_ack.push(other_group),
                }
            }
            self.ack_ids(&to_ack).await?;
            let claimed = got.len() + to_ack.len();
            total += got.len() as u64;
            self.reclaimed
                .lock()
                .expect("reclaimed lock")
                .queue
                .extend(got);
            if status == 1 || claimed < want {
                all = true;
                break;
            }
        }
        if lost > 0 {
            tracing::warn!(
                dead_consumer = dead,
                lost,
                stream = self.stream(),
                "entries of a dead consumer were trimmed from the stream before they were processed; raise the producer's MAXLEN or remove it"
            );
        }
        if total > 0 {
            self.reclaimed_total.increment(total);
            tracing::info!(
                dead_consumer = dead,
                reclaimed = total,
                stream = self.stream(),
                group = %self.group,
                "claimed a dead consumer's pending entries"
            );
        }
        Ok((total, all))
    }

    /// Up to `max` ids pending for `consumer`, idle at least `min_idle`, oldest first, after
    /// `after` when given.
    pub(super) async fn pending_of(
        &self,
        consumer: &str,
        min_idle: Duration,
        after: Option<StreamEntryId>,
        max: usize,
    ) -> Result<Vec<StreamEntryId>, BrokerError> {
        let mut m = self.mgr();
        let start = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        let rows: Vec<Value> = redis::cmd("XPENDING")
            .arg(self.stream())
            .arg(&self.group)
            .arg("IDLE")
            .arg(min_idle.as_millis() as u64)
            .arg(start)
            .arg("+")
            .arg(max)
            .arg(consumer)
            .query_async(&mut m)
            .await
            .map_err(|e| {
                self.note_error(&e);
                self.conn.error("XPENDING", e)
            })?;
        Ok(rows
            .into_iter()
            .filter_map(pending_row)
            .map(|(id, _)| id)
            .collect())
    }

    /// Delivers the entries that claims whose reply was lost moved into this consumer's pending
    /// list (through the reclaimed queue, so before new entries): of the ids those claims named,
    /// the ones pending for this consumer that it has not delivered. Entries deleted from the
    /// stream meanwhile are acked and logged as lost.
    pub(super) async fn recover_unanswered_claims(&self) -> Result<(), BrokerError> {
        let _claiming = self.claim_lock.lock().await;
        let ids = std::mem::take(
            &mut *self
                .unanswered_claims
                .lock()
                .expect("unanswered claims lock"),
        );
        if ids.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("XPENDING")
                .arg(self.stream())
                .arg(&self.group)
                .arg(id)
                .arg(id)
                .arg(1)
                .arg(self.membership.consumer())
                .cmd("XRANGE")
                .arg(self.stream())
                .arg(id)
                .arg(id);
        }
        let mut m = self.mgr();
        let replies: Vec<Value> = match pipe.query_async(&mut m).await {
            Ok(replies) => replies,
            Err(e) => {
                self.note_error(&e);
                self.unanswered_claims
                    .lock()
                    .expect("unanswered claims lock")
                    .extend(ids);
                return Err(self.conn.error("reclaim (recovering a lost reply)", e));
            }
        };
        let mut replies = replies.into_iter();
        let (mut got, mut to_ack, mut gone) = (Vec::new(), Vec::new(), 0usize);
        {
            let r = self.reclaimed.lock().expect("reclaimed lock");
            for id in ids {
                let (Some(pending), Some(range)) = (replies.next(), replies.next()) else {
                    break;
                };
                let Some(count) = pending_rows(pending)
                    .into_iter()
                    .find_map(|(p, count)| (p == id).then_some(count))
                else {
                    continue; // never claimed for this consumer
                };
                if r.in_flight.contains(&id) || r.queue.iter().any(|q| q.token == id) {
                    continue;
                }
                let entry = match range {
                    Value::Array(entries) => entries.into_iter().next().and_then(split_entry),
                    _ => None,
                };
                let Some((id_bytes, Some(fields))) = entry else {
                    gone += 1; // deleted while pending
                    to_ack.push(id);
                    continue;
                };
                // The claim counted a delivery to this consumer; the ones before were to the
                // dead one.
                let extra = u32::try_from(count.saturating_sub(1)).unwrap_or(u32::MAX);
                match self.claimed_delivery(id, id_bytes, fields, extra) {
                    Ok(d) => got.push(d),
                    Err(other_group) => to_ack.push(other_group),
                }
            }
        }
        self.ack_ids(&to_ack).await?;
        if gone > 0 {
            tracing::warn!(
                lost = gone,
                stream = self.stream(),
                "claimed entries were trimmed from the stream before they were processed; raise the producer's MAXLEN or remove it"
            );
        }
        if !got.is_empty() {
            tracing::warn!(
                count = got.len(),
                consumer = %self.membership.consumer(),
                "recovered claimed entries whose claim reply was lost"
            );
            self.reclaimed_total.increment(got.len() as u64);
            self.reclaimed
                .lock()
                .expect("reclaimed lock")
                .queue
                .extend(got);
        }
        Ok(())
    }

    pub(super) fn has_unanswered_claims(&self) -> bool {
        !self
            .unanswered_claims
            .lock()
            .expect("unanswered claims lock")
            .is_empty()
    }

    /// A claimed entry as a delivery (`extra`: its deliveries that ended with a dead consumer),
    /// or its id to acknowledge when the entry is marked for another group.
    fn claimed_delivery(
        &self,
        id: StreamEntryId,
        id_bytes: Vec<u8>,
        fields: impl Into<FieldList>,
        extra: u32,
    ) -> Result<Delivery<StreamEntryId>, StreamEntryId> {
        decode_fields(
            id,
            id_bytes,
            FieldPairs::new(fields),
            Some(&self.group),
            &self.source,
            extra,
        )
        .map(|msg| Delivery::new(id, msg))
        .ok_or(id)
    }
}

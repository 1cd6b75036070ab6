//! Settling deliveries: acks in bulk, retries, dead letters and hand-backs through the settle
//! script (checks first, adds before it acknowledges), entries too wide for a script by a
//! transaction, and the resend of recent settlements after a connection error.

use super::*;

impl StreamBroker {
    /// Acknowledges `ids` (and deletes them with `delete_on_ack`); returns how many were still
    /// pending in the group.
    pub(super) async fn ack_ids(&self, ids: &[StreamEntryId]) -> Result<u64, BrokerError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut m = self.mgr();
        let started = std::time::Instant::now();
        let res = if self.delete_on_ack {
            self.commands
                .ack_and_delete(ids)
                .query::<(u64,)>(&mut m)
                .await
                .map(|(acked,)| acked)
        } else {
            self.commands.ack(ids).query::<u64>(&mut m).await
        };
        self.conn
            .client_metrics()
            .observe(crate::client_metrics::Op::Settle, started);
        res.map_err(|e| self.conn.error("XACK", e))
    }

    /// Runs the settle script over retries, dead letters and hand-backs (plus plain acks).
    pub(super) async fn settle_script(
        &self,
        acks: &[StreamEntryId],
        items: &[(StreamEntryId, &Message, Item<'_>)],
    ) -> Result<u64, BrokerError> {
        let mut m = self.mgr();
        let opts = SettleOptions {
            dead_letter_cap: self.dead_letter_cap.get(),
            delete_on_ack: self.delete_on_ack,
            now: unix_millis(SystemTime::now()),
        };
        let mut chunks = items.chunks(SETTLE_SCRIPT_BATCH);
        let mut acks = Some(acks);
        let mut settled = 0;
        loop {
            let chunk = chunks.next();
            let first = acks.take();
            if chunk.is_none() && first.is_none() {
                return Ok(settled);
            }
            let chunk = chunk.unwrap_or(&[]);
            let call = self.commands.settle(first.unwrap_or(&[]), chunk, opts);
            let started = std::time::Instant::now();
            // Call::query counts a failing script in pythia_redis_script_errors_total.
            let res = call.query(&mut m).await;
            self.conn
                .client_metrics()
                .observe(crate::client_metrics::Op::Settle, started);
            let (n, too_big, trimmed): (u64, Vec<Vec<u8>>, u64) =
                res.map_err(|e| self.conn.error("settle", e))?;
            settled += n;
            self.dead_letter_cap.trimmed(trimmed);
            for id in too_big.iter().filter_map(|id| StreamEntryId::parse(id)) {
                if let Some((token, msg, item)) = chunk.iter().find(|(t, _, _)| *t == id) {
                    self.settle_by_transaction(&mut m, *token, msg, *item, opts.now)
                        .await?;
                    settled += 1;
                }
            }
        }
    }

    /// Dead-letters or hands back one entry with too many fields for the settle script: its
    /// fields (read back, Pythia's replaced) are added where they go, then the entry is
    /// acknowledged, in one `MULTI` transaction. Unlike the script this is not idempotent: sent
    /// again after a lost reply, the entry is added twice (never lost).
    pub(super) async fn settle_by_transaction(
        &self,
        m: &mut SharedConnection,
        token: StreamEntryId,
        msg: &Message,
        item: Item<'_>,
        now: u64,
    ) -> Result<(), BrokerError> {
        let found: Vec<(String, Vec<FieldPair>)> = redis::cmd("XRANGE")
            .arg(self.stream())
            .arg(token)
            .arg(token)
            .query_async(m)
            .await
            .map_err(|e| self.conn.error("settle (XRANGE)", e))?;
        let (_, _, set) = self.commands.pythia_fields(token, msg, item, now);
        let mut fields: Vec<FieldPair> = match found.into_iter().next() {
            Some((_, fields)) => fields,
            None => std::iter::once((fields::BODY.as_bytes().to_vec(), msg.body().to_vec()))
                .chain(
                    msg.headers()
                        .iter()
                        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())),
                )
                .collect(),
        };
        fields.retain(|(k, _)| !set.iter().any(|(name, _)| name.as_bytes() == k));
        fields.extend(
            set.into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.into_bytes())),
        );
        let mut pipe = redis::pipe();
        pipe.atomic();
        let dead_letters = self.keys.dead_letters();
        let target = match item {
            Item::DeadLetter { .. } => &dead_letters,
            _ => self.stream(),
        };
        // A capped dead-letter stream: its length before and after tells what the cap trimmed.
        let capped = matches!(item, Item::DeadLetter { .. }) && self.dead_letter_cap.get() > 0;
        let mut add = redis::cmd("XADD");
        add.arg(target);
        if capped {
            pipe.cmd("XLEN").arg(target);
            add.arg("MAXLEN").arg("~").arg(self.dead_letter_cap.get());
        }
        add.arg("*").arg(&fields);
        pipe.add_command(add).ignore();
        if capped {
            pipe.cmd("XLEN").arg(target);
        }
        pipe.cmd("XACK")
            .arg(self.stream())
            .arg(&self.group)
            .arg(token)
            .ignore();
        if self.delete_on_ack {
            pipe.cmd("XDEL").arg(self.stream()).arg(token).ignore();
        }
        let lengths: Vec<u64> = pipe
            .query_async(m)
            .await
            .map_err(|e| self.conn.error("settle (transaction)", e))?;
        if let [before, after] = lengths[..] {
            self.dead_letter_cap
                .trimmed((before + 1).saturating_sub(after));
        }
        tracing::info!(
            entry = %token,
            fields = fields.len(),
            "settled an entry with too many fields for a script by a transaction"
        );
        Ok(())
    }

    /// [`Broker::settle`] of `(token, message, outcome)` triples, so that the sharded broker
    /// settles a shard's part of a batch without copying the messages.
    pub(crate) async fn settle_refs(
        &self,
        batch: &[(StreamEntryId, &Message, &Outcome)],
    ) -> Result<(), BrokerError> {
        let settled = self
            .settle_now(batch)
            .await
            .inspect_err(|e| self.recent.note(e))?;
        self.not_owned
            .settled(batch.len(), settled, self.membership.consumer());
        self.recent.record_refs(batch.iter().copied());
        Ok(())
    }

    /// After a connection error (once the connection works again): sends the recent
    /// settlements again (the settle script and XACK are idempotent), so that acks a failover
    /// lost do not leave processed entries pending for this live consumer, where nothing
    /// claims them (see `recent_settlements`).
    pub(super) async fn resend_recent(&self) -> Result<(), BrokerError> {
        let Some((acks, others)) = self.recent.to_resend() else {
            return Ok(());
        };
        let refs: Vec<_> = others
            .iter()
            .map(|s| (s.token, &s.message, &s.outcome))
            .collect();
        let mut sent = Ok(0);
        for chunk in acks.chunks(10_000) {
            sent = self.ack_ids(chunk).await;
            if sent.is_err() {
                break;
            }
        }
        if sent.is_ok() {
            sent = self.settle_now(&refs).await;
        }
        if sent.is_err() {
            self.recent.suspect();
        }
        sent.map(drop)
    }

    /// Settles `batch`; returns how many of its entries were still pending in the group.
    pub(super) async fn settle_now(
        &self,
        batch: &[(StreamEntryId, &Message, &Outcome)],
    ) -> Result<u64, BrokerError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let settled = if batch.iter().all(|s| *s.2 == Outcome::Ack) {
            let ids: Vec<StreamEntryId> = batch.iter().map(|s| s.0).collect();
            self.ack_ids(&ids).await?
        } else {
            let mut acks = Vec::new();
            let mut items = Vec::new();
            for &(token, message, outcome) in batch {
                match outcome {
                    Outcome::Retry { delay } => {
                        let delay = delay_ms(*delay);
                        items.push((token, message, Item::Retry { delay }));
                    }
                    Outcome::DeadLetter { reason } => {
                        items.push((token, message, Item::DeadLetter { reason }));
                    }
                    Outcome::Ack => acks.push(token),
                }
            }
            self.settle_script(&acks, &items).await?
        };
        self.forget_reclaimed(batch.iter().map(|s| s.0));
        Ok(settled)
    }

    /// Acks deliveries and adds them again as new entries for this group, unchanged.
    pub(super) async fn hand_back(
        &self,
        batch: &[Delivery<StreamEntryId>],
    ) -> Result<(), BrokerError> {
        if batch.is_empty() {
            return Ok(());
        }
        let items: Vec<_> = batch
            .iter()
            .map(|d| (d.token, &d.message, Item::HandBack))
            .collect();
        self.settle_script(&[], &items).await.map(drop)
    }
}

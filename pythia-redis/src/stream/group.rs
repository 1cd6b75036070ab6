//! Joining the consumer group: creating it (at the configured start) and the stream if needed,
//! registering this consumer, taking back what an earlier process under its name left.

use super::*;

impl StreamBroker {
    /// Creates the consumer group at the configured [`GroupStart`] (and the stream, if missing)
    /// unless it exists. With [`GroupStart::NewEntries`], call it before producing, so that
    /// nothing produced before the first worker starts is skipped.
    pub async fn ensure_group(&self) -> Result<(), BrokerError> {
        let start = if self.group_lost.load(Ordering::Acquire) {
            // The group vanished while consuming (the stream was deleted): what is in the
            // stream now was added since, and must not be skipped.
            GroupStart::Beginning
        } else {
            self.start
        };
        let mut m = self.mgr();
        let res: Result<(), _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.stream())
            .arg(&self.group)
            .arg(start.as_arg())
            .arg("MKSTREAM")
            .query_async(&mut m)
            .await;
        let created = match res {
            Ok(()) => {
                tracing::debug!(stream = self.stream(), group = %self.group, start = start.as_str(), "consumer group created");
                true
            }
            Err(e) if e.code() == Some("BUSYGROUP") => false,
            Err(e) => return Err(self.conn.error("XGROUP CREATE", e)),
        };
        // Before the first read: a read past entries trimmed unread would hide them, in a group
        // whose read counter Redis does not know yet.
        self.check_trimmed(created).await?;
        self.group_lost.store(false, Ordering::Release);
        self.group_ready.store(true, Ordering::Release);
        Ok(())
    }

    pub(super) async fn ensure_group_once(&self) -> Result<(), BrokerError> {
        if !self.group_ready.load(Ordering::Acquire) {
            self.ensure_group().await?;
        }
        Ok(())
    }

    pub(super) async fn heartbeat(&self) -> Result<(), BrokerError> {
        let mut m = self.mgr();
        self.membership.beat(&self.conn, &mut m).await?;
        self.membership.registered.store(true, Ordering::Release);
        Ok(())
    }

    pub(super) async fn ensure_ready(&self) -> Result<(), BrokerError> {
        self.ensure_group_once().await?;
        if self.own_leftovers.load(Ordering::Acquire) {
            // A name given by the caller may be a restarted process's: what it left pending is
            // nobody else's to reclaim while this one keeps the heartbeat alive.
            let (n, all) = self
                .claim_from(self.membership.consumer(), false, Duration::ZERO)
                .await?;
            if all {
                self.own_leftovers.store(false, Ordering::Release);
            }
            if n > 0 {
                tracing::info!(consumer = %self.membership.consumer(), taken_back = n, "took back entries left pending under this consumer name");
            }
        }
        if !self.membership.registered.load(Ordering::Acquire) {
            self.heartbeat().await?;
            tracing::debug!(consumer = %self.membership.consumer(), stream = self.stream(), group = %self.group, "stream consumer registered");
        }
        Ok(())
    }

    /// Marks the group as gone when Redis says so, so the next call creates it again.
    pub(super) fn note_error(&self, e: &redis::RedisError) {
        if e.code() == Some("NOGROUP") {
            self.group_ready.store(false, Ordering::Release);
            self.group_lost.store(true, Ordering::Release);
        }
    }
}

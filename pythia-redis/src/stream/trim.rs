//! Keeping the stream bounded and the schedule moving: promotion of due retries, the trim of
//! entries every group has processed, and the count of entries trimmed before delivery.

use super::*;

impl StreamBroker {
    /// Moves due retries and delayed messages onto the stream; returns how many moved.
    pub async fn promote_due_retries(&self) -> Result<u64, BrokerError> {
        let mut m = self.mgr();
        promote_due_to_stream(&self.conn, &mut m, &self.keys).await
    }

    /// Trims the entries every consumer group of the stream has processed (see "Memory" above);
    /// returns how many were removed.
    pub async fn trim_processed_entries(&self) -> Result<u64, BrokerError> {
        let mut m = self.mgr();
        self.commands
            .trim_processed(TRIM_LIMIT)
            .query(&mut m)
            .await
            .map_err(|e| self.conn.error("trim", e))
    }

    /// Counts the entries removed from the stream (a producer's `MAXLEN ~`, an `XTRIM`) before
    /// this group was delivered them, since any consumer of the group last counted: those
    /// messages are lost. A count above 0 is added to the counter
    /// [`TRIMMED_UNDELIVERED_TOTAL`] and logged as a warning, once: the count is then cleared
    /// in Redis (the group's read counter, `XGROUP SETID … ENTRIESREAD`, which also makes its lag
    /// true again), so another consumer does not report the same entries.
    ///
    /// Maintenance calls it every interval, and [`ensure_group`](Self::ensure_group) before the
    /// first read. It needs Redis 7.0 (0 before). The count is known while the group's position
    /// is before the stream's first entry (the state a trim of undelivered entries leaves, until
    /// the group reads on), and, on Redis 7.0, also once the group has caught up. Later Redis
    /// versions count entries a group reads past as read, so there a trim that happens and is
    /// read past between two maintenance intervals goes uncounted: the count is a lower bound.
    /// Entries trimmed before the group existed are not counted. The consumers' own trim
    /// ([`with_trim_processed`](Self::with_trim_processed)) never removes an undelivered entry.
    pub async fn count_trimmed_undelivered(&self) -> Result<u64, BrokerError> {
        self.check_trimmed(false).await
    }

    /// [`count_trimmed_undelivered`](Self::count_trimmed_undelivered); `just_created` when this
    /// broker has just created the group (what was removed before is not its loss).
    pub(super) async fn check_trimmed(&self, just_created: bool) -> Result<u64, BrokerError> {
        let mut m = self.mgr();
        let missed: i64 = self
            .commands
            .trimmed_undelivered(just_created)
            .query(&mut m)
            .await
            .map_err(|e| self.conn.error("count trimmed entries", e))?;
        let missed = missed.max(0) as u64;
        if missed > 0 {
            self.trimmed_undelivered_total.increment(missed);
            tracing::warn!(
                stream = self.stream(),
                group = %self.group,
                lost = missed,
                "entries were trimmed from the stream before the group was delivered them (a producer's MAXLEN or an XTRIM): they are lost; raise --max-len or remove it"
            );
        }
        Ok(missed)
    }
}

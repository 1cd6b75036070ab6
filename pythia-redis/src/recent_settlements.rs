//! The last settlements of a consumer, sent again after a connection error.
//!
//! Redis replicates asynchronously: when a master dies and a replica takes over (a Cluster or
//! Sentinel failover), the writes the old master had not yet sent to it are gone. For a
//! consumer the lost writes that matter are its last acks: the acked messages are back in its
//! in-flight record on the new master, where nothing delivers or removes them while the
//! consumer lives (they would come back only when it exits, and a `--burst` worker would wait
//! for them forever). Settling is idempotent (a delivery no longer in flight is skipped), so
//! after any connection error the broker sends its recent settlements again once the
//! connection works: a no-op when nothing was lost, the missing acks when something was.

use std::collections::VecDeque;
use std::sync::Mutex;

use pythia_core::{BrokerError, BrokerErrorKind, Message, Outcome, Settlement};

/// Acks remembered (delivery ids): at full speed about a fifth of a second, far more than a
/// replica lags behind its master on a healthy link.
const ACKS_KEPT: usize = 100_000;
/// Retries and dead letters remembered (they hold their message).
const OTHERS_KEPT: usize = 10_000;

pub(crate) struct RecentSettlements<T> {
    inner: Mutex<Inner<T>>,
}

struct Inner<T> {
    acks: VecDeque<T>,
    others: VecDeque<(T, Message, Outcome)>,
    /// A connection error happened since the last resend.
    suspect: bool,
}

impl<T> std::fmt::Debug for RecentSettlements<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecentSettlements").finish_non_exhaustive()
    }
}

impl<T: Copy> RecentSettlements<T> {
    pub(crate) fn new() -> Self {
        Self {
            inner: Mutex::new(Inner {
                acks: VecDeque::new(),
                others: VecDeque::new(),
                suspect: false,
            }),
        }
    }

    /// Remembers a batch that was settled.
    pub(crate) fn record(&self, batch: &[Settlement<T>]) {
        self.record_refs(batch.iter().map(|s| (s.token, &s.message, &s.outcome)));
    }

    /// Remembers a batch that was settled, as `(token, message, outcome)`.
    pub(crate) fn record_refs<'a>(
        &self,
        batch: impl IntoIterator<Item = (T, &'a Message, &'a Outcome)>,
    ) {
        let mut inner = self.inner.lock().expect("recent settlements");
        for (token, message, outcome) in batch {
            if *outcome == Outcome::Ack {
                inner.acks.push_back(token);
            } else {
                inner
                    .others
                    .push_back((token, message.clone(), outcome.clone()));
            }
        }
        let extra = inner.acks.len().saturating_sub(ACKS_KEPT);
        inner.acks.drain(..extra);
        let extra = inner.others.len().saturating_sub(OTHERS_KEPT);
        inner.others.drain(..extra);
    }

    /// After an error: when it is a connection error, the settlements made before it may be
    /// lost.
    pub(crate) fn note(&self, e: &BrokerError) {
        if e.kind() == BrokerErrorKind::Connection {
            self.suspect();
        }
    }

    /// A connection error happened: the settlements made before it may be lost.
    pub(crate) fn suspect(&self) {
        self.inner.lock().expect("recent settlements").suspect = true;
    }

    /// After a connection error: the settlements to send again (and no longer suspect until
    /// the next error). `None` when there was no error since the last call.
    pub(crate) fn to_resend(&self) -> Option<(Vec<T>, Vec<Settlement<T>>)> {
        let mut inner = self.inner.lock().expect("recent settlements");
        if !std::mem::take(&mut inner.suspect) {
            return None;
        }
        let acks = inner.acks.iter().copied().collect();
        let others = inner
            .others
            .iter()
            .map(|(token, message, outcome)| Settlement {
                token: *token,
                message: message.clone(),
                outcome: outcome.clone(),
            })
            .collect();
        Some((acks, others))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settlement(token: u64, outcome: Outcome) -> Settlement<u64> {
        Settlement {
            token,
            message: Message::new("m"),
            outcome,
        }
    }

    #[test]
    fn resends_only_after_an_error_and_keeps_a_bounded_window() {
        let recent = RecentSettlements::new();
        let batch: Vec<_> = (0..(ACKS_KEPT as u64 + 10))
            .map(|i| settlement(i, Outcome::Ack))
            .collect();
        recent.record(&batch);
        recent.record(&[settlement(
            7,
            Outcome::Retry {
                delay: Duration::from_secs(1),
            },
        )]);
        assert!(
            recent.to_resend().is_none(),
            "nothing to resend without an error"
        );
        recent.suspect();
        let (acks, others) = recent.to_resend().unwrap();
        assert_eq!(acks.len(), ACKS_KEPT);
        assert_eq!(acks[0], 10, "the oldest are forgotten");
        assert_eq!(others.len(), 1);
        assert_eq!(others[0].token, 7);
        assert!(recent.to_resend().is_none(), "once per error");
    }
}

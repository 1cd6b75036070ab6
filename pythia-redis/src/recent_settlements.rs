//! The last settlements of a consumer, sent again after a connection error (bounded in count
//! and, for retries and dead letters, which hold their message, in bytes).
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
/// Bytes of retried and dead-lettered messages remembered (bodies, ids, headers): 4 MiB, so a
/// worker's memory does not grow with the size of the bodies it fails. A message larger than
/// that alone is not remembered: if a failover loses its settle, it stays in the consumer's
/// in-flight record until the consumer stops or is reaped, then runs again (delayed, not lost).
const OTHERS_BYTES_KEPT: usize = 4 << 20;
/// What remembering one settlement costs beyond its message's bytes (token, outcome, queue
/// slot), so that many small messages count too.
const ENTRY_OVERHEAD: usize = 64;

pub(crate) struct RecentSettlements<T> {
    inner: Mutex<Inner<T>>,
}

struct Inner<T> {
    acks: VecDeque<T>,
    others: VecDeque<(T, Message, Outcome)>,
    /// The [`weight`] of `others`.
    others_bytes: usize,
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
                others_bytes: 0,
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
                continue;
            }
            let w = weight(message, outcome);
            if w > OTHERS_BYTES_KEPT {
                continue;
            }
            while inner.others.len() >= OTHERS_KEPT || inner.others_bytes + w > OTHERS_BYTES_KEPT {
                let Some((_, m, o)) = inner.others.pop_front() else {
                    break;
                };
                inner.others_bytes -= weight(&m, &o);
            }
            inner.others_bytes += w;
            inner
                .others
                .push_back((token, message.clone(), outcome.clone()));
        }
        let extra = inner.acks.len().saturating_sub(ACKS_KEPT);
        inner.acks.drain(..extra);
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

/// The bytes a remembered retry or dead letter keeps alive.
fn weight(message: &Message, outcome: &Outcome) -> usize {
    let headers: usize = message
        .headers()
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    let reason = match outcome {
        Outcome::DeadLetter { reason } => reason.len(),
        Outcome::Ack | Outcome::Retry { .. } => 0,
    };
    ENTRY_OVERHEAD + message.body().len() + message.id().len() + headers + reason
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

    #[test]
    fn retried_and_dead_lettered_bodies_are_kept_within_a_byte_budget() {
        let recent = RecentSettlements::new();
        let body = bytes::Bytes::from(vec![b'x'; 1_000_000]);
        let dead = |token: u64| Settlement {
            token,
            message: Message::new(body.clone()),
            outcome: Outcome::DeadLetter {
                reason: "rejected".into(),
            },
        };
        for token in 0..200 {
            recent.record(&[dead(token)]);
        }
        recent.suspect();
        let (_, others) = recent.to_resend().unwrap();
        let kept: usize = others.iter().map(|s| s.message.body().len()).sum();
        assert!(
            kept <= OTHERS_BYTES_KEPT,
            "{} dead letters of 1 MB kept: {kept} bytes",
            others.len()
        );
        assert!(!others.is_empty(), "the latest still fit");
        assert_eq!(
            others.last().unwrap().token,
            199,
            "the oldest are forgotten"
        );

        // One message above the whole budget is not kept, and does not push out the others.
        let huge = Settlement {
            token: 1000,
            message: Message::new(vec![b'y'; OTHERS_BYTES_KEPT + 1]),
            outcome: Outcome::Retry {
                delay: Duration::from_secs(1),
            },
        };
        recent.record(&[huge]);
        recent.suspect();
        let (_, after) = recent.to_resend().unwrap();
        assert_eq!(after.len(), others.len());
        assert_eq!(after.last().unwrap().token, 199);
    }
}

//! [`DeadLetter`]: the one dead-letter type of the workspace, for the in-memory broker, a decoded
//! dead-letter item and Redis's dead-letter queues alike.

use std::time::SystemTime;

use crate::message::Message;

/// A message that ran out of attempts or was rejected: the message as it was last delivered (its
/// attempt is the number of attempts made), why and when, when recorded, and where its store
/// keeps it (`location`: `()` for [`MemoryBroker`](crate::MemoryBroker) and a decoded item;
/// the Redis dead-letter queue's own handle for the letters it lists, which it needs to replay
/// or delete exactly that one).
///
/// ```
/// use pythia_core::{DeadLetter, Message};
///
/// let d = DeadLetter::new(Message::new("order 7"), Some("not an order".into()), None);
/// assert_eq!(d.reason.as_deref(), Some("not an order"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadLetter<L = ()> {
    /// The message as it was last delivered.
    pub message: Message,
    /// Why it was dead-lettered, when recorded.
    pub reason: Option<String>,
    /// When it was dead-lettered, when recorded.
    pub failed_at: Option<SystemTime>,
    /// Where the store keeps it.
    pub location: L,
}

impl DeadLetter {
    /// A dead letter with no location.
    pub fn new(message: Message, reason: Option<String>, failed_at: Option<SystemTime>) -> Self {
        Self {
            message,
            reason,
            failed_at,
            location: (),
        }
    }

    /// The same dead letter, kept at `location`.
    pub fn at<L>(self, location: L) -> DeadLetter<L> {
        DeadLetter {
            message: self.message,
            reason: self.reason,
            failed_at: self.failed_at,
            location,
        }
    }
}

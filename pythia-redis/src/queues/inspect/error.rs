//! [`InspectError`]: why an inspection failed — a key of the wrong type or a missing group
//! (the caller asked for something that is not there) or Redis itself.

use std::fmt;

use pythia_core::BrokerError;

/// Why [`inspect_queue`](super::inspect_queue) and friends failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum InspectError {
    /// The key exists with another Redis type than the kind inspected reads.
    WrongType {
        /// The key.
        key: String,
        /// Its Redis type (`string`, `hash`, `stream`, …).
        found: String,
        /// What was expected (`list`, `stream`, `queue (a list or a stream)`).
        expected: &'static str,
    },
    /// The consumer group asked for is not there.
    NoSuchGroup {
        /// The stream, or the sharded queue's name.
        queue: String,
        /// The group asked for.
        group: String,
        /// The groups the stream has (empty for a sharded queue: none of its shards has it).
        groups: Vec<String>,
        /// Whether `queue` is a sharded queue.
        sharded: bool,
    },
    /// Redis failed, or refused the request.
    Broker(BrokerError),
}

impl InspectError {
    /// Whether the caller asked for something that is not there (a usage error), rather than
    /// Redis failing.
    pub fn is_usage(&self) -> bool {
        !matches!(self, Self::Broker(_))
    }
}

impl fmt::Display for InspectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongType {
                key,
                found,
                expected,
            } => write!(f, "{key:?} is a Redis {found}, not a {expected}"),
            Self::NoSuchGroup {
                queue,
                group,
                sharded: true,
                ..
            } => write!(
                f,
                "no shard of the sharded queue {queue:?} has a consumer group {group:?}"
            ),
            Self::NoSuchGroup {
                queue,
                group,
                groups,
                ..
            } => write!(
                f,
                "stream {queue:?} has no consumer group {group:?} (groups: {})",
                if groups.is_empty() {
                    "none".to_owned()
                } else {
                    groups.join(", ")
                }
            ),
            Self::Broker(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for InspectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Broker(e) => Some(e),
            _ => None,
        }
    }
}

impl From<BrokerError> for InspectError {
    fn from(e: BrokerError) -> Self {
        Self::Broker(e)
    }
}

//! The queue registry: a hash `<prefix>:queues` of queue name → kind, written once by each
//! producer and each broker.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pythia_core::{BrokerError, BrokerErrorKind};

use crate::call::Call;
use crate::connection::RedisConnection;
use crate::keys;

/// What kind of queue a name is: the broker that consumes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum QueueKind {
    /// A list consumed by `ListBroker` (or produced by a `ListProducer`, whose consumers may
    /// be reliable: a `ReliableListBroker` overwrites it).
    List,
    /// A list consumed by `ReliableListBroker`.
    ReliableList,
    /// A stream with consumer groups.
    Stream,
    /// A sharded stream (one queue over many streams).
    ShardedStream,
    /// A pub/sub channel.
    Pubsub,
}

impl QueueKind {
    /// The name stored in the registry (`list`, `reliable-list`, `stream`, `sharded-stream`,
    /// `pubsub`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::List => "list",
            Self::ReliableList => "reliable-list",
            Self::Stream => "stream",
            Self::ShardedStream => "sharded-stream",
            Self::Pubsub => "pubsub",
        }
    }
}

impl fmt::Display for QueueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QueueKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "list" => Self::List,
            "reliable-list" => Self::ReliableList,
            "stream" => Self::Stream,
            "sharded-stream" => Self::ShardedStream,
            "pubsub" => Self::Pubsub,
            other => return Err(format!("unknown queue kind {other:?}")),
        })
    }
}

/// Registers one queue once: the first [`ensure`](Registration::ensure) writes the registry,
/// later ones (and those of clones) only read an atomic flag.
///
/// A producer registers with `HSETNX` on its first send (it does not know whether a list's
/// consumers are reliable, so it never overwrites what a broker wrote); a broker with `HSET`
/// from its first maintenance, which the runtime runs at start, on a task of its own, so
/// neither a fetch nor the maintenance waits for it. The registry is informational: a write
/// is never an error of the send or the maintenance; one that failed on the connection is
/// tried again next time, one that was refused (ACL, key type) is logged and not tried again.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    done: Arc<AtomicBool>,
    /// An [`ensure_in_background`](Self::ensure_in_background) task is running.
    running: Arc<AtomicBool>,
    key: String,
    queue: String,
    kind: QueueKind,
    overwrite: bool,
}

impl Registration {
    /// The registration a producer of `queue` makes.
    pub(crate) fn producer(conn: &RedisConnection, queue: &str, kind: QueueKind) -> Self {
        Self::new(conn, queue, kind, false)
    }

    /// The registration a broker of `queue` makes.
    pub(crate) fn broker(conn: &RedisConnection, queue: &str, kind: QueueKind) -> Self {
        Self::new(conn, queue, kind, true)
    }

    fn new(conn: &RedisConnection, queue: &str, kind: QueueKind, overwrite: bool) -> Self {
        Self {
            done: Arc::new(AtomicBool::new(false)),
            running: Arc::new(AtomicBool::new(false)),
            key: keys::registry(conn.config().key_prefix()),
            queue: queue.to_owned(),
            kind,
            overwrite,
        }
    }

    /// [`ensure`](Self::ensure) on a task of its own, so that the caller (a broker's
    /// maintenance: heartbeats, reaping) never waits for the registry; at most one such task
    /// runs at a time.
    pub(crate) fn ensure_in_background(&self, conn: &RedisConnection) {
        if self.done.load(Ordering::Relaxed)
            || self
                .running
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let (this, conn) = (self.clone(), conn.clone());
        tokio::spawn(async move {
            this.ensure(&conn).await;
            this.running.store(false, Ordering::Release);
        });
    }

    /// Writes the registry unless this registration (or a clone) already did; a failure is
    /// logged, and the next call tries again.
    pub(crate) async fn ensure(&self, conn: &RedisConnection) {
        if self.done.load(Ordering::Relaxed) {
            return;
        }
        let mut m = conn.manager();
        match self.write_call().query::<()>(&mut m).await {
            Ok(()) => self.done.store(true, Ordering::Relaxed),
            Err(e) => {
                let e = conn.error("register queue", e);
                if e.kind() == BrokerErrorKind::Connection {
                    tracing::warn!(queue = %self.queue, error = %e, "could not write the queue registry; trying again later");
                } else {
                    // Refused (an ACL without the registry key, a key of another type): asking
                    // again would cost a round trip per send for the same answer.
                    tracing::warn!(queue = %self.queue, key = %self.key, error = %e, "the queue registry cannot be written: this queue is not listed by `pythia queues` (give the user access to the key)");
                    self.done.store(true, Ordering::Relaxed);
                }
            }
        }
    }

    /// The registry entry `queue → kind`: a broker's `HSET`, a producer's `HSETNX` (which never
    /// overwrites what a broker wrote).
    fn write_call(&self) -> Call {
        let cmd = if self.overwrite { "HSET" } else { "HSETNX" };
        let mut cmd = redis::cmd(cmd);
        cmd.arg(&self.key).arg(&self.queue).arg(self.kind.as_str());
        Call::command(cmd)
    }
}

/// Every registered queue under the connection's key prefix, by name. A kind this version
/// does not know is left out.
pub async fn registered_queues(
    conn: &RedisConnection,
) -> Result<BTreeMap<String, QueueKind>, BrokerError> {
    let mut m = conn.manager();
    let all: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(keys::registry(conn.config().key_prefix()))
        .query_async(&mut m)
        .await
        .map_err(|e| conn.error("HGETALL queues", e))?;
    Ok(all
        .into_iter()
        .filter_map(|(name, kind)| Some((name, kind.parse().ok()?)))
        .collect())
}

/// The names of the queues that have keys of Pythia's under the connection's key prefix (a
/// retry schedule, dead letters, consumers, in-flight, a heartbeat, a pause flag, counters…),
/// found with `SCAN` on every master, reading at most `limit` keys: queues that predate the
/// registry, or whose registry entry was deleted. Costs a pass over the key space: prefer
/// [`registered_queues`].
pub async fn discovered_queues(
    conn: &RedisConnection,
    limit: usize,
) -> Result<Vec<String>, BrokerError> {
    let prefix = conn.config().key_prefix();
    let mut keys = Vec::new();
    // Queues without a hash tag of their own (`<prefix>:{jobs}:…`), then those with one
    // (`<prefix>:q:{orders}.eu:…`; see `crate::keys`).
    for pattern in [
        format!("{}:{{*}}:*", glob_escape(prefix)),
        format!("{}:q:*", glob_escape(prefix)),
    ] {
        keys.extend(conn.scan_keys(&pattern, limit).await?);
    }
    let names: std::collections::BTreeSet<&str> = keys
        .iter()
        .filter_map(|k| keys::queue_of_key(prefix, k))
        .collect();
    Ok(names.into_iter().map(str::to_owned).collect())
}

/// `s` with the glob metacharacters of `SCAN MATCH` escaped.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_overwrite_the_registry_entry_and_producers_do_not() {
        let registration = |overwrite| Registration {
            done: Arc::default(),
            running: Arc::default(),
            key: keys::registry("pythia"),
            queue: "mail".to_owned(),
            kind: QueueKind::ReliableList,
            overwrite,
        };
        assert_eq!(
            registration(true).write_call().text(),
            ["HSET", "pythia:queues", "mail", "reliable-list"]
        );
        assert_eq!(
            registration(false).write_call().text(),
            ["HSETNX", "pythia:queues", "mail", "reliable-list"]
        );
    }

    #[test]
    fn kinds_round_trip() {
        for k in [
            QueueKind::List,
            QueueKind::ReliableList,
            QueueKind::Stream,
            QueueKind::ShardedStream,
            QueueKind::Pubsub,
        ] {
            assert_eq!(k.as_str().parse::<QueueKind>(), Ok(k));
        }
        assert!("queue".parse::<QueueKind>().is_err());
        assert_eq!(glob_escape("a*b[c]"), "a\\*b\\[c\\]");
    }
}

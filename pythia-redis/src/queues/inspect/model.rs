//! The types of an inspection: one per kind of queue, and their consumers, groups, shards,
//! channels and memory. Their JSON is `pythia inspect --json`'s (see the parent module).

use std::time::Duration;

use serde::Serialize;

use crate::queues::counters::DailyCounts;
use crate::queues::registry::QueueKind;

/// One queue (or a set of channels), inspected; its JSON has no tag but the `broker` field
/// each variant carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum QueueInspection {
    /// A list, consumed by `ListBroker` or `ReliableListBroker`.
    List(ListInspection),
    /// A stream with consumer groups.
    Stream(StreamInspection),
    /// A sharded stream: its shards' streams and totals over them.
    Sharded(ShardedInspection),
    /// Pub/sub channels.
    Pubsub(PubsubInspection),
}

impl QueueInspection {
    /// The memory the queue takes (`None` for channels, which keep nothing but dead letters).
    pub fn memory(&self) -> Option<&MemoryUsage> {
        match self {
            Self::List(l) => Some(&l.memory_bytes),
            Self::Stream(s) => Some(&s.memory_bytes),
            Self::Sharded(s) => Some(&s.memory_bytes),
            Self::Pubsub(_) => None,
        }
    }

    /// Whether anything of the queue is in Redis: its key or one of Pythia's keys for it
    /// (true when unknown, or for channels).
    pub fn exists(&self) -> bool {
        self.memory()
            .is_none_or(|m| m.queue.is_none_or(|n| n > 0) || m.pythia_keys.is_none_or(|n| n > 0))
    }

    /// The queue's pause flag, where the inspection read it (lists and streams).
    pub fn paused(&self) -> Option<bool> {
        match self {
            Self::List(l) => Some(l.paused),
            Self::Stream(s) => s.paused,
            _ => None,
        }
    }

    /// Today's counts, where the inspection read them (lists and streams).
    pub fn today(&self) -> Option<&DailyCounts> {
        match self {
            Self::List(l) => Some(&l.today),
            Self::Stream(s) => s.today.as_ref(),
            _ => None,
        }
    }

    /// Messages waiting, as [`QueueReport::depth`](crate::queues::QueueReport::depth) counts
    /// them: a list's depth; a stream's lag summed over its groups (its length when it has no
    /// group); 0 for channels.
    pub fn depth(&self) -> u64 {
        match self {
            Self::List(l) => l.depth,
            Self::Stream(s) if s.groups.is_empty() => s.length,
            Self::Stream(s) => s.groups.iter().map(|g| g.lag).sum(),
            Self::Sharded(s) if s.groups.is_empty() => s.length,
            Self::Sharded(s) => s.groups.iter().map(|g| g.lag).sum(),
            Self::Pubsub(_) => 0,
        }
    }

    /// Messages delivered and not settled: a list's in-flight messages, a stream's pending
    /// entries summed over its groups; 0 for channels.
    pub fn in_flight(&self) -> u64 {
        match self {
            Self::List(l) => l.in_flight,
            Self::Stream(s) => s.groups.iter().map(|g| g.pending).sum(),
            Self::Sharded(s) => s.groups.iter().map(|g| g.pending).sum(),
            Self::Pubsub(_) => 0,
        }
    }

    /// Retries waiting for their time.
    pub fn scheduled(&self) -> u64 {
        match self {
            Self::List(l) => l.scheduled,
            Self::Stream(s) => s.scheduled,
            Self::Sharded(s) => s.scheduled,
            Self::Pubsub(_) => 0,
        }
    }

    /// Dead letters (of every channel, for channels).
    pub fn dead_letters(&self) -> u64 {
        match self {
            Self::List(l) => l.dead_letters,
            Self::Stream(s) => s.dead_letters,
            Self::Sharded(s) => s.dead_letters,
            Self::Pubsub(p) => p.channels.iter().map(|c| c.dead_letters).sum(),
        }
    }

    /// Age of the oldest message waiting, in seconds: a list's next message, the oldest of a
    /// stream's groups' next entries.
    pub fn oldest_age_seconds(&self) -> Option<f64> {
        let groups = |gs: &[GroupInspection]| {
            gs.iter()
                .filter_map(|g| g.oldest_age_seconds)
                .reduce(f64::max)
        };
        match self {
            Self::List(l) => l.oldest_age_seconds,
            Self::Stream(s) => groups(&s.groups),
            Self::Sharded(s) => s
                .shards
                .iter()
                .filter_map(|shard| groups(&shard.groups))
                .reduce(f64::max),
            Self::Pubsub(_) => None,
        }
    }

    /// The heartbeat of every consumer: a list's registered ones, every group's of a stream
    /// (of every shard).
    pub fn heartbeats(&self) -> Vec<Heartbeat> {
        let stream = |s: &StreamInspection| -> Vec<Heartbeat> {
            s.groups
                .iter()
                .flat_map(|g| g.consumers.iter().map(GroupConsumerReport::heartbeat))
                .collect()
        };
        match self {
            Self::List(l) => l.consumers.iter().map(ConsumerReport::heartbeat).collect(),
            Self::Stream(s) => stream(s),
            Self::Sharded(s) => s.shards.iter().flat_map(stream).collect(),
            Self::Pubsub(_) => Vec::new(),
        }
    }
}

/// A list queue: its backlog, retries, dead letters and registered consumers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ListInspection {
    /// The list's key.
    pub queue: String,
    /// [`List`](QueueKind::List) or [`ReliableList`](QueueKind::ReliableList).
    pub broker: QueueKind,
    /// Messages waiting in the list.
    pub depth: u64,
    /// Messages held by the registered consumers (summed over them).
    pub in_flight: u64,
    /// Retries waiting for their time.
    pub scheduled: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// Age of the next message to deliver, in seconds, when the broker knows it.
    pub oldest_age_seconds: Option<f64>,
    /// The registered consumers, by name.
    pub consumers: Vec<ConsumerReport>,
    /// Memory of the list and of Pythia's keys for it.
    pub memory_bytes: MemoryUsage,
    /// Whether the queue is paused.
    pub paused: bool,
    /// Today's processed / failed / retried counts.
    pub today: DailyCounts,
}

/// A consumer registered for a list (a `ReliableListBroker`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ConsumerReport {
    /// Its name.
    pub name: String,
    /// Messages it holds (its in-flight hash).
    pub in_flight: u64,
    /// Messages moved by a blocking fetch and not yet recorded as in flight.
    pub staged: u64,
    /// Whether its heartbeat key exists.
    pub alive: bool,
    /// Time its heartbeat has left, in ms (`None`: dead, or a heartbeat without expiry).
    pub heartbeat_ttl_ms: Option<u64>,
}

impl ConsumerReport {
    /// Its heartbeat.
    pub fn heartbeat(&self) -> Heartbeat {
        Heartbeat::of(Some(self.alive), self.heartbeat_ttl_ms)
    }
}

/// A stream queue: its length, retries, dead letters and consumer groups.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StreamInspection {
    /// The stream's key.
    pub queue: String,
    /// Always [`Stream`](QueueKind::Stream).
    pub broker: QueueKind,
    /// Entries in the stream.
    pub length: u64,
    /// Retries waiting for their time.
    pub scheduled: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// Its consumer groups (only the one asked for, when one was).
    pub groups: Vec<GroupInspection>,
    /// Memory of the stream and of Pythia's keys for it.
    pub memory_bytes: MemoryUsage,
    /// Whether the queue is paused (`None` for the shard of a sharded stream).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Today's counts (`None` for the shard of a sharded stream).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub today: Option<DailyCounts>,
    /// Its index, when it is the shard of a sharded stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<usize>,
}

/// One consumer group of a stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct GroupInspection {
    /// The group's name.
    pub name: String,
    /// Entries not yet delivered to the group.
    pub lag: u64,
    /// Whether [`lag`](Self::lag) is a lower bound (counted up to a limit, where Redis does
    /// not know it).
    pub lag_lower_bound: bool,
    /// Entries delivered and not acknowledged.
    pub pending: u64,
    /// The id of the last entry delivered.
    pub last_delivered_id: String,
    /// Age of the next entry to deliver, in seconds (`None`: nothing undelivered).
    pub oldest_age_seconds: Option<f64>,
    /// Its consumers, as Redis lists them.
    pub consumers: Vec<GroupConsumerReport>,
    /// Pythia consumers registered for the group that Redis does not list in it: one that has
    /// heartbeated and not read yet, or one left registered when its group was deleted and
    /// created again. None holds an entry (Redis would list it); each is
    /// [`pythia`](GroupConsumerReport::pythia), with no [`idle_ms`](GroupConsumerReport::idle_ms).
    /// Not in [`QueueInspection::heartbeats`], which counts the consumers Redis lists; left
    /// out of the JSON when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unlisted_consumers: Vec<GroupConsumerReport>,
}

/// One consumer of a stream's group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct GroupConsumerReport {
    /// Its name.
    pub name: String,
    /// Entries delivered to it and not acknowledged.
    pub pending: u64,
    /// Time since its last read or claim, in ms (`None`: one of the
    /// [`unlisted_consumers`](GroupInspection::unlisted_consumers)).
    pub idle_ms: Option<u64>,
    /// Whether it is a Pythia consumer (registered, or with a heartbeat key).
    pub pythia: bool,
    /// Whether its heartbeat key exists (`None`: not a Pythia consumer).
    pub alive: Option<bool>,
    /// Time its heartbeat has left, in ms.
    pub heartbeat_ttl_ms: Option<u64>,
}

impl GroupConsumerReport {
    /// Its heartbeat.
    pub fn heartbeat(&self) -> Heartbeat {
        Heartbeat::of(self.alive, self.heartbeat_ttl_ms)
    }
}

/// What a consumer's heartbeat key says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Heartbeat {
    /// The key exists; it expires in this much (`None`: it has no expiry).
    Alive(Option<Duration>),
    /// The key expired: the consumer's work goes back to the queue.
    Dead,
    /// Not a Pythia consumer: it keeps no heartbeat.
    None,
}

impl Heartbeat {
    fn of(alive: Option<bool>, ttl_ms: Option<u64>) -> Self {
        match alive {
            Some(true) => Self::Alive(ttl_ms.map(Duration::from_millis)),
            Some(false) => Self::Dead,
            None => Self::None,
        }
    }

    /// (alive, ms left) from a `PTTL` reply: -2 is no key (dead), -1 a key without expiry.
    pub(super) fn from_pttl(pttl: i64) -> (bool, Option<u64>) {
        match pttl {
            -2 => (false, None),
            -1 => (true, None),
            ms => (true, Some(ms.max(0) as u64)),
        }
    }
}

/// A sharded stream: totals over its shards, and each shard's stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ShardedInspection {
    /// The logical queue's name.
    pub queue: String,
    /// Always [`Stream`](QueueKind::Stream) (what its shards are).
    pub broker: QueueKind,
    /// How many shards were inspected.
    pub shard_count: usize,
    /// The layout producers and consumers stored.
    pub layout: ShardLayout,
    /// Entries over every shard.
    pub length: u64,
    /// Retries over every shard.
    pub scheduled: u64,
    /// Dead letters over every shard.
    pub dead_letters: u64,
    /// Memory over every shard (unknown when one shard's is).
    pub memory_bytes: MemoryUsage,
    /// Per consumer group: its numbers summed over the shards that have it.
    pub groups: Vec<ShardedGroupReport>,
    /// Each shard's stream, by index (with every group, whatever group was asked for).
    pub shards: Vec<StreamInspection>,
}

/// The layout of a sharded stream as stored in Redis, against the one inspected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ShardLayout {
    /// The key holding it.
    pub key: String,
    /// How many shards the stored layout has (`None`: none stored yet).
    pub stored_shards: Option<usize>,
    /// Whether the stored layout is the inspected one (`None`: none stored yet).
    pub matches: Option<bool>,
}

/// A consumer group of a sharded stream, summed over its shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ShardedGroupReport {
    /// The group's name.
    pub name: String,
    /// Entries not yet delivered, over the shards.
    pub lag: u64,
    /// Whether one shard's lag is a lower bound.
    pub lag_lower_bound: bool,
    /// Entries delivered and not acknowledged, over the shards.
    pub pending: u64,
    /// How many shards have the group (a shard gets it from its first consumer).
    pub shards_with_group: usize,
}

/// Pub/sub channels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PubsubInspection {
    /// Always [`Pubsub`](QueueKind::Pubsub).
    pub broker: QueueKind,
    /// Each channel asked for, in order.
    pub channels: Vec<ChannelReport>,
    /// Pattern subscriptions on the server, whatever their patterns (0 on a cluster).
    pub pattern_subscriptions: u64,
}

/// One pub/sub channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ChannelReport {
    /// The channel.
    pub channel: String,
    /// Its subscribers (`PUBSUB NUMSUB`; on a cluster `SHARDNUMSUB`).
    pub subscribers: u64,
    /// Its dead letters.
    pub dead_letters: u64,
}

/// `MEMORY USAGE` of a queue key and of Pythia's keys for it, in bytes; `None` when the
/// server refused the command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MemoryUsage {
    /// The queue's own key (0 when it does not exist).
    pub queue: Option<u64>,
    /// Pythia's keys for it: retries, dead letters, consumers, heartbeats, ….
    pub pythia_keys: Option<u64>,
}

impl MemoryUsage {
    /// Both parts, when known.
    pub fn total(&self) -> Option<u64> {
        Some(self.queue? + self.pythia_keys?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_read_from_pttl() {
        assert_eq!(Heartbeat::from_pttl(-2), (false, None));
        assert_eq!(Heartbeat::from_pttl(-1), (true, None));
        assert_eq!(Heartbeat::from_pttl(8000), (true, Some(8000)));
        assert_eq!(
            Heartbeat::of(Some(true), Some(8000)),
            Heartbeat::Alive(Some(Duration::from_secs(8)))
        );
        assert_eq!(Heartbeat::of(Some(false), None), Heartbeat::Dead);
        assert_eq!(Heartbeat::of(None, None), Heartbeat::None);
    }

    fn group(
        lag: u64,
        pending: u64,
        oldest: Option<f64>,
        alive: &[Option<bool>],
    ) -> GroupInspection {
        GroupInspection {
            name: "g".to_owned(),
            lag,
            lag_lower_bound: false,
            pending,
            last_delivered_id: "0-0".to_owned(),
            oldest_age_seconds: oldest,
            consumers: alive
                .iter()
                .map(|a| GroupConsumerReport {
                    name: "c".to_owned(),
                    pending: 0,
                    idle_ms: Some(1),
                    pythia: a.is_some(),
                    alive: *a,
                    heartbeat_ttl_ms: None,
                })
                .collect(),
            unlisted_consumers: Vec::new(),
        }
    }

    fn stream(length: u64, groups: Vec<GroupInspection>) -> QueueInspection {
        QueueInspection::Stream(StreamInspection {
            queue: "s".to_owned(),
            broker: QueueKind::Stream,
            length,
            scheduled: 1,
            dead_letters: 2,
            groups,
            memory_bytes: MemoryUsage::default(),
            paused: Some(false),
            today: None,
            shard: None,
        })
    }

    #[test]
    fn a_stream_counts_its_groups_lag_and_pending() {
        let s = stream(
            9,
            vec![
                group(3, 1, Some(2.0), &[Some(true), None]),
                group(4, 2, Some(5.0), &[Some(false)]),
            ],
        );
        assert_eq!(
            (s.depth(), s.in_flight(), s.scheduled(), s.dead_letters()),
            (7, 3, 1, 2)
        );
        assert_eq!(s.oldest_age_seconds(), Some(5.0));
        assert_eq!(
            s.heartbeats(),
            [Heartbeat::Alive(None), Heartbeat::None, Heartbeat::Dead]
        );
        // Without a group, everything in the stream waits.
        let s = stream(9, Vec::new());
        assert_eq!(
            (s.depth(), s.in_flight(), s.oldest_age_seconds()),
            (9, 0, None)
        );
    }

    #[test]
    fn a_list_carries_its_daily_counts_and_pause_flag() {
        let today = DailyCounts {
            processed: 12,
            failed: 3,
            ..DailyCounts::default()
        };
        let l = QueueInspection::List(ListInspection {
            queue: "l".to_owned(),
            broker: QueueKind::List,
            depth: 1,
            in_flight: 0,
            scheduled: 0,
            dead_letters: 0,
            oldest_age_seconds: None,
            consumers: Vec::new(),
            memory_bytes: MemoryUsage::default(),
            paused: true,
            today,
        });
        assert_eq!(l.today().map(|t| (t.processed, t.failed)), Some((12, 3)));
        assert_eq!((l.paused(), l.depth()), (Some(true), 1));
    }

    #[test]
    fn memory_total_needs_both_parts() {
        let known = MemoryUsage {
            queue: Some(2),
            pythia_keys: Some(3),
        };
        assert_eq!(known.total(), Some(5));
        assert_eq!(MemoryUsage::default().total(), None);
    }
}

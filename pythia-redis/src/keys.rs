//! Key naming: `<prefix>:{<queue>}:<what>`, or `<prefix>:q:<queue>:<what>` for a queue whose
//! name holds a hash tag.
//!
//! The queue key itself is the name the user gives (`--queue jobs` reads the list `jobs`), so
//! `redis-cli LPUSH jobs …` feeds a worker. Pythia's own keys for that queue are in the same
//! Redis Cluster slot as the queue key, which lets one Lua script touch them all:
//!
//! * `jobs` (no hash tag): the whole name becomes the tag, `pythia:{jobs}:scheduled`.
//! * `{orders}.eu` (a hash tag of its own): the name is kept whole, tag and all, after a `q:`
//!   marker, `pythia:q:{orders}.eu:scheduled`. Its neighbour `{orders}.us` shares the slot but
//!   not a single key, and neither can meet the keys of a queue named `orders` (whose keys start
//!   `pythia:{orders}:`).
//!
//! Every key is derived from the whole queue name: two queues never share a retry schedule, a
//! dead-letter queue, a consumer registry or in-flight storage.

/// The keys of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueKeys {
    queue: String,
    base: String,
}

impl QueueKeys {
    /// The keys of `queue` under `prefix`.
    pub fn new(prefix: &str, queue: &str) -> Self {
        let base = if hash_tag(queue).len() < queue.len() {
            format!("{prefix}:q:{queue}")
        } else {
            format!("{prefix}:{{{queue}}}")
        };
        Self {
            queue: queue.to_owned(),
            base,
        }
    }

    /// The queue key itself (the list, stream or channel name).
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Sorted set of retries waiting for their time, scored by due time in milliseconds.
    pub fn scheduled(&self) -> String {
        format!("{}:scheduled", self.base)
    }

    /// The dead-letter list (newest first).
    pub fn dead_letters(&self) -> String {
        format!("{}:dlq", self.base)
    }

    /// Set of consumer names that may hold in-flight work.
    pub fn consumers(&self) -> String {
        format!("{}:consumers", self.base)
    }

    /// One consumer's in-flight hash (delivery id → item).
    pub fn in_flight(&self, consumer: &str) -> String {
        format!("{}:inflight:{consumer}", self.base)
    }

    /// One consumer's staging list (items a blocking move parked before they are recorded).
    pub fn staging(&self, consumer: &str) -> String {
        format!("{}:staging:{consumer}", self.base)
    }

    /// One consumer's heartbeat key (expires when the consumer stops refreshing it).
    pub fn heartbeat(&self, consumer: &str) -> String {
        format!("{}:heartbeat:{consumer}", self.base)
    }

    /// Set of the Pythia consumers of one stream consumer group (each also has a heartbeat).
    pub fn group_consumers(&self, group: &str) -> String {
        format!("{}:consumers:{group}", self.base)
    }

    /// Hash of delayed messages waiting in the schedule: message id → payload. The schedule
    /// holds `delayed:<id>` for each, so a message can be cancelled by its id.
    pub fn scheduled_ids(&self) -> String {
        format!("{}:scheduled:ids", self.base)
    }

    /// A distributed lock named after this queue (or any name given as the "queue").
    pub fn lock(&self) -> String {
        format!("{}:lock", self.base)
    }

    /// Hash of a circuit breaker shared by every replica (named like a queue).
    pub fn breaker(&self) -> String {
        format!("{}:breaker", self.base)
    }

    /// The last slot a periodic job fired onto this queue (ms since the Unix epoch).
    pub fn periodic_slot(&self, job: &str) -> String {
        format!("{}:periodic:{job}", self.base)
    }

    /// The record that a message with idempotency key `key` completed.
    pub fn idempotency(&self, key: &str) -> String {
        format!("{}:done:{key}", self.base)
    }

    /// The status record of the message (job) with id `id`.
    pub fn job_status(&self, id: &str) -> String {
        format!("{}:job:{id}", self.base)
    }

    /// The events (a list of JSON lines, oldest first) of the job with id `id`.
    pub fn job_events(&self, id: &str) -> String {
        format!("{}:job-events:{id}", self.base)
    }

    /// The checkpoint a handler saved for the job with id `id`.
    pub fn job_checkpoint(&self, id: &str) -> String {
        format!("{}:job-checkpoint:{id}", self.base)
    }

    /// The recent jobs in state `state` (`queued`, `running`, …): a sorted set of ids scored by
    /// the time they entered it (ms).
    pub fn jobs_in_state(&self, state: &str) -> String {
        format!("{}:jobs:{state}", self.base)
    }

    /// The layout of a sharded queue: the names of its shard streams, one a line.
    pub fn shard_layout(&self) -> String {
        format!("{}:shards", self.base)
    }

    /// The queue's pause flag: while it exists (whatever it holds), the queue's gated workers
    /// fetch nothing ([`gate::pause`](crate::gate::pause)).
    pub fn paused(&self) -> String {
        format!("{}:paused", self.base)
    }

    /// The queue's throttle: while it lives (a TTL), gated workers fetch nothing, because a
    /// handler said the downstream is rate-limiting it.
    pub fn throttled(&self) -> String {
        format!("{}:throttled", self.base)
    }

    /// The state of the queue's rate limit (the GCRA's theoretical arrival time).
    pub fn rate_limit(&self) -> String {
        format!("{}:ratelimit", self.base)
    }

    /// The last id an `XREAD` reader named `reader` processed.
    pub fn checkpoint(&self, reader: &str) -> String {
        format!("{}:checkpoint:{reader}", self.base)
    }

    /// One day's counter of settled messages of one kind (`processed`, `failed`, `retried`);
    /// `day` is the UTC date, `YYYY-MM-DD`.
    pub fn stat(&self, counter: &str, day: &str) -> String {
        format!("{}:stat:{counter}:{day}", self.base)
    }
}

/// The registry of queues under `prefix`: a hash of queue name → kind (`list`,
/// `reliable-list`, `stream`, `sharded-stream`, `pubsub`), written by producers and brokers
/// once each (see [`crate::queues`]).
pub fn registry(prefix: &str) -> String {
    format!("{prefix}:queues")
}

/// The kinds of key a queue has (a lock, an idempotency record or a job status is not one).
const QUEUE_KINDS: [&str; 10] = [
    "scheduled",
    "dlq",
    "consumers",
    "inflight",
    "staging",
    "heartbeat",
    "periodic",
    "checkpoint",
    "paused",
    "stat",
];

/// The queue a key of Pythia's belongs to (the inverse of [`QueueKeys`]'s naming), when the key's
/// kind is one a queue has: the hash tag
/// of `<prefix>:{tag}:<kind>…`, or the name of `<prefix>:q:<name>:<kind>…` (a queue whose name
/// holds a hash tag of its own; the name ends at the first `:<kind>` after that tag).
pub fn queue_of_key<'a>(prefix: &str, key: &'a str) -> Option<&'a str> {
    let rest = key.strip_prefix(prefix)?;
    if let Some(rest) = rest.strip_prefix(":q:") {
        let tag_end = rest.find('}')? + 1;
        let name = (tag_end..rest.len())
            .filter(|&i| rest.as_bytes()[i] == b':')
            .map(|i| &rest[..i])
            .find(|name| {
                let kind = rest[name.len() + 1..].split(':').next().unwrap_or("");
                QUEUE_KINDS.contains(&kind)
            })?;
        return (hash_tag(name).len() < name.len()).then_some(name);
    }
    let rest = rest.strip_prefix(":{")?;
    let close = rest.find('}')?;
    let (tag, after) = (&rest[..close], rest[close + 1..].strip_prefix(':')?);
    let kind = after.split(':').next().unwrap_or("");
    (!tag.is_empty() && hash_tag(tag) == tag && QUEUE_KINDS.contains(&kind)).then_some(tag)
}

/// The part of `key` Redis Cluster hashes: the content of the first non-empty `{…}`, or the
/// whole key.
pub fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// A consumer name unique to this process: `<base>-<pid>-<random>`, where the base is
/// `PYTHIA_CONSUMER_NAME`, else `POD_NAME`, else `HOSTNAME`, else the machine's host name.
/// Two replicas with the same configuration never share a name, and a restarted pod never
/// reuses a dead consumer's name.
pub fn unique_consumer_name() -> String {
    let base = ["PYTHIA_CONSUMER_NAME", "POD_NAME", "HOSTNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "pythia".to_owned());
    let base: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{base}-{}-{:08x}", std::process::id(), fastrand::u32(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_queue_hash_tag() {
        let k = QueueKeys::new("pythia", "jobs");
        assert_eq!(k.queue(), "jobs");
        assert_eq!(k.scheduled(), "pythia:{jobs}:scheduled");
        assert_eq!(k.in_flight("c1"), "pythia:{jobs}:inflight:c1");
        assert_eq!(hash_tag(&k.dead_letters()), "jobs");
        let k = QueueKeys::new("p", "{orders}.eu");
        assert_eq!(k.heartbeat("c"), "p:q:{orders}.eu:heartbeat:c");
        assert_eq!(hash_tag(&k.heartbeat("c")), "orders");
        assert_eq!(hash_tag("{orders}.eu"), "orders");
        assert_eq!(hash_tag("a{}b"), "a{}b");
        assert_eq!(
            QueueKeys::new("pythia", "jobs").paused(),
            "pythia:{jobs}:paused"
        );
    }

    #[test]
    fn keys_name_their_queue() {
        assert_eq!(queue_of_key("pythia", "pythia:{jobs}:dlq"), Some("jobs"));
        assert_eq!(
            queue_of_key("pythia", "pythia:{a:b}:inflight:c-1"),
            Some("a:b")
        );
        assert_eq!(
            queue_of_key("pythia", "pythia:{ev}:consumers:billing"),
            Some("ev")
        );
        assert_eq!(queue_of_key("pythia", "pythia:{jobs}:paused"), Some("jobs"));
        assert_eq!(queue_of_key("pythia", "pythia:{jobs}:lock"), None);
        assert_eq!(
            queue_of_key("pythia", &QueueKeys::new("pythia", "jobs").paused()),
            Some("jobs")
        );
        assert_eq!(
            queue_of_key(
                "pythia",
                &QueueKeys::new("pythia", "{o}.a").stat("processed", "2026-12-03")
            ),
            Some("{o}.a")
        );
        assert_eq!(registry("pythia"), "pythia:queues");
        assert_eq!(queue_of_key("pythia", "pythia:{jobs}:done:k"), None);
        assert_eq!(queue_of_key("pythia", "other:{jobs}:dlq"), None);
        assert_eq!(queue_of_key("pythia", "pythia:{}:dlq"), None);
        assert_eq!(queue_of_key("p", "pythia:{jobs}:dlq"), None);
        assert_eq!(queue_of_key("pythia", "pythia:q:{o}.a:dlq"), Some("{o}.a"));
        assert_eq!(
            queue_of_key("pythia", "pythia:q:{o}.a:b:inflight:c-1"),
            Some("{o}.a:b")
        );
        assert_eq!(
            queue_of_key("pythia", "pythia:q:{o}:scheduled:ids"),
            Some("{o}")
        );
        assert_eq!(queue_of_key("pythia", "pythia:q:{o}.a:lock"), None);
        assert_eq!(queue_of_key("pythia", "pythia:q:o.a:dlq"), None);
        let k = QueueKeys::new("pythia", "{o}.a:b");
        assert_eq!(queue_of_key("pythia", &k.in_flight("c-1")), Some("{o}.a:b"));
        assert_eq!(
            queue_of_key("pythia", &QueueKeys::new("pythia", "jobs").dead_letters()),
            Some("jobs")
        );
    }

    #[test]
    fn consumer_names_are_unique_per_call() {
        let a = unique_consumer_name();
        let b = unique_consumer_name();
        assert_ne!(a, b);
        assert!(a.contains(&std::process::id().to_string()));
    }
}

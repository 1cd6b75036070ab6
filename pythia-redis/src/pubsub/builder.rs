//! [`PubSubBuilder`]: a pub/sub broker's settings, and `subscribe`, which opens the
//! subscription and starts the task that keeps it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pythia_core::{BrokerError, CancellationToken, Source};

use super::buffer::*;
use super::subscriber::*;
use super::{Overflow, PubSubBroker};
use crate::connection::RedisConnection;
use crate::consumer::retry_schedule::{DEFAULT_DEAD_LETTER_CAP, DeadLetterCap};
use crate::keys::QueueKeys;
use crate::queues::registry::{QueueKind, Registration};

/// Where dead letters go.
#[derive(Debug, Clone)]
enum DeadLetterTarget {
    /// `<prefix>:{<name>}:dlq`, like the list brokers.
    Default,
    /// A list the user named.
    List(String),
    /// Nowhere: logged and dropped.
    Off,
}

/// Settings of a [`PubSubBroker`]; [`subscribe`](Self::subscribe) starts it.
///
/// Made by [`PubSubBroker::builder`]. At least one channel or pattern is required.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `subscribe` is awaited"]
pub struct PubSubBuilder {
    conn: RedisConnection,
    channels: Vec<String>,
    patterns: Vec<String>,
    name: Option<String>,
    capacity: usize,
    overflow: Overflow,
    dead_letters: DeadLetterTarget,
    dead_letter_cap: usize,
    ping_interval: Duration,
}

impl PubSubBuilder {
    /// The defaults, on `conn`'s server (see [`PubSubBroker::builder`]).
    pub(super) fn new(conn: &RedisConnection) -> Self {
        Self {
            conn: conn.clone(),
            channels: Vec::new(),
            patterns: Vec::new(),
            name: None,
            capacity: PubSubBroker::DEFAULT_CAPACITY,
            overflow: Overflow::default(),
            dead_letters: DeadLetterTarget::Default,
            dead_letter_cap: DEFAULT_DEAD_LETTER_CAP,
            ping_interval: PubSubBroker::DEFAULT_PING_INTERVAL,
        }
    }

    /// Subscribes to the channel `name` (`SUBSCRIBE`; `SSUBSCRIBE` on a Redis Cluster).
    pub fn channel(mut self, name: impl Into<String>) -> Self {
        self.channels.push(name.into());
        self
    }

    /// Subscribes to every channel in `names`.
    pub fn channels<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.channels.extend(names.into_iter().map(Into::into));
        self
    }

    /// Subscribes to the channels matching the glob-style `pattern` (`PSUBSCRIBE`, e.g.
    /// `orders.*`). A message on a channel matched by several subscriptions of one broker (a
    /// channel and a pattern, or two patterns) is delivered once per match, as Redis sends it.
    ///
    /// Not on a Redis Cluster: sharded pub/sub has no pattern form, and
    /// [`subscribe`](Self::subscribe) fails with a [`BrokerErrorKind::Config`](pythia_core::BrokerErrorKind::Config) error.
    pub fn pattern(mut self, pattern: impl Into<String>) -> Self {
        self.patterns.push(pattern.into());
        self
    }

    /// Subscribes to every pattern in `patterns`.
    pub fn patterns<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.patterns.extend(patterns.into_iter().map(Into::into));
        self
    }

    /// The broker's name, used as the `queue` label of metrics, in logs, and in the default
    /// dead-letter key. Defaults to the channels and patterns joined by `,`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// How many messages the broker holds in process at most: buffered and waiting for a
    /// retry together (at least 1; default [`PubSubBroker::DEFAULT_CAPACITY`]). Memory is about
    /// this many payloads.
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// What to drop when the buffer is full (default [`Overflow::DropOldest`]).
    pub fn with_overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Pushes dead letters onto the list `key` instead of the default
    /// `<prefix>:{<name>}:dlq`.
    pub fn with_dead_letter_list(mut self, key: impl Into<String>) -> Self {
        self.dead_letters = DeadLetterTarget::List(key.into());
        self
    }

    /// Keeps no dead letters: a message that is rejected or out of attempts is logged (at
    /// `warn`, with its id and the reason) and dropped.
    pub fn without_dead_letter_list(mut self) -> Self {
        self.dead_letters = DeadLetterTarget::Off;
        self
    }

    /// How many dead letters the list keeps (0 = no cap, the default: every dead letter is kept until replayed or purged). A cap
    /// trims the oldest; what it trims is counted in `pythia_dead_letters_trimmed_total` and
    /// logged.
    pub fn with_dead_letter_cap(mut self, cap: usize) -> Self {
        self.dead_letter_cap = cap;
        self
    }

    /// How often the subscribed connection is pinged (50 ms to 60 s; default
    /// [`PubSubBroker::DEFAULT_PING_INTERVAL`]). A `PING` not answered within the
    /// configuration's response timeout counts as a lost connection, so a server that stalls
    /// or a network path that silently dies is noticed, not waited on forever. On a Redis
    /// Cluster each tick sends `ROLE` instead, to the node of every slot the channels live in
    /// (it also tells whether the subscription sits on the right node).
    pub fn with_ping_interval(mut self, every: Duration) -> Self {
        self.ping_interval = every.clamp(Duration::from_millis(50), Duration::from_secs(60));
        self
    }

    /// Opens the pub/sub connection, subscribes, and returns the broker once Redis has
    /// confirmed every subscription: a message published after this returns is delivered.
    ///
    /// Fails with a [`BrokerErrorKind::Config`](pythia_core::BrokerErrorKind::Config) error when there is no channel or pattern (or
    /// an empty one) or when a pattern is given on a Redis Cluster, and with the connection's
    /// error when Redis is unreachable or refuses a subscription (an ACL without the channel).
    /// After this first success the broker keeps itself subscribed.
    pub async fn subscribe(self) -> Result<PubSubBroker, BrokerError> {
        if self.channels.is_empty() && self.patterns.is_empty() {
            return Err(BrokerError::config(
                "a pub/sub broker needs at least one channel or pattern",
            ));
        }
        if self
            .channels
            .iter()
            .chain(&self.patterns)
            .any(String::is_empty)
        {
            return Err(BrokerError::config(
                "pub/sub channel and pattern names must not be empty",
            ));
        }
        let sharded = self.conn.is_cluster();
        if sharded && !self.patterns.is_empty() {
            return Err(BrokerError::config(format!(
                "pub/sub patterns {:?} cannot be subscribed on a Redis Cluster: Pythia uses \
                 sharded pub/sub there (SSUBSCRIBE), which has no pattern form; subscribe to \
                 the channels by name",
                self.patterns
            )));
        }
        let name = self.name.clone().unwrap_or_else(|| {
            let all: Vec<&str> = self
                .channels
                .iter()
                .chain(&self.patterns)
                .map(String::as_str)
                .collect();
            all.join(",")
        });
        let dead_letters = match &self.dead_letters {
            DeadLetterTarget::Default => {
                Some(QueueKeys::new(self.conn.config().key_prefix(), &name).dead_letters())
            }
            DeadLetterTarget::List(key) => Some(key.clone()),
            DeadLetterTarget::Off => None,
        };
        let source = Source::new("pubsub", name.as_str());
        let shared = Arc::new(Shared::new(&name, self.capacity, self.overflow));
        let stop = CancellationToken::new();
        let subscriber = Subscriber {
            shared: Arc::clone(&shared),
            conn: self.conn.clone(),
            channels: self.channels.clone(),
            patterns: self.patterns.clone(),
            name: name.clone(),
            ping_interval: self.ping_interval,
            ping_timeout: self.conn.config().response_timeout(),
            stop: stop.clone(),
            sources: SourceCache::default(),
            sharded,
        };
        // The subscription's name is what its dead letters and counters are kept under.
        Registration::broker(&self.conn, &name, QueueKind::Pubsub)
            .ensure(&self.conn)
            .await;
        let first = subscriber.open().await?;
        shared.connected.store(true, Ordering::Release);
        let task = tokio::spawn(subscriber.run(first));
        tracing::debug!(
            subscription = %name,
            channels = ?self.channels,
            patterns = ?self.patterns,
            sharded,
            "pub/sub subscribed"
        );
        Ok(PubSubBroker {
            shared,
            source,
            sharded,
            conn: self.conn,
            channels: self.channels,
            patterns: self.patterns,
            dead_letters,
            dead_letter_cap: DeadLetterCap::new(&name).with_cap(self.dead_letter_cap),
            stop,
            task: Mutex::new(Some(task)),
        })
    }
}

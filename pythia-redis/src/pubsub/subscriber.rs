//! The task that keeps a subscription alive: (re)subscribing with backoff, reading chunks into
//! the buffer outside tokio's budget, the liveness PING, and the source of each message.

use super::*;

/// Remembers the [`Source`] of each (channel, pattern) seen, so a message costs no allocation
/// for its source name.
#[derive(Default)]
pub(super) struct SourceCache {
    pub(super) channels: HashMap<String, Source>,
    pub(super) patterns: HashMap<String, HashMap<String, Source>>,
    pub(super) len: usize,
}

impl SourceCache {
    pub(super) fn source_of(&mut self, msg: &redis::Msg) -> Source {
        let channel: Cow<'_, str> = match msg.get_channel_name() {
            // Not UTF-8 (or literally "?"): take it lossily.
            "?" => Cow::Owned(
                String::from_utf8_lossy(&msg.get_channel::<Vec<u8>>().unwrap_or_default())
                    .into_owned(),
            ),
            name => Cow::Borrowed(name),
        };
        let pattern = msg
            .get_pattern::<Option<Vec<u8>>>()
            .ok()
            .flatten()
            .map(|p| String::from_utf8_lossy(&p).into_owned());
        self.lookup(channel, pattern)
    }

    /// The source of a sharded message (a channel, never a pattern).
    pub(super) fn source_of_channel(&mut self, channel: &[u8]) -> Source {
        self.lookup(String::from_utf8_lossy(channel), None)
    }

    pub(super) fn lookup(&mut self, channel: Cow<'_, str>, pattern: Option<String>) -> Source {
        if self.len >= SOURCE_CACHE_CAP {
            *self = Self::default();
        }
        let map = match &pattern {
            None => &mut self.channels,
            Some(p) => self.patterns.entry(p.clone()).or_default(),
        };
        if let Some(s) = map.get(channel.as_ref()) {
            return s.clone();
        }
        let mut source = Source::new("pubsub", channel.as_ref());
        if let Some(p) = pattern {
            source = source.with_pattern(p);
        }
        map.insert(channel.into_owned(), source.clone());
        self.len += 1;
        source
    }
}

/// A live subscription: a pub/sub connection to one server, or sharded pub/sub on a cluster.
pub(super) enum Link {
    Classic(redis::aio::PubSub),
    Sharded(ShardedLink),
}

/// The task that keeps the subscription alive and fills the buffer.
pub(super) struct Subscriber {
    pub(super) shared: Arc<Shared>,
    pub(super) conn: RedisConnection,
    pub(super) channels: Vec<String>,
    pub(super) patterns: Vec<String>,
    pub(super) name: String,
    pub(super) ping_interval: Duration,
    pub(super) ping_timeout: Duration,
    pub(super) stop: CancellationToken,
    pub(super) sources: SourceCache,
    /// On a cluster: `SSUBSCRIBE` through a cluster connection.
    pub(super) sharded: bool,
}

impl Subscriber {
    /// A new connection with every subscription confirmed.
    pub(super) async fn open(&self) -> Result<Link, BrokerError> {
        if self.sharded {
            ShardedLink::open(&self.conn, &self.channels, self.ping_timeout)
                .await
                .map(Link::Sharded)
        } else {
            self.open_classic().await.map(Link::Classic)
        }
    }

    pub(super) async fn open_classic(&self) -> Result<redis::aio::PubSub, BrokerError> {
        let mut pubsub = self.conn.pubsub().await?;
        let limit = self.ping_timeout;
        let timed_out = |what: &str| {
            BrokerError::connection(format!(
                "Redis {what} failed ({}): no reply within {limit:?}",
                self.conn.config().masked_url()
            ))
        };
        if !self.channels.is_empty() {
            tokio::time::timeout(limit, pubsub.subscribe(&self.channels))
                .await
                .map_err(|_| timed_out("SUBSCRIBE"))?
                .map_err(|e| self.conn.error("SUBSCRIBE", e))?;
        }
        if !self.patterns.is_empty() {
            tokio::time::timeout(limit, pubsub.psubscribe(&self.patterns))
                .await
                .map_err(|_| timed_out("PSUBSCRIBE"))?
                .map_err(|e| self.conn.error("PSUBSCRIBE", e))?;
        }
        Ok(pubsub)
    }

    pub(super) async fn run(mut self, first: Link) {
        let mut next = Some(first);
        let mut backoff = reconnect_backoff();
        let mut lost_at: Option<Instant> = None;
        loop {
            let link = match next.take() {
                Some(p) => p,
                None => match self.stop.run_until_cancelled(self.open()).await {
                    None => return,
                    Some(Ok(p)) => p,
                    Some(Err(e)) => {
                        let delay = backoff.next().unwrap_or(RECONNECT_MAX_DELAY);
                        if e.kind() == BrokerErrorKind::Connection {
                            tracing::debug!(subscription = %self.name, error = %e, retry_in = ?delay, "pub/sub resubscribe failed");
                        } else {
                            // Not an outage but a refusal (ACL, config): say so every time.
                            tracing::warn!(subscription = %self.name, error = %e, retry_in = ?delay, "pub/sub resubscribe refused");
                        }
                        if !self.pause(delay).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            if let Some(at) = lost_at.take() {
                self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                self.shared.reconnects_metric.increment(1);
                tracing::info!(
                    subscription = %self.name,
                    gap = ?at.elapsed(),
                    "pub/sub resubscribed; messages published during the gap were not received"
                );
            }
            self.shared.set_connected();
            let up = Instant::now();
            let lost = match link {
                Link::Classic(pubsub) => self.read(pubsub).await,
                Link::Sharded(link) => self.read_sharded(link).await,
            };
            let Some(why) = lost else {
                return; // stopped
            };
            self.shared.set_lost();
            lost_at = Some(Instant::now());
            tracing::warn!(
                subscription = %self.name,
                url = %self.conn.config().masked_url(),
                reason = %why,
                "pub/sub connection lost; resubscribing"
            );
            if up.elapsed() >= STABLE_UPTIME {
                backoff = reconnect_backoff();
            } else if !self
                .pause(backoff.next().unwrap_or(RECONNECT_MAX_DELAY))
                .await
            {
                return;
            }
        }
    }

    /// Sleeps `d`; false when stopped meanwhile.
    pub(super) async fn pause(&self, d: Duration) -> bool {
        self.stop
            .run_until_cancelled(tokio::time::sleep(d))
            .await
            .is_some()
    }

    /// Reads the subscription into the buffer until the connection is lost (returns why) or
    /// the broker stops (returns `None`).
    pub(super) async fn read(&mut self, pubsub: redis::aio::PubSub) -> Option<String> {
        let (sink, stream) = pubsub.split();
        let mut stream = stream.ready_chunks(READ_CHUNK);
        let mut ticker =
            tokio::time::interval_at(Instant::now() + self.ping_interval, self.ping_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ping: Option<futures_util::future::BoxFuture<'static, Result<(), String>>> = None;
        let stop = self.stop.clone();
        // Chunks taken since this task last gave way to others.
        let mut turn = 0;
        loop {
            if turn >= CHUNKS_PER_TURN {
                turn = 0;
                tokio::task::yield_now().await;
            }
            tokio::select! {
                () = stop.cancelled() => return None,
                // Unconstrained: tokio's budget would end the task's turn after 128 messages,
                // while the connection task parses a whole socket read per turn into the
                // `redis` crate's unbounded channel, where neither the capacity nor the
                // overflow policy applies. The backlog belongs in the bounded buffer.
                chunk = tokio::task::coop::unconstrained(stream.next()) => match chunk {
                    Some(msgs) => {
                        turn += 1;
                        self.accept(&msgs);
                    }
                    None => return Some("the server closed the connection".to_owned()),
                },
                res = async { ping.as_mut().expect("guarded by is_some").await }, if ping.is_some() => {
                    ping = None;
                    if let Err(why) = res {
                        return Some(why);
                    }
                }
                _ = ticker.tick(), if ping.is_none() => {
                    let mut sink = sink.clone();
                    let limit = self.ping_timeout;
                    ping = Some(Box::pin(async move {
                        match tokio::time::timeout(limit, sink.ping::<redis::Value>()).await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err(e)) => Err(format!("PING failed: {e}")),
                            Err(_) => Err(format!("no reply to PING within {limit:?}")),
                        }
                    }));
                }
            }
        }
    }

    /// [`read`](Self::read) for sharded pub/sub on a cluster: the same buffer, and a `ROLE`
    /// check at the `PING` cadence; see [`sharded`] for what counts as lost.
    pub(super) async fn read_sharded(&mut self, mut link: ShardedLink) -> Option<String> {
        let mut pushes = Vec::with_capacity(READ_CHUNK);
        let mut ticker =
            tokio::time::interval_at(Instant::now() + self.ping_interval, self.ping_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut check: Option<futures_util::future::BoxFuture<'static, Result<(), String>>> = None;
        let stop = self.stop.clone();
        loop {
            tokio::select! {
                () = stop.cancelled() => return None,
                open = link.recv(&mut pushes, READ_CHUNK) => {
                    if !open {
                        return Some("the cluster connection closed".to_owned());
                    }
                    if let Some(why) = self.accept_pushes(&mut pushes) {
                        // What the other nodes delivered meanwhile is already here: keep it.
                        link.received_now(&mut pushes, READ_CHUNK * 8);
                        self.accept_pushes(&mut pushes);
                        return Some(why);
                    }
                }
                res = async { check.as_mut().expect("guarded by is_some").await }, if check.is_some() => {
                    check = None;
                    if let Err(why) = res {
                        return Some(why);
                    }
                }
                _ = ticker.tick(), if check.is_none() => {
                    check = Some(link.check(self.ping_timeout));
                }
            }
        }
    }

    /// Buffers the messages among `pushes` (draining it); returns why the subscription is lost
    /// when a push says so.
    pub(super) fn accept_pushes(&mut self, pushes: &mut Vec<redis::PushInfo>) -> Option<String> {
        let now = Instant::now();
        let mut items = Vec::with_capacity(pushes.len());
        let mut lost = None;
        for push in pushes.drain(..) {
            match sharded::classify(push) {
                Event::Message(channel, payload) => items.push(Buffered::Raw(
                    Bytes::from(payload),
                    self.sources.source_of_channel(&channel),
                    now,
                )),
                Event::Lost(why) => {
                    lost.get_or_insert(why);
                }
                Event::Other => {}
            }
        }
        if !items.is_empty() {
            self.shared.push_received(items);
        }
        lost
    }

    pub(super) fn accept(&mut self, msgs: &[redis::Msg]) {
        let now = Instant::now();
        let items: Vec<Buffered> = msgs
            .iter()
            .map(|m| {
                Buffered::Raw(
                    Bytes::copy_from_slice(m.get_payload_bytes()),
                    self.sources.source_of(m),
                    now,
                )
            })
            .collect();
        self.shared.push_received(items);
    }
}

/// Waits between resubscribe attempts: 50 ms doubling to 2 s, each plus up to 100 % jitter, so
/// a returning server is noticed within about 4 s and many subscribers do not reconnect in step.
pub(super) fn reconnect_backoff() -> ExponentialBackoff {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(RECONNECT_MAX_DELAY)
        .with_jitter()
        .without_max_times()
        .build()
}

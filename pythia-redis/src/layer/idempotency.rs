//! [`IdempotencyLayer`]: a duplicate delivery of a message that already completed is acked
//! without running the worker again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use crate::connection::SharedConnection;
use pythia_core::message::unix_millis;
use pythia_core::worker::BoxFuture;
use pythia_core::{BrokerError, Message, WorkerError};
use tower::{Layer, Service};

use crate::call::Call;
use crate::connection::RedisConnection;
use crate::connection::transient_retry::retry_transient;
use crate::keys::QueueKeys;

/// Counter of duplicate deliveries acked without running the worker, labelled `queue` and
/// `broker`.
pub const IDEMPOTENT_SKIPS_TOTAL: &str = "pythia_idempotent_skips_total";

/// Keys longer than this are replaced by their SHA-1, to keep Redis keys short.
const MAX_KEY_LEN: usize = 128;

/// Where a message's idempotency key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdempotencyKey {
    /// The value of this header; a message without it is processed unchecked. The default,
    /// with [`IdempotencyLayer::DEFAULT_HEADER`].
    Header(String),
    /// The SHA-1 of the body: two messages with the same body are the same job.
    BodyHash,
    /// The header if the message has it, else the SHA-1 of the body.
    HeaderOrBodyHash(String),
    /// The message id: redeliveries of one message (and messages a producer sent with the same
    /// id, such as a [`PeriodicJob`](crate::PeriodicJob)'s `<job>:<slot>`) are the same job.
    MessageId,
}

impl Default for IdempotencyKey {
    fn default() -> Self {
        Self::Header(IdempotencyLayer::DEFAULT_HEADER.to_owned())
    }
}

impl IdempotencyKey {
    /// The key of `msg`, if it has one.
    pub fn of(&self, msg: &Message) -> Option<String> {
        let key = match self {
            Self::Header(h) => msg.header(h)?.to_owned(),
            Self::BodyHash => body_hash(msg),
            Self::HeaderOrBodyHash(h) => msg
                .header(h)
                .map(str::to_owned)
                .unwrap_or_else(|| body_hash(msg)),
            Self::MessageId => msg.id().to_owned(),
        };
        if key.is_empty() {
            None
        } else if key.len() > MAX_KEY_LEN {
            Some(format!(
                "sha1:{}",
                sha1_smol::Sha1::from(key.as_bytes()).digest()
            ))
        } else {
            Some(key)
        }
    }
}

fn body_hash(msg: &Message) -> String {
    format!("sha1:{}", sha1_smol::Sha1::from(msg.body()).digest())
}

/// The records of completed messages: `<prefix>:{queue}:done:<key>`, set with `SET NX` and a
/// TTL when a message completes.
///
/// ```no_run
/// use std::time::Duration;
/// use pythia_redis::{IdempotencyStore, RedisConfig, RedisConnection};
/// # async fn f() -> Result<(), pythia_core::BrokerError> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let store = IdempotencyStore::new(&conn).with_ttl(Duration::from_secs(3600));
/// if !store.is_done("payments", "order-17").await? {
///     // ... charge the card ...
///     store.mark_done("payments", "order-17", "msg-1").await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct IdempotencyStore {
    conn: RedisConnection,
    manager: SharedConnection,
    ttl: Duration,
}

impl IdempotencyStore {
    /// Records under the connection's key prefix, kept for
    /// [`IdempotencyLayer::DEFAULT_TTL`].
    pub fn new(conn: &RedisConnection) -> Self {
        Self {
            conn: conn.clone(),
            manager: conn.manager(),
            ttl: IdempotencyLayer::DEFAULT_TTL,
        }
    }

    /// How long a completion is remembered (at least 1 ms): a duplicate arriving later runs
    /// again.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_millis(1));
        self
    }

    /// How long a completion is remembered.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn key(&self, queue: &str, key: &str) -> String {
        QueueKeys::new(self.conn.config().key_prefix(), queue).idempotency(key)
    }

    /// Whether a message with idempotency key `key` completed on `queue` (within the TTL).
    pub async fn is_done(&self, queue: &str, key: &str) -> Result<bool, BrokerError> {
        let k = self.key(queue, key);
        let k = &k;
        retry_transient("check an idempotency record", || async move {
            let mut m = self.manager.clone();
            redis::cmd("EXISTS")
                .arg(k)
                .query_async(&mut m)
                .await
                .map_err(|e| self.conn.error("check an idempotency record", e))
        })
        .await
    }

    /// Records that the message `message_id` with idempotency key `key` completed on `queue`
    /// (`SET NX` with the TTL: the first completion is the one remembered). Returns `false` if
    /// it was recorded already.
    pub async fn mark_done(
        &self,
        queue: &str,
        key: &str,
        message_id: &str,
    ) -> Result<bool, BrokerError> {
        let call = &mark_done_call(
            &self.key(queue, key),
            message_id,
            unix_millis(SystemTime::now()),
            self.ttl,
        );
        let set: Option<String> = retry_transient("record an idempotency key", || async move {
            let mut m = self.manager.clone();
            call.query(&mut m)
                .await
                .map_err(|e| self.conn.error("record an idempotency key", e))
        })
        .await?;
        Ok(set.is_some())
    }

    /// Forgets a completion, so the next message with `key` runs.
    pub async fn forget(&self, queue: &str, key: &str) -> Result<bool, BrokerError> {
        let k = self.key(queue, key);
        let k = &k;
        let n: u64 = retry_transient("delete an idempotency record", || async move {
            let mut m = self.manager.clone();
            redis::cmd("DEL")
                .arg(k)
                .query_async(&mut m)
                .await
                .map_err(|e| self.conn.error("delete an idempotency record", e))
        })
        .await?;
        Ok(n > 0)
    }
}

/// `SET <key> "<message id> <now ms>" NX PX <ttl>`: the first completion is the one kept;
/// replies nil when one was recorded already.
fn mark_done_call(key: &str, message_id: &str, now_ms: u64, ttl: Duration) -> Call {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key)
        .arg(format!("{message_id} {now_ms}"))
        .arg("NX")
        .arg("PX")
        .arg(ttl.as_millis() as u64);
    Call::command(cmd)
}

/// A tower layer that skips messages whose idempotency key already completed.
///
/// # Behaviour
///
/// * The key comes from [`IdempotencyKey`]: by default the `idempotency-key` header. A
///   message without a key is processed as if the layer were not there.
/// * **Before** the worker runs, the layer checks `<prefix>:{queue}:done:<key>`
///   ([`IdempotencyStore`]). If present, the message is a duplicate of one that completed: it
///   is acked without calling the worker, counted in `pythia_idempotent_skips_total{queue,
///   broker}` and in [`skipped`](Self::skipped).
/// * **After** the worker succeeds, the key is recorded with `SET NX` and the TTL (24 h by
///   default). A failed message is not recorded, so its retry runs. If the record cannot be
///   written (Redis unreachable after retries), the success stands and a warning is logged: a
///   later duplicate may then run again.
/// * If the check cannot reach Redis (after retries), the message fails with a retryable
///   error rather than risk running a duplicate: it is retried later.
/// * Two deliveries of the same key running **at the same time** both run (nothing has
///   completed yet); this layer removes duplicates that arrive after completion, which is
///   what at-least-once redelivery and producer retries produce.
///
/// Place it outermost (first [`layer`](pythia_core::WorkerRuntime::layer) call), so a
/// duplicate costs no timeout, retry or breaker slot.
///
/// ```no_run
/// use std::time::Duration;
/// use pythia_core::{Message, Worker, WorkerError, WorkerRuntime};
/// use pythia_redis::{IdempotencyKey, IdempotencyLayer, RedisConfig, RedisConnection, ReliableListBroker};
///
/// struct Charge;
/// impl Worker for Charge {
///     async fn process_message(&self, _msg: &Message) -> Result<(), WorkerError> {
///         Ok(()) // charge the card: must not happen twice
///     }
/// }
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let dedup = IdempotencyLayer::new(&conn)
///     .with_key(IdempotencyKey::HeaderOrBodyHash("idempotency-key".into()))
///     .with_ttl(Duration::from_secs(7 * 24 * 3600));
/// WorkerRuntime::new(ReliableListBroker::new(&conn, "payments"), Charge)
///     .layer(dedup.clone())
///     .run()
///     .await?;
/// println!("{} duplicates skipped", dedup.skipped());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct IdempotencyLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    store: IdempotencyStore,
    key: IdempotencyKey,
    skipped: AtomicU64,
}

impl IdempotencyLayer {
    /// The default header holding the idempotency key: `idempotency-key`.
    pub const DEFAULT_HEADER: &'static str = "idempotency-key";
    /// How long a completion is remembered by default: 24 h.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

    /// A layer keyed by the `idempotency-key` header, remembering completions for 24 h.
    pub fn new(conn: &RedisConnection) -> Self {
        Self::from_parts(IdempotencyStore::new(conn), IdempotencyKey::default())
    }

    fn from_parts(store: IdempotencyStore, key: IdempotencyKey) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                key,
                skipped: AtomicU64::new(0),
            }),
        }
    }

    /// Where the key comes from.
    #[must_use]
    pub fn with_key(self, key: IdempotencyKey) -> Self {
        Self::from_parts(self.shared.store.clone(), key)
    }

    /// How long a completion is remembered.
    #[must_use]
    pub fn with_ttl(self, ttl: Duration) -> Self {
        Self::from_parts(
            self.shared.store.clone().with_ttl(ttl),
            self.shared.key.clone(),
        )
    }

    /// The store of completions.
    pub fn store(&self) -> &IdempotencyStore {
        &self.shared.store
    }

    /// Duplicates skipped by services of this layer (and its clones) so far.
    pub fn skipped(&self) -> u64 {
        self.shared.skipped.load(Ordering::Relaxed)
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = Idempotency<S>;

    fn layer(&self, inner: S) -> Idempotency<S> {
        Idempotency {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service [`IdempotencyLayer`] builds around the handler.
#[derive(Debug, Clone)]
pub struct Idempotency<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Message> for Idempotency<S>
where
    S: Service<Message, Response = (), Error = WorkerError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = WorkerError;
    type Future = BoxFuture<Result<(), WorkerError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WorkerError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, msg: Message) -> Self::Future {
        let Some(key) = self.shared.key.of(&msg) else {
            return Box::pin(self.inner.call(msg));
        };
        // The ready service is the one to call; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let queue = msg.source().name();
            if shared
                .store
                .is_done(queue, &key)
                .await
                .map_err(WorkerError::retry)?
            {
                shared.skipped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(IDEMPOTENT_SKIPS_TOTAL, "queue" => queue.to_owned(), "broker" => msg.source().broker())
                    .increment(1);
                tracing::debug!(
                    id = msg.id(),
                    key,
                    queue,
                    "duplicate of a completed message: acked without running"
                );
                return Ok(());
            }
            inner.call(msg.clone()).await?;
            if let Err(e) = shared.store.mark_done(queue, &key, msg.id()).await {
                tracing::warn!(id = msg.id(), key, queue, error = %e, "could not record a completed message's idempotency key; a duplicate may run again");
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completion_is_recorded_once_with_the_ttl() {
        let key = QueueKeys::new("pythia", "pay").idempotency("order-1");
        assert_eq!(
            mark_done_call(&key, "m1", 7, Duration::from_secs(60)).text(),
            [
                "SET",
                "pythia:{pay}:done:order-1",
                "m1 7",
                "NX",
                "PX",
                "60000"
            ]
        );
    }

    #[test]
    fn keys_come_from_the_header_the_body_or_the_id() {
        let msg = Message::new("pay 10").with_id("m1");
        let with = msg.clone().with_header("idempotency-key", "order-1");
        assert_eq!(IdempotencyKey::default().of(&msg), None);
        assert_eq!(
            IdempotencyKey::default().of(&with).as_deref(),
            Some("order-1")
        );
        let h = IdempotencyKey::BodyHash.of(&msg).unwrap();
        assert_eq!(h, "sha1:47d0e79560c99736ff3300ee9bcff16765ef24a7");
        assert_eq!(
            IdempotencyKey::BodyHash.of(&Message::new("pay 10")),
            Some(h.clone())
        );
        let either = IdempotencyKey::HeaderOrBodyHash("idempotency-key".into());
        assert_eq!(either.of(&with).as_deref(), Some("order-1"));
        assert_eq!(either.of(&msg), Some(h));
        assert_eq!(IdempotencyKey::MessageId.of(&msg).as_deref(), Some("m1"));
        let long = msg.clone().with_header("idempotency-key", "x".repeat(500));
        assert!(
            IdempotencyKey::default()
                .of(&long)
                .unwrap()
                .starts_with("sha1:")
        );
    }
}

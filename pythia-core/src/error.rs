//! Errors you can branch on: what a worker wants done with a failed message
//! ([`WorkerError`]) and what went wrong talking to a broker ([`BrokerError`]).

use std::fmt;
use std::time::Duration;

/// A boxed error, as tower middleware and user code produce.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What kind of failure a [`WorkerError`] is, and so what the runtime does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerErrorKind {
    /// A transient failure: retry with the configured backoff.
    Retry,
    /// A transient failure with a known wait: retry after exactly this delay
    /// ([`WorkerError::retry_later`]).
    RetryAfter(Duration),
    /// The downstream the handler calls is rate-limiting it: pause the whole queue's fetching
    /// for this long and deliver the message again after it ([`WorkerError::rate_limited`]).
    RateLimited(Duration),
    /// A poison message: never retry, dead-letter it now.
    Reject,
    /// The handler overran its deadline and was cancelled; retried like [`Retry`](Self::Retry).
    Timeout,
    /// The handler panicked; retried like [`Retry`](Self::Retry) (a panic may be transient, and
    /// after `max_attempts` the message is dead-lettered with the panic text).
    Panic,
}

/// The error a [`Worker`](crate::Worker) returns: it carries the handler's intent.
///
/// `?` on any error type converts it into a retryable `WorkerError` (a transient failure is the
/// safe default). Say otherwise explicitly:
///
/// ```
/// use std::time::Duration;
/// use pythia_core::{WorkerError, WorkerErrorKind};
///
/// let transient = WorkerError::retry("database busy");
/// let rate_limited = WorkerError::retry_later(Duration::from_secs(5), "429 from the API");
/// let poison = WorkerError::reject("body is not an order");
/// assert!(transient.is_retryable() && rate_limited.is_retryable());
/// assert!(!poison.is_retryable());
/// assert_eq!(rate_limited.retry_after(), Some(Duration::from_secs(5)));
/// assert_eq!(poison.kind(), WorkerErrorKind::Reject);
/// ```
///
/// Like `anyhow::Error`, `WorkerError` does not itself implement `std::error::Error`, so that
/// `From<E: Error>` can exist; [`WorkerError::source_error`] gives the cause.
pub struct WorkerError {
    kind: WorkerErrorKind,
    source: BoxError,
}

#[derive(Debug)]
struct Plain(String);
impl fmt::Display for Plain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Plain {}

fn boxed(e: impl Into<BoxError>) -> BoxError {
    e.into()
}

impl WorkerError {
    /// A transient failure: the message is retried with backoff.
    pub fn retry(cause: impl Into<BoxError>) -> Self {
        Self::new(WorkerErrorKind::Retry, cause)
    }

    /// A transient failure: the message is retried after `delay`.
    pub fn retry_later(delay: Duration, cause: impl Into<BoxError>) -> Self {
        Self::new(WorkerErrorKind::RetryAfter(delay), cause)
    }

    /// The downstream is rate-limiting the handler: the queue backs off for `pause`.
    ///
    /// The runtime tells the broker ([`Broker::throttle`]). A broker that throttles (a Redis
    /// broker behind `pythia_redis::QueueGate` stops fetching on every replica) gets the
    /// message back with no attempt counted (it is fetched again once the pause is over); any
    /// other broker schedules it as a retry after `pause`, counting an attempt, like
    /// [`retry_later`](Self::retry_later).
    ///
    /// Never retried in-process by [`InProcessRetry`](crate::InProcessRetry): waiting inside the
    /// handler would keep hitting the limited downstream from the other slots.
    ///
    /// [`Broker::throttle`]: crate::Broker::throttle
    pub fn rate_limited(pause: Duration, cause: impl Into<BoxError>) -> Self {
        Self::new(WorkerErrorKind::RateLimited(pause), cause)
    }

    /// How long the handler asked the queue to back off, for a
    /// [`rate_limited`](Self::rate_limited) error.
    pub fn throttle(&self) -> Option<Duration> {
        match self.kind {
            WorkerErrorKind::RateLimited(d) => Some(d),
            _ => None,
        }
    }

    /// A poison message: no retry, straight to the dead-letter queue.
    pub fn reject(cause: impl Into<BoxError>) -> Self {
        Self::new(WorkerErrorKind::Reject, cause)
    }

    /// The handler overran `limit`.
    pub fn timeout(limit: Duration) -> Self {
        Self::new(
            WorkerErrorKind::Timeout,
            Plain(format!("handler timed out after {limit:?}")),
        )
    }

    /// The handler panicked with `message`.
    pub fn panic(message: impl Into<String>) -> Self {
        Self::new(
            WorkerErrorKind::Panic,
            Plain(format!("handler panicked: {}", message.into())),
        )
    }

    /// An error of `kind` caused by `cause`.
    pub fn new(kind: WorkerErrorKind, cause: impl Into<BoxError>) -> Self {
        Self {
            kind,
            source: boxed(cause),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> WorkerErrorKind {
        self.kind
    }

    /// Whether the runtime may retry the message (everything but [`WorkerErrorKind::Reject`]).
    pub fn is_retryable(&self) -> bool {
        !matches!(self.kind, WorkerErrorKind::Reject)
    }

    /// The delay the handler asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            WorkerErrorKind::RetryAfter(d) | WorkerErrorKind::RateLimited(d) => Some(d),
            _ => None,
        }
    }

    /// The underlying cause.
    pub fn source_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }

    /// Turns the error into its boxed cause.
    pub fn into_source(self) -> BoxError {
        self.source
    }

    /// An `anyhow::Error` as a `WorkerError`, as [`from_boxed`](Self::from_boxed) does: one
    /// made from a `WorkerError` keeps its kind, anything else is retried.
    ///
    /// `anyhow::Error` is not a standard error, so `?` cannot convert it; write
    /// `.map_err(WorkerError::from_anyhow)?`.
    #[cfg(feature = "anyhow")]
    pub fn from_anyhow(e: anyhow::Error) -> Self {
        match e.downcast::<KindedError>() {
            Ok(k) => Self {
                kind: k.kind,
                source: k.source,
            },
            Err(e) => Self::from_boxed(e.into()),
        }
    }

    /// A boxed error as a `WorkerError`: one that was a `WorkerError` (boxed by
    /// `From<WorkerError> for BoxError`, also inside an `anyhow::Error`) gets its kind back;
    /// tower's `timeout` error is a [`Timeout`](WorkerErrorKind::Timeout); anything else, tower's
    /// `load_shed` refusal included, is a transient failure to [`retry`](Self::retry).
    ///
    /// ```
    /// use pythia_core::{BoxError, WorkerError, WorkerErrorKind};
    ///
    /// let boxed: BoxError = WorkerError::reject("not an order").into();
    /// let back = WorkerError::from_boxed(boxed);
    /// assert_eq!(back.kind(), WorkerErrorKind::Reject);
    /// assert_eq!(back.to_string(), "not an order");
    /// assert!(WorkerError::from_boxed("timed out somewhere".into()).is_retryable());
    /// ```
    pub fn from_boxed(e: BoxError) -> Self {
        match e.downcast::<KindedError>() {
            Ok(k) => Self {
                kind: k.kind,
                source: k.source,
            },
            Err(e) if e.is::<tower::timeout::error::Elapsed>() => {
                Self::new(WorkerErrorKind::Timeout, e)
            }
            Err(e) => Self::retry(e),
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for WorkerError {
    fn from(e: E) -> Self {
        Self::retry(e)
    }
}

impl fmt::Display for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)?;
        let mut cause = self.source.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl fmt::Debug for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerError")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

/// A [`WorkerError`] as a standard error inside a [`BoxError`] (see `From<WorkerError> for
/// BoxError`): it keeps the kind, which [`WorkerError::from_boxed`] restores.
#[derive(Debug)]
struct KindedError {
    kind: WorkerErrorKind,
    source: BoxError,
}

impl fmt::Display for KindedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl std::error::Error for KindedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.source()
    }
}

/// A `WorkerError` into a [`BoxError`], so that tower's stock layers (`timeout`, `load_shed`,
/// `ConcurrencyLimit`…), which need `Error: Into<BoxError>`, wrap a Pythia handler stack; the
/// kind travels inside and [`WorkerError::from_boxed`] gets it back.
impl From<WorkerError> for BoxError {
    fn from(e: WorkerError) -> Self {
        Box::new(KindedError {
            kind: e.kind,
            source: e.source,
        })
    }
}

/// `?` on a `WorkerError` in a function that returns `anyhow::Result`: the kind travels inside
/// and [`WorkerError::from_anyhow`] gets it back.
#[cfg(feature = "anyhow")]
impl From<WorkerError> for anyhow::Error {
    fn from(e: WorkerError) -> Self {
        anyhow::Error::new(KindedError {
            kind: e.kind,
            source: e.source,
        })
    }
}

/// The error types a layer's service may return to the runtime (see
/// [`WorkerRuntime::layer`](crate::WorkerRuntime::layer)): [`WorkerError`] itself, or the
/// [`BoxError`] of tower's stock layers. Sealed.
pub trait IntoWorkerError: sealed::Sealed + Send + 'static {
    /// The error as the runtime handles it.
    fn into_worker_error(self) -> WorkerError;
}

impl IntoWorkerError for WorkerError {
    fn into_worker_error(self) -> WorkerError {
        self
    }
}

impl IntoWorkerError for BoxError {
    fn into_worker_error(self) -> WorkerError {
        WorkerError::from_boxed(self)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::WorkerError {}
    impl Sealed for super::BoxError {}
}

/// A message body that is not what the handler expected: not UTF-8 ([`Message::body_str`]) or
/// not the expected JSON ([`Message::json`]).
///
/// Decoding a body never succeeds on a second try, so `?` turns it into a **rejecting**
/// [`WorkerError`] (dead-lettered now, with the reason; no retries), where `?` on any other error
/// retries. `BodyError` deliberately does not implement `std::error::Error` (that would make `?`
/// pick the retrying conversion); it converts into a [`BoxError`] for code that wants one
/// (`anyhow`: `.map_err(|e| anyhow::anyhow!(e))`).
///
/// ```
/// use pythia_core::{Message, WorkerError, WorkerErrorKind};
///
/// fn handle(msg: &Message) -> Result<u32, WorkerError> {
///     #[derive(serde::Deserialize)]
///     struct Job { user: u32 }
///     let job: Job = msg.json()?; // not the expected JSON: rejected, never retried
///     Ok(job.user)
/// }
/// assert_eq!(handle(&Message::new(r#"{"user": 7}"#)).unwrap(), 7);
/// let e = handle(&Message::new("not json")).unwrap_err();
/// assert_eq!(e.kind(), WorkerErrorKind::Reject);
/// assert!(e.to_string().starts_with("body is not the expected JSON"));
/// ```
///
/// [`Message::body_str`]: crate::Message::body_str
/// [`Message::json`]: crate::Message::json
#[derive(Debug)]
pub struct BodyError(BodyDecodeError);

impl BodyError {
    /// A body that is not the expected JSON.
    pub fn json(e: serde_json::Error) -> Self {
        Self(BodyDecodeError {
            what: "body is not the expected JSON",
            source: Box::new(e),
        })
    }

    /// A body that is not UTF-8 text.
    pub fn utf8(e: std::str::Utf8Error) -> Self {
        Self(BodyDecodeError {
            what: "body is not UTF-8 text",
            source: Box::new(e),
        })
    }

    /// The decoder's own error (`serde_json::Error`, `Utf8Error`).
    pub fn source_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0.source
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<BodyError> for WorkerError {
    fn from(e: BodyError) -> Self {
        WorkerError::reject(e.0)
    }
}

impl From<BodyError> for BoxError {
    fn from(e: BodyError) -> Self {
        Box::new(e.0)
    }
}

/// The error inside a [`BodyError`], as a standard error.
#[derive(Debug)]
struct BodyDecodeError {
    what: &'static str,
    source: BoxError,
}

impl fmt::Display for BodyDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl std::error::Error for BodyDecodeError {}

/// What went wrong in a broker, in a form the runtime can branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokerErrorKind {
    /// The connection to the backend failed or dropped; retrying after a backoff may succeed.
    Connection,
    /// The backend answered with an error that a retry will not fix (wrong key type, missing
    /// permission, script error).
    Backend,
    /// The configuration is invalid (bad URL, bad queue name).
    Config,
    /// The broker was closed.
    Closed,
}

/// An error from a [`Broker`](crate::Broker).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BrokerError {
    kind: BrokerErrorKind,
    message: String,
    #[source]
    source: Option<BoxError>,
}

impl BrokerError {
    /// An error of `kind` described by `message`.
    pub fn new(kind: BrokerErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The same error with an underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// A connection error.
    pub fn connection(message: impl Into<String>) -> Self {
        Self::new(BrokerErrorKind::Connection, message)
    }

    /// A configuration error.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(BrokerErrorKind::Config, message)
    }

    /// A backend error that a retry will not fix.
    pub fn backend(message: impl Into<String>) -> Self {
        Self::new(BrokerErrorKind::Backend, message)
    }

    /// What kind of error this is.
    pub fn kind(&self) -> BrokerErrorKind {
        self.kind
    }

    /// Whether retrying the operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, BrokerErrorKind::Connection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_mark_gives_a_retryable_error() {
        fn parse() -> Result<u32, WorkerError> {
            Ok("x".parse::<u32>()?)
        }
        let e = parse().unwrap_err();
        assert!(e.is_retryable());
        assert_eq!(e.kind(), WorkerErrorKind::Retry);
        assert!(e.to_string().contains("invalid digit"));
    }

    #[test]
    fn display_includes_the_cause_chain() {
        let inner = BrokerError::connection("connection refused");
        let outer = BrokerError::backend("fetch failed").with_source(inner);
        let e = WorkerError::reject(outer);
        assert_eq!(e.to_string(), "fetch failed: connection refused");
    }
}

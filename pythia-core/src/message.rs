//! The unit of work: [`Message`], its [`Headers`] and where it came from ([`Source`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::BodyError;
use crate::extensions::Extensions;

/// Message headers: string keys to string values, ordered for stable output.
pub type Headers = BTreeMap<String, String>;

/// Where a message came from: the broker kind and the queue, stream or channel name.
///
/// The name is shared (`Arc<str>`) by every message of one queue, so carrying it costs no
/// allocation per message.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Source {
    broker: &'static str,
    name: Arc<str>,
    pattern: Option<Arc<str>>,
}

impl Source {
    /// A source named `name` (a list key, stream key or channel) of the broker kind `broker`
    /// (`"list"`, `"reliable-list"`, `"stream"`, `"pubsub"`, `"memory"`).
    pub fn new(broker: &'static str, name: impl Into<Arc<str>>) -> Self {
        Self {
            broker,
            name: name.into(),
            pattern: None,
        }
    }

    /// The same source, with the pub/sub pattern that matched the channel.
    #[must_use]
    pub fn with_pattern(mut self, pattern: impl Into<Arc<str>>) -> Self {
        self.pattern = Some(pattern.into());
        self
    }

    /// The broker kind, e.g. `"stream"`.
    pub fn broker(&self) -> &'static str {
        self.broker
    }

    /// The queue, stream or channel name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The shared queue name, cheap to clone.
    pub fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    /// The pub/sub pattern that matched, when the message came through `PSUBSCRIBE`.
    pub fn pattern(&self) -> Option<&str> {
        self.pattern.as_deref()
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pattern {
            Some(p) => write!(f, "{}:{} (pattern {p})", self.broker, self.name),
            None => write!(f, "{}:{}", self.broker, self.name),
        }
    }
}

impl Default for Source {
    fn default() -> Self {
        Self::new("memory", "default")
    }
}

#[derive(Clone)]
struct MessageInner {
    /// Set by the producer or the broker, or generated on first read: most handlers never ask
    /// for the id of a raw item, so it costs nothing until they do.
    id: OnceLock<String>,
    body: Bytes,
    /// `None` for no headers, the common case: an empty map costs a walk to drop, once per
    /// message.
    headers: Option<Headers>,
    attempt: u32,
    enqueued_at: Option<SystemTime>,
    source: Source,
    /// Empty (no allocation) unless an observer or a layer attached something.
    extensions: Extensions,
}

/// One message handed to [`Worker::process_message`](crate::Worker::process_message).
///
/// A message is immutable once built and cheap to clone (one reference count), so the runtime
/// can keep a copy for settling while the worker reads it.
///
/// * `id` — the producer's id from the envelope, the stream entry id, or one generated on
///   receipt for raw items.
/// * `body` — raw bytes; [`Message::json`] decodes typed bodies, [`Message::body_str`] reads text.
/// * `attempt` — 1 on the first delivery, 2 on the first retry, and so on.
/// * `enqueued_at` — when the producer wrote it, when the envelope says so.
///
/// ```
/// use pythia_core::Message;
///
/// let msg = Message::new(r#"{"user": 7}"#).with_header("tenant", "acme");
/// #[derive(serde::Deserialize)]
/// struct Job { user: u32 }
/// assert_eq!(msg.json::<Job>().unwrap().user, 7);
/// assert_eq!(msg.header("tenant"), Some("acme"));
/// assert_eq!(msg.attempt(), 1);
/// ```
#[derive(Clone)]
pub struct Message {
    inner: Arc<MessageInner>,
}

impl Message {
    /// A new message with a fresh id, attempt 1, no headers, enqueued now.
    pub fn new(body: impl Into<Bytes>) -> Self {
        let now = SystemTime::now();
        let mut msg = Self::from_parts(body.into(), Some(now), Source::default());
        // A producer's message always goes out with its id: make it now, not lazily. Its time
        // is the enqueue time's own, so that the envelope need not repeat it.
        let inner = Arc::get_mut(&mut msg.inner).expect("just made");
        inner.id = OnceLock::from(message_id_at(now));
        msg
    }

    /// A message as a broker received it: a fresh id (made on first read), attempt 1, no
    /// headers. Cheaper than [`Message::new`] followed by `with_*` calls.
    pub fn from_parts(body: Bytes, enqueued_at: Option<SystemTime>, source: Source) -> Self {
        Self {
            inner: Arc::new(MessageInner {
                id: OnceLock::new(),
                body,
                headers: None,
                attempt: 1,
                enqueued_at,
                source,
                extensions: Extensions::default(),
            }),
        }
    }

    fn inner_mut(&mut self) -> &mut MessageInner {
        // Fix the id before a copy is made, so that every copy keeps the same id.
        self.inner.id.get_or_init(new_message_id);
        Arc::make_mut(&mut self.inner)
    }

    /// The same message with id `id`.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        let id = id.into();
        let inner = Arc::make_mut(&mut self.inner);
        inner.id = OnceLock::from(id);
        self
    }

    /// The same message with header `key` set to `value`.
    #[must_use]
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.inner_mut()
            .headers
            .get_or_insert_default()
            .insert(key.into(), value.into());
        self
    }

    /// The same message with all of `headers` (replacing any it had).
    #[must_use]
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.inner_mut().headers = (!headers.is_empty()).then_some(headers);
        self
    }

    /// The same message with attempt number `attempt` (at least 1).
    #[must_use]
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.inner_mut().attempt = attempt.max(1);
        self
    }

    /// The same message with the given enqueue time (`None` when unknown).
    #[must_use]
    pub fn with_enqueued_at(mut self, at: Option<SystemTime>) -> Self {
        self.inner_mut().enqueued_at = at;
        self
    }

    /// The same message with the given source.
    #[must_use]
    pub fn with_source(mut self, source: Source) -> Self {
        self.inner_mut().source = source;
        self
    }

    /// The same message with `value` attached (see [`Extensions`]).
    #[must_use]
    pub fn with_extension<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.insert_extension(value);
        self
    }

    /// Attaches `value` to this copy of the message (see [`Extensions`]): copies made before
    /// do not see it, copies made after do.
    pub fn insert_extension<T: Send + Sync + 'static>(&mut self, value: T) {
        self.inner_mut().extensions.insert(value);
    }

    /// The value of type `T` attached to the message, if any (see [`Extensions`]).
    pub fn extension<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.inner.extensions.get()
    }

    /// Everything attached to the message.
    pub fn extensions(&self) -> &Extensions {
        &self.inner.extensions
    }

    /// The message id.
    pub fn id(&self) -> &str {
        self.inner.id.get_or_init(new_message_id)
    }

    /// The raw body.
    pub fn body(&self) -> &Bytes {
        &self.inner.body
    }

    /// The body as UTF-8 text, or an error naming the first invalid byte. `?` on that error in a
    /// handler rejects the message (see [`BodyError`]).
    pub fn body_str(&self) -> Result<&str, BodyError> {
        std::str::from_utf8(&self.inner.body).map_err(BodyError::utf8)
    }

    /// Decodes the body as JSON into `T`. `?` on the error in a handler rejects the message
    /// (dead-lettered now, not retried: see [`BodyError`]).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, BodyError> {
        serde_json::from_slice(&self.inner.body).map_err(BodyError::json)
    }

    /// All headers.
    pub fn headers(&self) -> &Headers {
        static NONE: Headers = Headers::new();
        self.inner.headers.as_ref().unwrap_or(&NONE)
    }

    /// One header's value.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers().get(key).map(String::as_str)
    }

    /// 1 on the first delivery, 2 on the first retry, and so on.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// When the producer enqueued the message, if known.
    pub fn enqueued_at(&self) -> Option<SystemTime> {
        self.inner.enqueued_at
    }

    /// Time from enqueue to now, if the enqueue time is known and not in the future.
    pub fn age(&self) -> Option<Duration> {
        self.inner
            .enqueued_at
            .and_then(|at| SystemTime::now().duration_since(at).ok())
    }

    /// Where the message came from.
    pub fn source(&self) -> &Source {
        &self.inner.source
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Bodies can be large or secret: show the size, not the bytes.
        f.debug_struct("Message")
            .field("id", &self.id())
            .field("body_len", &self.inner.body.len())
            .field("headers", self.headers())
            .field("attempt", &self.inner.attempt)
            .field("enqueued_at", &self.inner.enqueued_at.map(unix_millis))
            .field("source", &self.inner.source)
            .finish()
    }
}

/// Milliseconds since the Unix epoch (0 for times before it).
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A fresh message id: 12 hex digits of milliseconds since the epoch, then 16 random hex
/// digits. Ids sort by creation time and collide with probability 2⁻⁶⁴ within a millisecond.
pub fn new_message_id() -> String {
    message_id_at(SystemTime::now())
}

/// The length of an id made by [`new_message_id`].
const ID_LEN: usize = 28;
/// Its leading hex digits that hold the milliseconds.
const ID_TIME_DIGITS: usize = 12;

/// A fresh message id carrying the time `t`.
fn message_id_at(t: SystemTime) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let ms = unix_millis(t) & 0xffff_ffff_ffff;
    let rnd = fastrand::u64(..);
    let mut id = [0u8; ID_LEN];
    for (i, b) in id[..ID_TIME_DIGITS].iter_mut().enumerate() {
        *b = HEX[((ms >> (4 * (ID_TIME_DIGITS - 1 - i))) & 0xf) as usize];
    }
    for (i, b) in id[ID_TIME_DIGITS..].iter_mut().enumerate() {
        *b = HEX[((rnd >> (4 * (15 - i))) & 0xf) as usize];
    }
    String::from_utf8(id.to_vec()).expect("hex digits are ASCII")
}

/// The milliseconds since the epoch an id of [`new_message_id`]'s shape carries (28 lowercase
/// hex digits, the first 12 the time); `None` for an id of any other shape. The envelope
/// leaves out an enqueue time equal to its id's, and readers take it from here.
pub fn id_millis(id: &str) -> Option<u64> {
    let b = id.as_bytes();
    if b.len() != ID_LEN || !b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(&id[..ID_TIME_DIGITS], 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_of_time_then_randomness() {
        let id = new_message_id();
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{id}"
        );
        let ms = u64::from_str_radix(&id[..12], 16).unwrap();
        let now = unix_millis(SystemTime::now());
        assert!(now - ms < 1000, "{ms} vs {now}");
    }

    #[test]
    fn the_time_of_an_id_is_read_back_only_from_ids_of_that_shape() {
        let m = Message::new("x");
        let at = m.enqueued_at().map(unix_millis);
        assert_eq!(
            id_millis(m.id()),
            at,
            "a new message's id carries its enqueue time"
        );
        assert_eq!(id_millis(&new_message_id()).map(|ms| ms > 0), Some(true));
        for other in [
            "",
            "order-42",
            "0123456789abcdef0123456789a",   // 27 digits
            "0123456789abcdef0123456789abc", // 29
            "0123456789ABCDEF0123456789AB",  // upper case
            "0123456789abcdef0123456789ag",  // not hex
        ] {
            assert_eq!(id_millis(other), None, "{other}");
        }
        assert_eq!(id_millis("00000000000a0123456789abcdef"), Some(10));
    }

    #[test]
    fn ids_are_unique_and_time_ordered() {
        let a = new_message_id();
        std::thread::sleep(Duration::from_millis(2));
        let b = new_message_id();
        assert_eq!(a.len(), 28);
        assert!(a < b, "{a} !< {b}");
    }

    #[test]
    fn with_setters_do_not_touch_clones() {
        let a = Message::new("x");
        let b = a.clone().with_attempt(3).with_header("k", "v");
        assert_eq!(a.attempt(), 1);
        assert!(a.headers().is_empty());
        assert_eq!(b.attempt(), 3);
        assert_eq!(b.id(), a.id());
    }

    #[test]
    fn a_lazy_id_is_the_same_in_every_copy() {
        let a = Message::from_parts(Bytes::from_static(b"x"), None, Source::default());
        let b = a.clone().with_attempt(2);
        let c = a.clone();
        assert_eq!(a.id(), b.id());
        assert_eq!(a.id(), c.id());
        let d = Message::from_parts(Bytes::from_static(b"x"), None, Source::default());
        assert_ne!(a.id(), d.id());
        assert_eq!(d.clone().with_id("given").id(), "given");
    }

    #[test]
    fn raw_non_utf8_body_is_kept() {
        let m = Message::new(vec![0xff, 0x00, 0xfe]);
        assert_eq!(m.body().as_ref(), &[0xff, 0x00, 0xfe]);
        assert!(m.body_str().is_err());
        assert!(m.json::<serde_json::Value>().is_err());
    }

    #[test]
    fn debug_hides_the_body() {
        let m = Message::new("secret-token");
        assert!(!format!("{m:?}").contains("secret"));
    }
}

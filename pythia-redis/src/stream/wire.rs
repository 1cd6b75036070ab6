//! The stream wire format: Pythia's reserved fields, and reading entries and replies (RESP2 and
//! RESP3 shapes) into messages.

use super::*;

/// The field names Pythia reads and writes in stream entries.
///
/// Every field of Pythia's own starts with [`RESERVED_PREFIX`](fields::RESERVED_PREFIX); such
/// fields are never headers, and a producer refuses headers named `body` or starting with the
/// prefix.
pub mod fields {
    /// The message body.
    pub const BODY: &str = "body";
    /// Prefix of Pythia's own fields.
    pub const RESERVED_PREFIX: &str = "pythia-";
    /// Prefix under which the Python `pythia-framework` writes headers (`header_tenant`).
    pub const PYTHON_HEADER_PREFIX: &str = "header_";
    /// The message id, stable across retries.
    pub const ID: &str = "pythia-id";
    /// The attempt number of the delivery this entry starts (1 when absent).
    pub const ATTEMPT: &str = "pythia-attempt";
    /// When the message was first enqueued, in milliseconds since the Unix epoch, for entries
    /// whose id does not say it (retries, hand-backs, replays).
    pub const ENQUEUED_AT: &str = "pythia-enqueued-at";
    /// The consumer group a retried or handed-back entry is for: other groups reading the same
    /// stream acknowledge it without delivering it.
    pub const GROUP: &str = "pythia-group";
    /// Dead letters: the last error.
    pub const ERROR: &str = "pythia-error";
    /// Dead letters: when the message was dead-lettered (ms since the Unix epoch).
    pub const FAILED_AT: &str = "pythia-failed-at";
    /// Dead letters: the id of the stream entry that was dead-lettered.
    pub const ENTRY_ID: &str = "pythia-entry-id";
}

/// One field of a stream entry: name, value.
pub(super) type FieldPair = (Vec<u8>, Vec<u8>);

/// Decodes a stream entry read by other means (`XRANGE`, a dead-letter stream) the way a
/// [`StreamBroker`] does: see the [module docs](crate::stream).
///
/// ```
/// use pythia_core::Source;
/// use pythia_redis::stream::message_from_entry;
///
/// let fields = vec![
///     (b"body".to_vec(), b"hello".to_vec()),
///     (b"header_tenant".to_vec(), b"acme".to_vec()),
///     (b"pythia-attempt".to_vec(), b"2".to_vec()),
/// ];
/// let msg = message_from_entry("1700000000000-0", fields, &Source::new("stream", "jobs"));
/// assert_eq!(msg.body().as_ref(), b"hello");
/// assert_eq!(msg.header("tenant"), Some("acme"));
/// assert_eq!((msg.id(), msg.attempt()), ("1700000000000-0", 2));
/// ```
pub fn message_from_entry(id: &str, fields: Vec<(Vec<u8>, Vec<u8>)>, source: &Source) -> Message {
    let entry = StreamEntryId::parse(id.as_bytes()).unwrap_or_default();
    decode_fields(
        entry,
        id.as_bytes().to_vec(),
        fields.into_iter(),
        None,
        source,
        0,
    )
    .expect("no group filter, so never skipped")
}

/// Decodes a one-stream `XREADGROUP` reply for consumer group `group` as the broker does (the
/// same function): the deliveries, and how many entries it would acknowledge without
/// delivering them (deleted while pending, or retries marked for another group). A pure
/// function: `benches/stream_reply.rs` measures it without a server.
pub fn decode_group_read(
    reply: Value,
    group: &str,
    source: &Source,
) -> (Vec<Delivery<StreamEntryId>>, usize) {
    let batch = decode_read_reply(reply, group, source);
    (batch.deliveries, batch.to_ack.len())
}

/// What a read gave: deliveries, ids to ack without delivering (entries for other groups,
/// entries deleted while pending), and the last id seen.
pub(super) struct ReadBatch {
    pub(super) deliveries: Vec<Delivery<StreamEntryId>>,
    pub(super) to_ack: Vec<StreamEntryId>,
    pub(super) last: Option<StreamEntryId>,
}

/// Decodes an `XREADGROUP` reply for consumer group `group`: the deliveries, the entries to ack
/// without delivering (deleted while pending, or marked for another group), and the last id.
pub(super) fn decode_read_reply(reply: Value, group: &str, source: &Source) -> ReadBatch {
    let entries = reply_entries(reply);
    let mut batch = ReadBatch {
        deliveries: Vec::with_capacity(entries.len()),
        to_ack: Vec::new(),
        last: None,
    };
    for entry in entries {
        let Some((id_bytes, fields)) = split_entry(entry) else {
            continue;
        };
        let Some(id) = StreamEntryId::parse(&id_bytes) else {
            continue;
        };
        batch.last = Some(id);
        let Some(fields) = fields else {
            // Deleted while pending: nothing left to deliver.
            batch.to_ack.push(id);
            continue;
        };
        match decode_fields(
            id,
            id_bytes,
            FieldPairs::new(fields),
            Some(group),
            source,
            0,
        ) {
            Some(msg) => batch.deliveries.push(Delivery::new(id, msg)),
            None => batch.to_ack.push(id),
        }
    }
    batch
}

/// Builds the message of one entry; `None` when the entry is marked for another group.
/// `extra_attempts` counts deliveries that ended with a dead consumer.
pub(super) fn decode_fields(
    id: StreamEntryId,
    id_bytes: Vec<u8>,
    fields: impl Iterator<Item = (Vec<u8>, Vec<u8>)>,
    group: Option<&str>,
    source: &Source,
    extra_attempts: u32,
) -> Option<Message> {
    let mut body = None;
    let mut pythia_id = None;
    let mut attempt = 1u32;
    let mut enqueued_ms = None;
    let mut headers: Vec<(String, String)> = Vec::new();
    for (mut k, v) in fields {
        if k == fields::BODY.as_bytes() {
            body = Some(v);
            continue;
        }
        if let Some(name) = k.strip_prefix(fields::RESERVED_PREFIX.as_bytes()) {
            match name {
                b"id" => pythia_id = String::from_utf8(v).ok(),
                b"attempt" => {
                    attempt = parse_u64(&v)
                        .map(|a| a.clamp(1, u64::from(u32::MAX)) as u32)
                        .unwrap_or(1);
                }
                b"enqueued-at" => enqueued_ms = parse_u64(&v),
                b"group" => {
                    if let Some(g) = group
                        && v != g.as_bytes()
                    {
                        return None;
                    }
                }
                _ => {}
            }
            continue;
        }
        let prefix = fields::PYTHON_HEADER_PREFIX.len();
        if k.len() > prefix && k.starts_with(fields::PYTHON_HEADER_PREFIX.as_bytes()) {
            k.drain(..prefix);
        }
        headers.push((into_string(k), into_string(v)));
    }
    let body: Bytes = match body {
        Some(b) => b.into(),
        None => {
            // No body field: the fields are the payload.
            let object: serde_json::Map<String, serde_json::Value> = headers
                .drain(..)
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            serde_json::to_vec(&object)
                .expect("serialising strings cannot fail")
                .into()
        }
    };
    let enqueued = UNIX_EPOCH + Duration::from_millis(enqueued_ms.unwrap_or(id.ms()));
    // Built from its parts: `Message::new` would make an id and read the clock only to have
    // both replaced (about half of the decode time per entry).
    let mut msg = Message::from_parts(body, Some(enqueued), source.clone())
        .with_id(pythia_id.unwrap_or_else(|| into_string(id_bytes)));
    let attempt = attempt.saturating_add(extra_attempts);
    if attempt != 1 {
        msg = msg.with_attempt(attempt);
    }
    if !headers.is_empty() {
        msg = msg.with_headers(headers.into_iter().collect::<Headers>());
    }
    Some(msg)
}

/// The (id, delivery count) of one row of an extended `XPENDING` reply
/// (`[id, consumer, idle ms, delivery count]`).
pub(super) fn pending_row(row: Value) -> Option<(StreamEntryId, u64)> {
    let Value::Array(parts) = row else {
        return None;
    };
    let mut parts = parts.into_iter();
    let id = StreamEntryId::parse(&value_bytes(parts.next()?)?)?;
    let count = as_int(parts.nth(2)?)?;
    Some((id, count.max(0) as u64))
}

/// The rows of an extended `XPENDING` reply.
pub(super) fn pending_rows(reply: Value) -> Vec<(StreamEntryId, u64)> {
    match reply {
        Value::Array(rows) => rows.into_iter().filter_map(pending_row).collect(),
        _ => Vec::new(),
    }
}

pub(super) fn into_string(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

pub(super) fn parse_u64(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.trim().parse().ok()
}

pub(super) fn as_int(v: Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(i),
        other => value_bytes(other)
            .and_then(|b| parse_u64(&b))
            .map(|u| u as i64),
    }
}

pub(super) fn value_bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        Value::Okay => Some(b"OK".to_vec()),
        _ => None,
    }
}

/// The `[id, fields]` entries of a one-stream `XREADGROUP` reply (RESP2 array or RESP3 map).
pub(super) fn reply_entries(reply: Value) -> Vec<Value> {
    let entries = match reply {
        Value::Array(streams) => streams.into_iter().next().and_then(|s| match s {
            Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
            _ => None,
        }),
        Value::Map(streams) => streams.into_iter().next().map(|(_, e)| e),
        _ => None,
    };
    match entries {
        Some(Value::Array(entries)) => entries,
        _ => Vec::new(),
    }
}

/// Splits an entry into its id and its fields (`None` when the entry was deleted).
pub(super) fn split_entry(entry: Value) -> Option<(Vec<u8>, Option<FieldList>)> {
    let Value::Array(mut parts) = entry else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let fields = parts.pop().expect("two parts");
    let id = value_bytes(parts.pop().expect("two parts"))?;
    let fields = match fields {
        Value::Array(flat) => Some(FieldList::Flat(flat)),
        Value::Map(pairs) => Some(FieldList::Map(pairs)),
        _ => None,
    };
    Some((id, fields))
}

/// An entry's fields as the server sent them.
pub(super) enum FieldList {
    Flat(Vec<Value>),
    Map(Vec<(Value, Value)>),
}

impl From<Vec<Value>> for FieldList {
    fn from(flat: Vec<Value>) -> Self {
        Self::Flat(flat)
    }
}

/// Field/value byte pairs of an entry, moved out of the reply without copying.
pub(super) enum FieldPairs {
    Flat(std::vec::IntoIter<Value>),
    Map(std::vec::IntoIter<(Value, Value)>),
}

impl FieldPairs {
    pub(super) fn new(fields: impl Into<FieldList>) -> Self {
        match fields.into() {
            FieldList::Flat(v) => Self::Flat(v.into_iter()),
            FieldList::Map(v) => Self::Map(v.into_iter()),
        }
    }
}

impl Iterator for FieldPairs {
    type Item = (Vec<u8>, Vec<u8>);
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (k, v) = match self {
                Self::Flat(it) => (it.next()?, it.next()?),
                Self::Map(it) => it.next()?,
            };
            if let (Some(k), Some(v)) = (value_bytes(k), value_bytes(v)) {
                return Some((k, v));
            }
        }
    }
}

//! [`Destination`]: the queue a delayed message or a periodic job's message goes to, a list or
//! a stream, and how a message is written for it.

use pythia_core::{BrokerError, Message, envelope};

use crate::list::ListSide;
use crate::stream::fields;

/// Where Pythia puts a message when its time comes: the back of a list (for a
/// [`ListBroker`](crate::ListBroker) or [`ReliableListBroker`](crate::ReliableListBroker)) or
/// a new entry of a stream (for a [`StreamBroker`](crate::StreamBroker)).
///
/// ```
/// use pythia_redis::{Destination, ListSide};
///
/// let jobs = Destination::list("jobs").with_side(ListSide::Left);
/// let events = Destination::stream("events");
/// assert_eq!(jobs.name(), "jobs");
/// assert!(events.is_stream());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    name: String,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    List(ListSide),
    Stream,
}

impl Destination {
    /// The list `queue`, for consumers popping its right end (the default [`ListSide`]).
    /// Messages are written as Pythia envelopes.
    pub fn list(queue: &str) -> Self {
        Self {
            name: queue.to_owned(),
            kind: Kind::List(ListSide::default()),
        }
    }

    /// The stream `stream`. Messages are written as a [`StreamProducer`](crate::StreamProducer)
    /// writes them (`body`, `pythia-id`, headers), for every consumer group of the stream.
    pub fn stream(stream: &str) -> Self {
        Self {
            name: stream.to_owned(),
            kind: Kind::Stream,
        }
    }

    /// For a list: the end its consumers pop (messages are pushed on the other end). No effect
    /// on a stream.
    #[must_use]
    pub fn with_side(mut self, side: ListSide) -> Self {
        if let Kind::List(_) = self.kind {
            self.kind = Kind::List(side);
        }
        self
    }

    /// The list or stream key.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is a stream.
    pub fn is_stream(&self) -> bool {
        self.kind == Kind::Stream
    }

    /// The end consumers pop; `None` for a stream.
    pub fn list_side(&self) -> Option<ListSide> {
        match self.kind {
            Kind::List(side) => Some(side),
            Kind::Stream => None,
        }
    }
}

/// A stream entry's fields, names borrowed.
pub(crate) type EntryFields<'a> = Vec<(&'a [u8], Vec<u8>)>;

/// The fields of `msg` as a stream entry written by a Pythia producer: `body`, `pythia-id`,
/// `pythia-attempt` above 1, then the headers. Fails, naming the message, on a reserved header.
pub(crate) fn stream_fields(msg: &Message) -> Result<EntryFields<'_>, BrokerError> {
    if let Some(name) = msg
        .headers()
        .keys()
        .find(|k| *k == fields::BODY || k.starts_with(fields::RESERVED_PREFIX))
    {
        return Err(BrokerError::config(format!(
            "header {name:?} of message {} is reserved: stream headers may not be named \"body\" or start with \"pythia-\"",
            msg.id()
        )));
    }
    let mut out = Vec::with_capacity(3 + msg.headers().len());
    out.push((fields::BODY.as_bytes(), msg.body().to_vec()));
    out.push((fields::ID.as_bytes(), msg.id().as_bytes().to_vec()));
    if msg.attempt() > 1 {
        out.push((
            fields::ATTEMPT.as_bytes(),
            msg.attempt().to_string().into_bytes(),
        ));
    }
    for (k, v) in msg.headers() {
        out.push((k.as_bytes(), v.as_bytes().to_vec()));
    }
    Ok(out)
}

/// A stream entry's fields as the schedule keeps them: each name and value written as
/// `<length>:<bytes>` (what `stream_promote.lua` reads).
pub(crate) fn encode_scheduled_fields(entry: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in entry {
        for part in [*k, &v[..]] {
            out.extend_from_slice(part.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(part);
        }
    }
    out
}

/// The inverse of [`encode_scheduled_fields`]: the flat list of names and values, or `None` when
/// `encoded` is not a whole number of `<length>:<bytes>` parts.
pub(crate) fn decode_scheduled_fields(encoded: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut rest = encoded;
    while !rest.is_empty() {
        let colon = rest.iter().position(|&b| b == b':')?;
        let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
        let value = rest.get(colon + 1..colon + 1 + len)?;
        out.push(value);
        rest = &rest[colon + 1 + len..];
    }
    (out.len() >= 2 && out.len() % 2 == 0).then_some(out)
}

/// The payload of `msg` for `dest` as the schedule keeps it: an envelope for a list, encoded
/// fields for a stream.
pub(crate) fn scheduled_payload(dest: &Destination, msg: &Message) -> Result<Vec<u8>, BrokerError> {
    if dest.is_stream() {
        Ok(encode_scheduled_fields(&stream_fields(msg)?))
    } else {
        Ok(envelope::encode(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_fields_are_length_prefixed_and_reserved_headers_refused() {
        let msg = Message::new("héllo")
            .with_id("m1")
            .with_header("tenant", "a:b");
        let encoded = encode_scheduled_fields(&stream_fields(&msg).unwrap());
        assert_eq!(
            String::from_utf8(encoded).unwrap(),
            "4:body6:héllo9:pythia-id2:m16:tenant3:a:b"
        );
        let bad = Message::new("x").with_header("pythia-id", "y");
        assert!(stream_fields(&bad).is_err());
        assert_eq!(Destination::list("q").list_side(), Some(ListSide::Right));
        assert_eq!(
            Destination::list("q").with_side(ListSide::Left).list_side(),
            Some(ListSide::Left)
        );
        assert_eq!(Destination::stream("s").list_side(), None);
    }
}

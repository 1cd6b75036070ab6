//! The wire format of the Python `pythia-framework` 1.0.x producers, written byte for byte, so
//! that a fleet can move between the Python and the Rust Pythia one service at a time.
//!
//! * **List item** (what `RedisListProducer.send(body, headers=…, message_id=…)` pushes): the
//!   JSON text of `json.dumps({"body": …, "headers": {…}, "message_id": …},
//!   ensure_ascii=False)`, with Python's `", "` and `": "` separators. Pythia's message id goes
//!   in `message_id`.
//! * **Pub/sub payload** (what `RedisPubSubProducer.send(body)` publishes): the body alone;
//!   the Python pub/sub format carries no headers and no id.
//! * **Stream entry** (what `RedisStreamsProducer.send(body, headers=…)` adds): the field
//!   `body` and one field `header_<name>` per header, under an id Redis picks (`*`).
//!
//! The body: a body that is a JSON object or array is written as that JSON (what the Python
//! producers write for a `dict` or `list`: the Python consumers decode it back to one); any other
//! UTF-8 body as a string; a body that is not UTF-8 as its hex digits, as the Python producers
//! write `bytes` that are not UTF-8 (lossy: the Python wire format is not binary-safe).
//!
//! The attempt number and the enqueue time are not part of the Python format: a message read
//! back is on its first attempt, with no enqueue time. Pythia's readers read both shapes
//! ([`envelope`](crate::envelope)).

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::message::Message;

/// The stream field that holds a header: `header_<name>`.
pub const STREAM_HEADER_PREFIX: &str = "header_";

/// The body as the Python producers write it: JSON (object or array), text, or hex digits.
fn body(msg: &Message) -> (Cow<'_, str>, bool) {
    match std::str::from_utf8(msg.body()) {
        Ok(s) => {
            let t = s.trim_start();
            let json = (t.starts_with('{') || t.starts_with('['))
                && serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok();
            (Cow::Borrowed(s), json)
        }
        Err(_) => {
            let mut hex = String::with_capacity(msg.body().len() * 2);
            for b in msg.body().iter() {
                let _ = write!(hex, "{b:02x}");
            }
            (Cow::Owned(hex), false)
        }
    }
}

/// Appends a JSON string as Python's `json.dumps(…, ensure_ascii=False)` writes it (the same
/// escapes as serde_json's: `\"`, `\\`, `\n`-style short forms and `\u00xx` for the other
/// control characters).
fn push_str(buf: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail, and a str always serializes.
    let _ = serde_json::to_writer(&mut *buf, s);
}

/// The list item (or pub/sub payload) the Python `RedisListProducer` writes for `msg`.
///
/// ```
/// use pythia_core::{Message, python_wire};
///
/// let msg = Message::new("hello").with_id("m-1").with_header("tenant", "acme");
/// assert_eq!(
///     String::from_utf8(python_wire::encode_list_item(&msg)).unwrap(),
///     r#"{"body": "hello", "headers": {"tenant": "acme"}, "message_id": "m-1"}"#,
/// );
/// ```
pub fn encode_list_item(msg: &Message) -> Vec<u8> {
    let mut buf = Vec::with_capacity(msg.body().len() + 64);
    encode_list_item_into(&mut buf, msg);
    buf
}

/// [`encode_list_item`] into `buf` (appended).
pub fn encode_list_item_into(buf: &mut Vec<u8>, msg: &Message) {
    let (body, json) = body(msg);
    buf.extend_from_slice(b"{\"body\": ");
    if json {
        buf.extend_from_slice(body.as_bytes());
    } else {
        push_str(buf, &body);
    }
    buf.extend_from_slice(b", \"headers\": {");
    for (i, (k, v)) in msg.headers().iter().enumerate() {
        if i > 0 {
            buf.extend_from_slice(b", ");
        }
        push_str(buf, k);
        buf.extend_from_slice(b": ");
        push_str(buf, v);
    }
    buf.extend_from_slice(b"}, \"message_id\": ");
    push_str(buf, msg.id());
    buf.push(b'}');
}

/// The fields of the stream entry the Python `RedisStreamsProducer` adds for `msg`: `body`,
/// then `header_<name>` per header.
///
/// ```
/// use pythia_core::{Message, python_wire};
///
/// let msg = Message::new("hello").with_header("tenant", "acme");
/// let fields = python_wire::stream_fields(&msg);
/// assert_eq!(fields[0], ("body".to_owned(), b"hello".to_vec()));
/// assert_eq!(fields[1], ("header_tenant".to_owned(), b"acme".to_vec()));
/// ```
pub fn stream_fields(msg: &Message) -> Vec<(String, Vec<u8>)> {
    let mut fields = Vec::with_capacity(1 + msg.headers().len());
    let (body, _) = body(msg);
    fields.push(("body".to_owned(), body.into_owned().into_bytes()));
    for (k, v) in msg.headers() {
        fields.push((format!("{STREAM_HEADER_PREFIX}{k}"), v.as_bytes().to_vec()));
    }
    fields
}

/// The pub/sub payload the Python `RedisPubSubProducer` publishes for `msg`: the body alone
/// (hex digits if it is not UTF-8); headers and id are not carried.
pub fn pubsub_payload(msg: &Message) -> Vec<u8> {
    body(msg).0.into_owned().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope;
    use crate::message::Source;

    #[test]
    fn json_bodies_nest_and_other_bodies_are_strings() {
        let m = Message::new(r#"{"amount": 3}"#).with_id("a");
        assert_eq!(
            encode_list_item(&m),
            br#"{"body": {"amount": 3}, "headers": {}, "message_id": "a"}"#
        );
        let m = Message::new("line\n\"q\"\u{1}é").with_id("b");
        assert_eq!(
            String::from_utf8(encode_list_item(&m)).unwrap(),
            "{\"body\": \"line\\n\\\"q\\\"\\u0001é\", \"headers\": {}, \"message_id\": \"b\"}"
        );
        let m = Message::new(vec![0xffu8, 0x00]).with_id("c");
        assert_eq!(
            encode_list_item(&m),
            br#"{"body": "ff00", "headers": {}, "message_id": "c"}"#
        );
        assert_eq!(stream_fields(&m)[0].1, b"ff00");
    }

    #[test]
    fn pythia_reads_back_what_it_writes_in_the_python_format() {
        let m = Message::new("hi").with_header("k", "v");
        let back = envelope::decode(encode_list_item(&m).into(), &Source::default());
        assert_eq!(back.body(), "hi".as_bytes());
        assert_eq!(back.id(), m.id());
        assert_eq!(back.headers().get("k").map(String::as_str), Some("v"));
    }
}

//! The wire format of a message in a list item or pub/sub payload.
//!
//! Three shapes are read:
//!
//! * **Pythia envelope** (what Pythia producers write by default): a JSON object
//!   `{"pythia":1,"id":"…","attempt":1,"enqueued_at":<ms>,"headers":{…},"body":"…"}`; a body
//!   that is not UTF-8 goes in `"body_b64"` (standard base64) instead of `"body"`, so the
//!   envelope is binary-safe.
//! * **Python `pythia-framework` envelope**: `{"body": …, "headers": {…}, "message_id": …}`.
//!   A string body is taken as its text; any other JSON body as its JSON text.
//! * **Anything else is a raw body**, taken byte for byte (`redis-cli LPUSH jobs hello`): a
//!   fresh id, attempt 1, no headers, no enqueue time.
//!
//! Decoding never fails: what is not a well-formed envelope is a raw body.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::message::{Headers, Message, Source, new_message_id, unix_millis};

/// The envelope version Pythia writes.
pub const ENVELOPE_VERSION: u32 = 1;

#[derive(Serialize)]
struct Out<'a> {
    pythia: u32,
    id: &'a str,
    attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    enqueued_at: Option<u64>,
    #[serde(skip_serializing_if = "Headers::is_empty")]
    headers: &'a Headers,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_b64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_at: Option<u64>,
}

#[derive(Deserialize)]
struct In<'a> {
    #[serde(default)]
    pythia: Option<u32>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    message_id: Option<&'a RawValue>,
    #[serde(default)]
    attempt: Option<u32>,
    #[serde(default)]
    enqueued_at: Option<u64>,
    #[serde(default)]
    headers: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, borrow)]
    body: Option<&'a RawValue>,
    #[serde(default, borrow)]
    body_b64: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    error: Option<Cow<'a, str>>,
    #[serde(default)]
    failed_at: Option<u64>,
}

fn out<'a>(msg: &'a Message) -> Out<'a> {
    let (body, body_b64) = match msg.body_str() {
        Ok(s) => (Some(s), None),
        Err(_) => (None, Some(B64.encode(msg.body()))),
    };
    Out {
        pythia: ENVELOPE_VERSION,
        id: msg.id(),
        attempt: msg.attempt(),
        enqueued_at: msg.enqueued_at().map(unix_millis),
        headers: msg.headers(),
        body,
        body_b64,
        error: None,
        failed_at: None,
    }
}

/// Encodes `msg` as a Pythia envelope.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut buf = Vec::with_capacity(msg.body().len() + 96);
    encode_into(&mut buf, msg);
    buf
}

/// Appends the Pythia envelope of `msg` to `buf` (reuse one buffer to encode many messages
/// without an allocation each).
pub fn encode_into(buf: &mut Vec<u8>, msg: &Message) {
    serde_json::to_writer(buf, &out(msg)).expect("serialising plain data cannot fail");
}

/// Encodes a dead letter: the envelope of `msg` plus `"error"` and `"failed_at"` (ms).
pub fn encode_dead_letter(msg: &Message, reason: &str, failed_at: SystemTime) -> Vec<u8> {
    let mut o = out(msg);
    o.error = Some(reason);
    o.failed_at = Some(unix_millis(failed_at));
    let mut buf = Vec::with_capacity(msg.body().len() + 128 + reason.len());
    serde_json::to_writer(&mut buf, &o).expect("serialising plain data cannot fail");
    buf
}

/// A decoded dead letter.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DecodedDeadLetter {
    /// The message as it was last delivered.
    pub message: Message,
    /// Why it was dead-lettered, if recorded.
    pub reason: Option<String>,
    /// When, if recorded.
    pub failed_at: Option<SystemTime>,
}

/// Decodes a dead-letter item written by [`encode_dead_letter`] (or any item: the reason and
/// time are then `None`).
pub fn decode_dead_letter(raw: Bytes, source: &Source) -> DecodedDeadLetter {
    match parse(&raw) {
        Some(env) => {
            let reason = env.error.as_deref().map(str::to_owned);
            let failed_at = env.failed_at.map(from_millis);
            DecodedDeadLetter {
                message: build(env, &raw, source),
                reason,
                failed_at,
            }
        }
        None => DecodedDeadLetter {
            message: raw_message(raw, source),
            reason: None,
            failed_at: None,
        },
    }
}

/// Decodes a list item or pub/sub payload (see the [module docs](self)).
pub fn decode(raw: Bytes, source: &Source) -> Message {
    match parse(&raw) {
        Some(env) => build(env, &raw, source),
        None => raw_message(raw, source),
    }
}

/// A raw body: fresh id, attempt 1.
pub fn raw_message(raw: Bytes, source: &Source) -> Message {
    Message::from_parts(raw, None, source.clone())
}

fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn parse(raw: &[u8]) -> Option<In<'_>> {
    let first = raw.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    let env: In<'_> = serde_json::from_slice(raw).ok()?;
    let has_body = env.body.is_some() || env.body_b64.is_some();
    let pythia = env.pythia.is_some() && has_body;
    let python = env.body.is_some() && (env.message_id.is_some() || env.headers.is_some());
    (pythia || python).then_some(env)
}

fn build(env: In<'_>, raw: &Bytes, source: &Source) -> Message {
    let body: Bytes = if let Some(b64) = env.body_b64.as_deref() {
        match B64.decode(b64) {
            Ok(b) => b.into(),
            // A corrupt base64 body: keep the whole item, the handler decides.
            Err(_) => return raw_message(raw.clone(), source),
        }
    } else {
        let rv = env.body.expect("parse() checked a body");
        match serde_json::from_str::<Cow<'_, str>>(rv.get()) {
            Ok(s) => Bytes::copy_from_slice(s.as_bytes()),
            Err(_) => Bytes::copy_from_slice(rv.get().as_bytes()),
        }
    };
    let id = env
        .id
        .map(Cow::into_owned)
        .or_else(|| {
            env.message_id
                .and_then(|v| match serde_json::from_str::<Cow<'_, str>>(v.get()) {
                    Ok(s) => Some(s.into_owned()),
                    Err(_) if v.get() != "null" => Some(v.get().to_owned()),
                    Err(_) => None,
                })
        })
        .unwrap_or_else(new_message_id);
    let mut headers = Headers::new();
    for (k, v) in env.headers.unwrap_or_default() {
        let v = match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        headers.insert(k, v);
    }
    Message::from_parts(body, env.enqueued_at.map(from_millis), source.clone())
        .with_id(id)
        .with_attempt(env.attempt.unwrap_or(1))
        .with_headers(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> Source {
        Source::new("list", "jobs")
    }

    #[test]
    fn round_trip_text_and_binary() {
        for body in [&b"hello \"world\""[..], &[0, 159, 146, 150, 255][..], b""] {
            let m = Message::new(body.to_vec())
                .with_header("k", "v")
                .with_attempt(3);
            let d = decode(encode(&m).into(), &src());
            assert_eq!(d.body().as_ref(), body);
            assert_eq!(d.id(), m.id());
            assert_eq!(d.attempt(), 3);
            assert_eq!(d.header("k"), Some("v"));
            assert_eq!(
                d.enqueued_at().map(unix_millis),
                m.enqueued_at().map(unix_millis)
            );
            assert_eq!(d.source().name(), "jobs");
        }
    }

    #[test]
    fn raw_items_are_bodies() {
        for raw in [
            &b"hello"[..],
            b"{\"user\": 1}",
            b"{not json",
            b"[1,2]",
            b"{\"body\": \"only a body\"}",
            &[0xff, 0xfe][..],
        ] {
            let d = decode(Bytes::copy_from_slice(raw), &src());
            assert_eq!(d.body().as_ref(), raw);
            assert_eq!(d.attempt(), 1);
            assert!(d.enqueued_at().is_none());
            assert!(!d.id().is_empty());
        }
    }

    #[test]
    fn python_envelopes_are_read() {
        let raw = br#"{"body": {"order": 7}, "headers": {"tenant": "acme", "n": 3}, "message_id": "abc-1"}"#;
        let d = decode(Bytes::copy_from_slice(raw), &src());
        assert_eq!(d.id(), "abc-1");
        assert_eq!(d.body().as_ref(), br#"{"order": 7}"#);
        assert_eq!(d.header("tenant"), Some("acme"));
        assert_eq!(d.header("n"), Some("3"));

        let raw = br#"{"body": "plain text", "headers": {}, "message_id": null}"#;
        let d = decode(Bytes::copy_from_slice(raw), &src());
        assert_eq!(d.body().as_ref(), b"plain text");
        assert_eq!(d.id().len(), 28);
    }

    #[test]
    fn corrupt_base64_keeps_the_item() {
        let raw = br#"{"pythia":1,"id":"x","attempt":1,"body_b64":"!!!"}"#;
        let d = decode(Bytes::copy_from_slice(raw), &src());
        assert_eq!(d.body().as_ref(), raw);
    }

    #[test]
    fn dead_letters_carry_reason_and_time() {
        let m = Message::new("x").with_attempt(3);
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let raw = encode_dead_letter(&m, "boom", at);
        let d = decode_dead_letter(raw.into(), &src());
        assert_eq!(d.reason.as_deref(), Some("boom"));
        assert_eq!(d.failed_at, Some(at));
        assert_eq!(d.message.attempt(), 3);
        assert_eq!(d.message.id(), m.id());
    }
}

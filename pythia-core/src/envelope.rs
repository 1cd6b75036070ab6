//! The wire format of a message in a list item or pub/sub payload.
//!
//! Three shapes are read:
//!
//! * **Pythia envelope** (what Pythia producers write by default): a JSON object
//!   `{"pythia":1,"id":"…","attempt":2,"enqueued_at":<ms>,"headers":{…},"body":"…"}`; a body
//!   that is not UTF-8 goes in `"body_b64"` (standard base64) instead of `"body"`, so the
//!   envelope is binary-safe. Fields are written only when they say something: `"attempt"`
//!   past the first attempt (absent means 1), `"headers"` when there are some, and
//!   `"enqueued_at"` (milliseconds) when it differs from the time in the id: ids made by
//!   [`new_message_id`] start with their creation time, the enqueue time of every
//!   [`Message::new`], so a reader takes an absent `"enqueued_at"` from the id
//!   ([`crate::message::id_millis`]), and `null` says there is none.
//! * **Python `pythia-framework` envelope**: `{"body": …, "headers": {…}, "message_id": …}`,
//!   with `body` and at least one of the other two, and no other key (an object that also holds
//!   other fields is a producer's own JSON: a raw body, kept whole). A string body is taken as
//!   its text; any other JSON body as its JSON text.
//! * **Anything else is a raw body**, taken byte for byte (`redis-cli LPUSH jobs hello`): a
//!   fresh id, attempt 1, no headers, no enqueue time.
//!
//! Decoding never fails: what is not a well-formed envelope is a raw body.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::dead_letter::DeadLetter;
use crate::json_write;
use crate::message::{Headers, Message, Source, id_millis, new_message_id, unix_millis};

/// The envelope version Pythia writes.
pub const ENVELOPE_VERSION: u32 = 1;

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
    /// Absent: `None`; `null`: `Some(None)`.
    #[serde(default, deserialize_with = "present")]
    enqueued_at: Option<Option<u64>>,
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

/// A field that is there, even as `null` (serde's `default` gives `None` when it is absent).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Encodes `msg` as a Pythia envelope.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut buf = Vec::with_capacity(capacity_hint(msg));
    encode_into(&mut buf, msg);
    buf
}

/// Appends the Pythia envelope of `msg` to `buf` (reuse one buffer to encode many messages
/// without an allocation each).
///
/// # Behaviour
///
/// The output is byte for byte what `serde_json` makes of the envelope's fields, in the order
/// of the [module docs](self), without the absent ones; it is written by hand because this
/// runs once per produced message: a body of plain ASCII (no byte to escape) is checked 16
/// bytes at a time and copied in one piece.
pub fn encode_into(buf: &mut Vec<u8>, msg: &Message) {
    write_fields(buf, msg);
    buf.push(b'}');
}

/// Encodes a dead letter: the envelope of `msg` plus `"error"` and `"failed_at"` (ms).
pub fn encode_dead_letter(msg: &Message, reason: &str, failed_at: SystemTime) -> Vec<u8> {
    let mut buf = Vec::with_capacity(capacity_hint(msg) + 40 + reason.len());
    write_fields(&mut buf, msg);
    buf.extend_from_slice(br#","error":"#);
    json_write::write_str(&mut buf, reason);
    buf.extend_from_slice(br#","failed_at":"#);
    json_write::write_u64(&mut buf, unix_millis(failed_at));
    buf.push(b'}');
    buf
}

/// Enough for the envelope of a message whose body, id and headers need no escaping: at most
/// 90 bytes of keys, punctuation and numbers, `,"headers":{}` and `"k":"v",` per header.
fn capacity_hint(msg: &Message) -> usize {
    let headers: usize = msg
        .headers()
        .iter()
        .map(|(k, v)| k.len() + v.len() + 6)
        .sum();
    let braces = if headers == 0 { 0 } else { 13 };
    90 + msg.id().len() + braces + headers + msg.body().len()
}

/// Every field of the envelope, without the closing brace.
fn write_fields(buf: &mut Vec<u8>, msg: &Message) {
    const _: () = assert!(ENVELOPE_VERSION == 1, "the version is in the literal below");
    buf.extend_from_slice(br#"{"pythia":1,"id":"#);
    json_write::write_str(buf, msg.id());
    // Attempt 1 is what a reader assumes when the field is absent: 12 bytes less per message
    // on the wire and in Redis for every first delivery.
    if msg.attempt() != 1 {
        buf.extend_from_slice(br#","attempt":"#);
        json_write::write_u64(buf, msg.attempt().into());
    }
    // 28 bytes a message saved: a reader takes the enqueue time from the id when it says the
    // same (every `Message::new`), so it is written only when it differs, or as `null` when
    // there is none but the id carries a time.
    let id_ms = id_millis(msg.id());
    match msg.enqueued_at().map(unix_millis) {
        Some(ms) if id_ms == Some(ms) => {}
        Some(ms) => {
            buf.extend_from_slice(br#","enqueued_at":"#);
            json_write::write_u64(buf, ms);
        }
        None if id_ms.is_some() => buf.extend_from_slice(br#","enqueued_at":null"#),
        None => {}
    }
    if !msg.headers().is_empty() {
        buf.extend_from_slice(br#","headers":"#);
        let mut sep = b'{';
        for (k, v) in msg.headers() {
            buf.push(sep);
            sep = b',';
            json_write::write_str(buf, k);
            buf.push(b':');
            json_write::write_str(buf, v);
        }
        buf.push(b'}');
    }
    let body = msg.body().as_ref();
    // Plain ASCII is its own JSON text; past it, the body is text only if the rest is UTF-8.
    let plain = json_write::plain_ascii_prefix(body);
    if plain == body.len() {
        buf.extend_from_slice(br#","body":""#);
        buf.extend_from_slice(body);
        buf.push(b'"');
    } else if std::str::from_utf8(&body[plain..]).is_ok() {
        buf.extend_from_slice(br#","body":""#);
        json_write::write_escaped(buf, body, plain);
        buf.push(b'"');
    } else {
        buf.extend_from_slice(br#","body_b64":""#);
        let start = buf.len();
        let len = base64::encoded_len(body.len(), true).expect("a body in memory fits base64");
        buf.resize(start + len, 0);
        B64.encode_slice(body, &mut buf[start..])
            .expect("sized by encoded_len");
        buf.push(b'"');
    }
}

/// Decodes a dead-letter item written by [`encode_dead_letter`] (or any item: the reason and
/// time are then `None`).
pub fn decode_dead_letter(raw: Bytes, source: &Source) -> DeadLetter {
    match parse(&raw) {
        Some(env) => {
            let reason = env.error.as_deref().map(str::to_owned);
            let failed_at = env.failed_at.map(from_millis);
            DeadLetter::new(build(env, &raw, source), reason, failed_at)
        }
        None => DeadLetter::new(raw_message(raw, source), None, None),
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
    let python = !pythia
        && env.body.is_some()
        && (env.message_id.is_some() || env.headers.is_some())
        && only_python_fields(raw);
    (pythia || python).then_some(env)
}

/// Whether the JSON object `raw` has no key but the Python envelope's: a producer's own object
/// that happens to hold `body` and `headers` among other fields is a raw body, not an envelope
/// whose other fields would be dropped.
fn only_python_fields(raw: &[u8]) -> bool {
    serde_json::from_slice::<std::collections::HashMap<Cow<'_, str>, serde::de::IgnoredAny>>(raw)
        .is_ok_and(|object| {
            object
                .keys()
                .all(|k| matches!(k.as_ref(), "body" | "headers" | "message_id"))
        })
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
    // A Pythia envelope without an enqueue time has its id's (see `write_fields`).
    let enqueued_at = match (&env.id, env.enqueued_at) {
        (_, Some(at)) => at,
        (Some(id), None) if env.pythia.is_some() => id_millis(id),
        _ => None,
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
    Message::from_parts(body, enqueued_at.map(from_millis), source.clone())
        .with_id(id)
        .with_attempt(env.attempt.unwrap_or(1))
        .with_headers(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoder this module had before the hand-written one: `serde_json` over the fields.
    /// The new output must stay byte for byte the same.
    mod serde_reference {
        use super::*;
        use serde::Serialize;

        #[derive(Serialize)]
        struct Out<'a> {
            pythia: u32,
            id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            attempt: Option<u32>,
            /// `Some(None)` is written as `null`.
            #[serde(skip_serializing_if = "Option::is_none")]
            enqueued_at: Option<Option<u64>>,
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

        pub(super) fn encode(msg: &Message, dead: Option<(&str, SystemTime)>) -> Vec<u8> {
            let (body, body_b64) = match msg.body_str() {
                Ok(s) => (Some(s), None),
                Err(_) => (None, Some(B64.encode(msg.body()))),
            };
            serde_json::to_vec(&Out {
                pythia: ENVELOPE_VERSION,
                id: msg.id(),
                attempt: (msg.attempt() != 1).then_some(msg.attempt()),
                enqueued_at: {
                    let id_ms = id_millis(msg.id());
                    match msg.enqueued_at().map(unix_millis) {
                        Some(ms) if id_ms == Some(ms) => None,
                        Some(ms) => Some(Some(ms)),
                        None if id_ms.is_some() => Some(None),
                        None => None,
                    }
                },
                headers: msg.headers(),
                body,
                body_b64,
                error: dead.map(|(reason, _)| reason),
                failed_at: dead.map(|(_, at)| unix_millis(at)),
            })
            .unwrap()
        }
    }

    /// Random bytes weighted towards what an encoder can get wrong: quotes, backslashes,
    /// control bytes, DEL, multi-byte UTF-8 (whole and cut), bytes that are never UTF-8, and
    /// runs of plain ASCII long enough for the eight-byte scan.
    fn tricky_bytes(rng: &mut fastrand::Rng, max_len: usize) -> Vec<u8> {
        const PIECES: &[&[u8]] = &[
            b"\"",
            b"\\",
            b"/",
            b"\0",
            b"\x08",
            b"\t",
            b"\n",
            b"\x0b",
            b"\x0c",
            b"\r",
            b"\x1f",
            b" ",
            b"\x7f",
            "é".as_bytes(),
            "€".as_bytes(),
            "😀".as_bytes(),
            "\u{2028}".as_bytes(),
            b"\xe2\x82",
            b"\xff",
            b"\x80",
            b"\xc0\xaf",
            b"plain text",
            b"0123456789abcdefghijklmnopqrstuvwxyz",
        ];
        let mut out = Vec::new();
        let len = rng.usize(0..=max_len);
        while out.len() < len {
            match rng.u8(0..4) {
                0 => out.push(rng.u8(..)),
                _ => out.extend_from_slice(PIECES[rng.usize(..PIECES.len())]),
            }
        }
        out
    }

    fn tricky_text(rng: &mut fastrand::Rng, max_len: usize) -> String {
        String::from_utf8_lossy(&tricky_bytes(rng, max_len)).into_owned()
    }

    fn random_message(rng: &mut fastrand::Rng) -> Message {
        let body = match rng.u8(0..4) {
            // Plain ASCII, the producer's common case, of every length around the word size.
            0 => (0..rng.usize(0..40))
                .map(|_| rng.u8(b' '..=b'~'))
                .filter(|&b| b != b'"' && b != b'\\')
                .collect(),
            // Plain ASCII with a few tricky pieces anywhere, so that a single special byte
            // sits at every kind of offset in a long clean run.
            1 => {
                let mut b: Vec<u8> = (0..rng.usize(0..300))
                    .map(|_| rng.u8(b'a'..=b'z'))
                    .collect();
                for _ in 0..rng.usize(1..3) {
                    let at = rng.usize(0..=b.len());
                    b.splice(at..at, tricky_bytes(rng, 4));
                }
                b
            }
            2 => tricky_text(rng, 300).into_bytes(),
            _ => tricky_bytes(rng, 300),
        };
        let mut m = Message::new(body).with_attempt(rng.u32(1..=u32::MAX));
        if rng.bool() {
            m = m.with_id(tricky_text(rng, 40));
        }
        if rng.u8(0..4) == 0 {
            m = m.with_enqueued_at(None);
        } else if rng.bool() {
            let ms = rng.u64(..=u64::MAX / 2_000_000);
            m = m.with_enqueued_at(Some(UNIX_EPOCH + Duration::from_millis(ms)));
        }
        for _ in 0..rng.usize(0..4) {
            m = m.with_header(tricky_text(rng, 20), tricky_text(rng, 30));
        }
        m
    }

    #[test]
    fn encoding_is_byte_for_byte_the_serde_json_encoding() {
        let mut rng = fastrand::Rng::with_seed(0x9e37_79b9);
        let mut reused = Vec::new();
        for _ in 0..20_000 {
            let m = random_message(&mut rng);
            let want = serde_reference::encode(&m, None);
            assert_eq!(
                String::from_utf8_lossy(&encode(&m)),
                String::from_utf8_lossy(&want),
                "{m:?}"
            );
            assert_eq!(encode(&m), want);
            // Appending after earlier output changes nothing.
            let before = reused.len();
            encode_into(&mut reused, &m);
            assert_eq!(reused[before..], want[..]);
            if reused.len() > 100_000 {
                reused.clear();
            }

            let reason = tricky_text(&mut rng, 30);
            let at = UNIX_EPOCH + Duration::from_millis(rng.u64(..1 << 50));
            assert_eq!(
                encode_dead_letter(&m, &reason, at),
                serde_reference::encode(&m, Some((&reason, at)))
            );
        }
    }

    #[test]
    fn one_allocation_for_a_plain_envelope() {
        let longest_numbers = Message::new(vec![b'x'; 100])
            .with_attempt(u32::MAX)
            .with_enqueued_at(Some(
                UNIX_EPOCH + Duration::from_millis(u64::MAX / 1_000_000),
            ));
        for m in [
            Message::new(""),
            Message::new(vec![b'x'; 100]).with_header("tenant", "acme"),
            Message::new(vec![b'x'; 100])
                .with_header("a", "")
                .with_header("tenant", "acme"),
            longest_numbers,
        ] {
            let raw = encode(&m);
            assert!(
                raw.len() <= capacity_hint(&m),
                "{} > {}",
                raw.len(),
                capacity_hint(&m)
            );
        }
    }

    #[test]
    fn random_messages_round_trip() {
        let mut rng = fastrand::Rng::with_seed(42);
        for _ in 0..20_000 {
            let m = random_message(&mut rng);
            let raw = encode(&m);
            assert!(serde_json::from_slice::<serde_json::Value>(&raw).is_ok());
            let d = decode(raw.into(), &src());
            assert_eq!(d.body(), m.body(), "{m:?}");
            assert_eq!(d.id(), m.id());
            assert_eq!(d.attempt(), m.attempt());
            assert_eq!(d.headers(), m.headers());
            assert_eq!(
                d.enqueued_at().map(unix_millis),
                m.enqueued_at().map(unix_millis)
            );
        }
    }

    #[test]
    fn the_enqueue_time_is_written_only_when_the_id_does_not_say_it() {
        let new = Message::new("x");
        let raw = String::from_utf8(encode(&new)).unwrap();
        assert!(!raw.contains("enqueued_at"), "{raw}");
        let d = decode(raw.into(), &src());
        assert_eq!(
            d.enqueued_at(),
            new.enqueued_at()
                .map(|t| UNIX_EPOCH + Duration::from_millis(unix_millis(t)))
        );

        let later = new
            .clone()
            .with_enqueued_at(Some(UNIX_EPOCH + Duration::from_millis(5)));
        let raw = String::from_utf8(encode(&later)).unwrap();
        assert!(raw.contains(r#""enqueued_at":5"#), "{raw}");

        let none = new.clone().with_enqueued_at(None);
        let raw = String::from_utf8(encode(&none)).unwrap();
        assert!(raw.contains(r#""enqueued_at":null"#), "{raw}");
        assert_eq!(decode(raw.into(), &src()).enqueued_at(), None);

        // Another id: nothing to take the time from, so nothing is written for no time.
        let own_id = none.with_id("order-42");
        let raw = String::from_utf8(encode(&own_id)).unwrap();
        assert!(!raw.contains("enqueued_at"), "{raw}");
        assert_eq!(decode(raw.into(), &src()).enqueued_at(), None);

        // Only Pythia's own envelope takes the time from the id.
        let python = format!(r#"{{"message_id":"{}","body":"x"}}"#, new.id());
        assert_eq!(decode(python.into(), &src()).enqueued_at(), None);
        let no_version = format!(r#"{{"id":"{}","body":"x","headers":{{}}}}"#, new.id());
        assert_eq!(decode(no_version.into(), &src()).enqueued_at(), None);
    }

    #[test]
    fn the_body_is_text_exactly_when_it_is_utf8() {
        for body in [
            &b"plain ascii, longer than one word"[..],
            "caf\u{e9} \"quoted\"\n".as_bytes(),
            b"plain ascii, then a lone \xff",
            b"\xe2\x82",
        ] {
            let raw = encode(&Message::new(body.to_vec()));
            let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
            let utf8 = std::str::from_utf8(body).is_ok();
            assert_eq!(v.get("body").is_some(), utf8, "{v}");
            assert_eq!(v.get("body_b64").is_some(), !utf8, "{v}");
        }
    }

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
    fn json_with_python_fields_and_others_is_a_raw_body() {
        for raw in [
            &br#"{"method":"POST","headers":{"content-type":"application/json"},"body":"{\"order\":7}","signature":"abc"}"#[..],
            br#"{"body": "x", "message_id": "m-1", "user": 1}"#,
            br#"{"body": "x", "headers": {}, "id": "mine"}"#,
            br#"{"body": "x", "headers": {}, "attempt": 3}"#,
        ] {
            let d = decode(Bytes::copy_from_slice(raw), &src());
            assert_eq!(d.body().as_ref(), raw, "{}", String::from_utf8_lossy(raw));
            assert!(d.headers().is_empty());
            assert_eq!(d.attempt(), 1);
            // Retried through Redis: the whole object is still the body.
            let again = decode(encode(&d.clone().with_attempt(2)).into(), &src());
            assert_eq!(again.body().as_ref(), raw);
            assert_eq!(again.attempt(), 2);
        }
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

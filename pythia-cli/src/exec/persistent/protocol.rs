//! The line protocol between `pythia run --exec-persistent` and its children: one JSON object
//! per line each way, UTF-8, `\n`-terminated (JSON escapes every newline inside a string, so a
//! line is always one whole object).
//!
//! To the child, one line per delivery:
//!
//! ```text
//! {"id":"…","attempt":1,"queue":"jobs","headers":{"k":"v"},"body":"text"}
//! {"id":"…","attempt":2,"queue":"jobs","headers":{},"body_base64":"AAEC/w=="}
//! ```
//!
//! `body` is the body when it is UTF-8; otherwise `body_base64` (standard alphabet, padded)
//! carries it instead. Exactly one of the two is present.
//!
//! From the child, one line per message, in any order, matched by `id`:
//!
//! ```text
//! {"id":"…","outcome":"ack"}
//! {"id":"…","outcome":"retry","after":2.5,"reason":"rate limited"}
//! {"id":"…","outcome":"reject","reason":"no such user"}
//! ```
//!
//! `after` (seconds, optional) and `reason` (optional) are read for `retry` and `reject`; other
//! fields are ignored. A line that is not such an object is a protocol error (see
//! [`parse_reply`]).

use std::borrow::Cow;
use std::time::Duration;

use pythia::{Headers, Message, WorkerError};
use serde::{Deserialize, Serialize};

/// What the child decided for one message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// Done: acknowledge.
    Ack,
    /// Try again later: after `after` when given, else by the retry policy's backoff.
    Retry {
        after: Option<Duration>,
        reason: Option<String>,
    },
    /// Never retry: dead-letter now.
    Reject { reason: Option<String> },
}

impl Verdict {
    /// The handler result this verdict stands for; `program` names the child in reasons.
    pub(crate) fn into_result(self, program: &str) -> Result<(), WorkerError> {
        let reason = |what: &str, r: Option<String>| match r {
            Some(r) if !r.is_empty() => format!("`{program}` {what}: {r}"),
            _ => format!("`{program}` {what}"),
        };
        match self {
            Self::Ack => Ok(()),
            Self::Retry {
                after: Some(after),
                reason: r,
            } => Err(WorkerError::retry_later(after, reason("asked to retry", r))),
            Self::Retry {
                after: None,
                reason: r,
            } => Err(WorkerError::retry(reason("asked to retry", r))),
            Self::Reject { reason: r } => Err(WorkerError::reject(reason("rejected it", r))),
        }
    }
}

/// One reply line, parsed.
#[derive(Debug, PartialEq)]
pub(crate) struct Reply {
    /// The id of the message it answers.
    pub(crate) id: String,
    pub(crate) verdict: Verdict,
}

#[derive(Serialize)]
struct Request<'a> {
    id: &'a str,
    attempt: u32,
    queue: &'a str,
    headers: &'a Headers,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Ack,
    Retry,
    Reject,
}

#[derive(Deserialize)]
struct RawReply<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    outcome: Outcome,
    #[serde(default)]
    after: Option<f64>,
    #[serde(default)]
    reason: Option<String>,
}

/// Appends the request line for `msg` (with its `\n`) to `out`.
pub(crate) fn write_request(out: &mut Vec<u8>, msg: &Message) {
    let (body, body_base64) = match std::str::from_utf8(msg.body()) {
        Ok(text) => (Some(text), None),
        Err(_) => (None, Some(base64(msg.body()))),
    };
    let request = Request {
        id: msg.id(),
        attempt: msg.attempt(),
        queue: msg.source().name(),
        headers: msg.headers(),
        body,
        body_base64,
    };
    serde_json::to_writer(&mut *out, &request).expect("serialising to a Vec cannot fail");
    out.push(b'\n');
}

/// Parses one reply line (without its `\n`).
///
/// # Errors
///
/// Why the line is no reply: not JSON, not an object, no string `id`, an `outcome` other than
/// `ack`, `retry` and `reject`, or an `after` that is negative or not a number of seconds.
pub(crate) fn parse_reply(line: &[u8]) -> Result<Reply, String> {
    // serde would also take an array for the struct, its fields by position.
    if !line.trim_ascii_start().starts_with(b"{") {
        return Err("not a JSON object".to_owned());
    }
    let raw: RawReply<'_> = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let after = raw
        .after
        .map(|s| Duration::try_from_secs_f64(s).map_err(|_| format!("`after` {s} is not a delay")))
        .transpose()?;
    let verdict = match raw.outcome {
        Outcome::Ack => Verdict::Ack,
        Outcome::Retry => Verdict::Retry {
            after,
            reason: raw.reason,
        },
        Outcome::Reject => Verdict::Reject { reason: raw.reason },
    };
    Ok(Reply {
        id: raw.id.into_owned(),
        verdict,
    })
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> shift & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0, 1, 2, 255]), "AAEC/w==");
    }

    #[test]
    fn requests_carry_text_bodies_as_text_and_others_as_base64() {
        let msg = Message::new("héllo\n\"x\"")
            .with_id("m1")
            .with_header("tenant", "acme")
            .with_attempt(2);
        let mut out = Vec::new();
        write_request(&mut out, &msg);
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], "m1");
        assert_eq!(v["attempt"], 2);
        assert_eq!(v["headers"]["tenant"], "acme");
        assert_eq!(v["body"], "héllo\n\"x\"");
        assert!(v.get("body_base64").is_none());

        let mut out = Vec::new();
        write_request(&mut out, &Message::new(vec![0xff, 0, b'a']).with_id("m2"));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["body_base64"], "/wBh");
        assert!(v.get("body").is_none());
    }

    #[test]
    fn replies_parse_to_verdicts_and_bad_lines_are_errors() {
        let ok = parse_reply(br#"{"id":"a","outcome":"ack","extra":1}"#).unwrap();
        assert_eq!((ok.id.as_str(), ok.verdict), ("a", Verdict::Ack));
        let r =
            parse_reply(br#"{"id":"b","outcome":"retry","after":1.5,"reason":"busy"}"#).unwrap();
        assert_eq!(
            r.verdict,
            Verdict::Retry {
                after: Some(Duration::from_millis(1500)),
                reason: Some("busy".into())
            }
        );
        let r = parse_reply(br#"{"id":"c","outcome":"reject"}"#).unwrap();
        assert_eq!(r.verdict, Verdict::Reject { reason: None });
        for bad in [
            &b"hello"[..],
            br#"{"outcome":"ack"}"#,
            br#"{"id":7,"outcome":"ack"}"#,
            br#"{"id":"a","outcome":"done"}"#,
            br#"{"id":"a","outcome":"retry","after":-1}"#,
            br#"["a","ack"]"#,
        ] {
            assert!(
                parse_reply(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn verdicts_become_handler_results() {
        assert!(Verdict::Ack.into_result("py").is_ok());
        let e = Verdict::Retry {
            after: Some(Duration::from_secs(3)),
            reason: Some("busy".into()),
        }
        .into_result("py")
        .unwrap_err();
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(e.to_string(), "`py` asked to retry: busy");
        let e = Verdict::Reject { reason: None }
            .into_result("py")
            .unwrap_err();
        assert!(!e.is_retryable());
        assert_eq!(e.to_string(), "`py` rejected it");
    }
}

//! What the endpoint answered, kept to what the outcome and its reason need.

use std::time::{Duration, SystemTime};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::ext::ReasonPhrase;
use hyper::header::RETRY_AFTER;

/// Largest response body read to keep the connection; past it the rest is not read and the
/// connection (HTTP/1.1) or stream (HTTP/2) is dropped.
const MAX_BODY: usize = 1024 * 1024;
/// Bytes of a response body kept for failure reasons.
pub(super) const PREVIEW: usize = 200;
/// Longest delay a `Retry-After` may ask for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The status, its reason phrase, `Retry-After` (in seconds) and the start of the body.
#[derive(Debug, Default)]
pub(super) struct Response {
    pub(super) status: u16,
    pub(super) reason: String,
    pub(super) retry_after: Option<Duration>,
    pub(super) preview: Vec<u8>,
}

impl Response {
    /// Reads the body to its end (up to [`MAX_BODY`]), so that the connection goes back to the
    /// pool, keeping its first [`PREVIEW`] bytes.
    pub(super) async fn read(res: hyper::Response<Incoming>) -> Result<Self, hyper::Error> {
        let (parts, mut body) = res.into_parts();
        // HTTP/1.1 carries the server's own phrase; HTTP/2 has none.
        let reason = match parts.extensions.get::<ReasonPhrase>() {
            Some(r) => String::from_utf8_lossy(r.as_bytes()).into_owned(),
            None => parts
                .status
                .canonical_reason()
                .unwrap_or_default()
                .to_owned(),
        };
        let retry_after = parts
            .headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, SystemTime::now()));
        let mut preview = Vec::new();
        let mut read = 0;
        while read <= MAX_BODY {
            let Some(frame) = body.frame().await else {
                break;
            };
            if let Ok(data) = frame?.into_data() {
                read += data.len();
                let room = PREVIEW.saturating_sub(preview.len());
                preview.extend_from_slice(&data[..room.min(data.len())]);
            }
        }
        Ok(Self {
            status: parts.status.as_u16(),
            reason,
            retry_after,
            preview,
        })
    }
}

/// A `Retry-After` value: seconds, or an HTTP date (a date already past asks for no wait),
/// capped at [`MAX_RETRY_AFTER`]; `None` when it is neither.
fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(now).unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(90)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(retry_after("99999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-1", now), None);
    }
}

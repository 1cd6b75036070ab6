//! What the endpoint answered, kept to what the outcome and its reason need.

use std::time::Duration;

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
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
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

//! One message as one POST: the body as the request body, the rest as sanitised headers.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use hyper::{Method, Request};
use pythia::Message;

use super::url::HttpUrl;

/// Longest header value sent.
const MAX_HEADER_VALUE: usize = 4096;

static MESSAGE_ID: HeaderName = HeaderName::from_static("x-pythia-message-id");
static ATTEMPT: HeaderName = HeaderName::from_static("x-pythia-attempt");
static QUEUE: HeaderName = HeaderName::from_static("x-pythia-queue");

/// `POST url` with the body and its `Content-Length` (always, 0 included: hyper leaves it out
/// for an empty body, and some servers answer a POST without one with 411), the message's id, attempt and queue as `X-Pythia-*` headers, and each of its headers as
/// `X-Pythia-Header-<name>`.
pub(super) fn post(url: &HttpUrl, msg: &Message) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(msg.body().clone()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = url.uri().clone();
    let h = req.headers_mut();
    h.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("pythia/", env!("CARGO_PKG_VERSION"))),
    );
    h.insert(CONTENT_LENGTH, HeaderValue::from(msg.body().len()));
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(MESSAGE_ID.clone(), header_value(msg.id()));
    h.insert(ATTEMPT.clone(), HeaderValue::from(msg.attempt()));
    h.insert(QUEUE.clone(), header_value(msg.source().name()));
    for (k, v) in msg.headers() {
        h.append(header_name(k), header_value(v));
    }
    req
}

/// `x-pythia-header-<name>` with anything but ASCII letters, digits and `-` as `-` (header names
/// are case-insensitive; HTTP/2 sends them in lower case).
fn header_name(key: &str) -> HeaderName {
    let mut name = String::with_capacity(16 + key.len());
    name.push_str("x-pythia-header-");
    name.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '-' {
            c.to_ascii_lowercase()
        } else {
            '-'
        }
    }));
    HeaderName::from_bytes(name.as_bytes()).expect("letters, digits and dashes make a token")
}

/// A header value without control characters (no CR/LF can split the request), trimmed and
/// capped.
fn header_value(v: &str) -> HeaderValue {
    let clean: String = v
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_HEADER_VALUE)
        .collect();
    HeaderValue::from_bytes(clean.trim().as_bytes())
        .expect("no control characters: visible ASCII, spaces and UTF-8 (bytes >= 0x80) only")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_sanitised() {
        assert_eq!(header_name("content type"), "x-pythia-header-content-type");
        assert_eq!(header_name("a\r\nb"), "x-pythia-header-a--b");
        assert_eq!(header_name("Tenant"), "x-pythia-header-tenant");
        assert_eq!(header_value("x\r\nInjected: 1"), "x  Injected: 1");
        assert_eq!(header_value(" é\u{85}\u{7f} ").as_bytes(), "é".as_bytes());
        assert_eq!(header_value(&"v".repeat(10_000)).len(), MAX_HEADER_VALUE);
    }

    #[test]
    fn a_message_becomes_a_post() {
        let url: HttpUrl = "http://127.0.0.1:9/hook?k=1".parse().unwrap();
        let msg = Message::new("body").with_header("trace id", "a\nb");
        let req = post(&url, &msg);
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri(), "http://127.0.0.1:9/hook?k=1");
        let h = req.headers();
        assert_eq!(h["x-pythia-header-trace-id"], "a b");
        assert_eq!(h["x-pythia-attempt"], msg.attempt().to_string().as_str());
        assert_eq!(h["x-pythia-message-id"], msg.id());
        assert_eq!(h["content-type"], "application/octet-stream");
        assert_eq!(h["content-length"], "4");
        let empty = post(&url, &Message::new(""));
        assert_eq!(empty.headers()["content-length"], "0");
    }
}

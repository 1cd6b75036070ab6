//! `--http URL`: a worker that POSTs each message to an HTTP endpoint and settles it by the
//! status code.
//!
//! The transport is hyper-util's pooled client ([`transport`]): HTTP/1.1 keep-alive for
//! `http://`, and with the `tls` feature `https://` through rustls, speaking HTTP/2 when the
//! server offers it through ALPN. What stays Pythia's own is the mapping between a message and
//! an exchange: the request ([`request`]: sanitised `X-Pythia-*` headers), the outcome of a
//! response (2xx acks; 408, 429 and 5xx retry, after `Retry-After` when given, a 429 with one
//! also pausing the queue's fetching for that long; other 4xx reject;
//! anything else retries), and failure reasons that name the endpoint without its query, where
//! API keys live. A request whose connection closes after it went out and before any answer
//! (a keep-alive connection the server timed out just then) is sent once more, on a fresh
//! connection, within the same attempt. The whole exchange, connecting and reading the body
//! included, runs under `--http-timeout`.

mod request;
mod response;
#[cfg(feature = "tls")]
mod tls;
mod transport;
mod url;

use std::error::Error;
use std::path::Path;
use std::time::Duration;

use pythia::{Message, Worker, WorkerError};

use self::response::Response;
use self::transport::Transport;
pub(crate) use self::url::HttpUrl;

/// POSTs each message to a URL; the status code decides the outcome.
#[derive(Debug)]
pub(crate) struct HttpWorker {
    url: HttpUrl,
    timeout: Duration,
    transport: Transport,
}

impl HttpWorker {
    /// A worker for `url` with a deadline per exchange. `ca_file` trusts only the CA
    /// certificates of that PEM file for `https://` (a private CA); the error is for the user
    /// (a CA file that cannot be read, no system roots).
    pub(crate) fn new(
        url: HttpUrl,
        timeout: Duration,
        ca_file: Option<&Path>,
    ) -> Result<Self, String> {
        let transport = transport::transport(&url, ca_file)?;
        Ok(Self {
            url,
            timeout,
            transport,
        })
    }

    async fn exchange(&self, msg: &Message) -> Result<Response, Box<dyn Error + Send + Sync>> {
        let t = &self.transport;
        let res = match t.pooled.request(request::post(&self.url, msg)).await {
            // The server closed the connection as the request went out, before any answer:
            // mostly a pooled keep-alive connection it had just timed out. Once more, on a
            // fresh connection, as browsers do (the client itself re-sends only requests it had
            // not begun to write). hyper-util does not say whether the connection was a pooled
            // one, so a fresh one that closes unanswered is tried once more too.
            Err(e) if closed_before_answering(&e) => {
                t.fresh.request(request::post(&self.url, msg)).await?
            }
            res => res?,
        };
        Ok(Response::read(res).await?)
    }

    fn outcome(&self, r: Response) -> Result<(), WorkerError> {
        let what = || {
            let preview = String::from_utf8_lossy(&r.preview);
            let preview: String = preview.trim().escape_debug().collect();
            let mut s = format!(
                "POST {} answered {} {}",
                self.url,
                r.status,
                r.reason.trim()
            );
            if !preview.is_empty() {
                s.push_str(": ");
                s.push_str(&preview);
            }
            s
        };
        let retry = |msg: String| match r.retry_after {
            Some(d) => WorkerError::retry_later(d, msg),
            None => WorkerError::retry(msg),
        };
        match r.status {
            200..=299 => Ok(()),
            // Too many requests, with a wait: the endpoint throttles everyone, so the whole
            // queue backs off (on every replica), not only this message.
            429 if r.retry_after.is_some() => Err(WorkerError::rate_limited(
                r.retry_after.unwrap_or_default(),
                what(),
            )),
            408 | 429 | 500..=599 => Err(retry(what())),
            400..=499 => Err(WorkerError::reject(what())),
            _ => Err(retry(format!(
                "{} (only 2xx acks; redirects are not followed)",
                what()
            ))),
        }
    }
}

impl Worker for HttpWorker {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        match tokio::time::timeout(self.timeout, self.exchange(msg)).await {
            Ok(Ok(response)) => self.outcome(response),
            Ok(Err(e)) => Err(WorkerError::retry(format!(
                "POST {} failed: {}",
                self.url,
                chain(&*e)
            ))),
            Err(_) => Err(WorkerError::retry(format!(
                "POST {} timed out after {:?} (--http-timeout)",
                self.url, self.timeout
            ))),
        }
    }
}

/// The connection was up and then closed (or reset) before a response head arrived.
fn closed_before_answering(e: &hyper_util::client::legacy::Error) -> bool {
    if e.is_connect() {
        return false;
    }
    let mut source = e.source();
    while let Some(cause) = source {
        if cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
        {
            return true;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
            return matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe);
        }
        source = cause.source();
    }
    false
}

/// An error and its sources, `: `-separated (the client's top-level error alone says only
/// "client error (Connect)"). None of hyper's, hyper-util's or rustls's errors quote the URL.
fn chain(e: &(dyn Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failure_reasons_never_name_the_query() {
        // Reasons go to the logs, the DLQ and the dashboard: no query, where API keys live.
        let url: HttpUrl = "http://127.0.0.1:1/hook?api_key=SECRET".parse().unwrap();
        let w = HttpWorker::new(url, Duration::from_secs(5), None).unwrap();
        let e = w.process_message(&Message::new("x")).await.unwrap_err();
        let text = e.to_string();
        assert!(text.contains("POST http://127.0.0.1:1/hook failed"), "{e}");
        assert!(
            text.contains("refused"),
            "the cause, not just the kind: {e}"
        );
        assert!(!text.contains("SECRET"), "{e}");
        let r = Response {
            status: 500,
            reason: "Oops".into(),
            retry_after: None,
            preview: Vec::new(),
        };
        let e = w.outcome(r).unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }

    #[test]
    fn status_codes_decide_the_outcome() {
        let w =
            HttpWorker::new("http://h/".parse().unwrap(), Duration::from_secs(1), None).unwrap();
        let r = |status, retry_after| Response {
            status,
            reason: "R".into(),
            retry_after,
            preview: b"why\n".to_vec(),
        };
        assert!(w.outcome(r(204, None)).is_ok());
        let e = w.outcome(r(422, None)).unwrap_err();
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("422 R: why"), "{e}");
        for s in [408, 500, 503, 302] {
            assert!(w.outcome(r(s, None)).unwrap_err().is_retryable(), "{s}");
        }
        let e = w.outcome(r(429, Some(Duration::from_secs(7)))).unwrap_err();
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        // A 429 with a wait throttles the whole queue; without one, or a 503, only retries.
        assert_eq!(e.throttle(), Some(Duration::from_secs(7)));
        assert_eq!(w.outcome(r(429, None)).unwrap_err().throttle(), None);
        let e = w.outcome(r(503, Some(Duration::from_secs(7)))).unwrap_err();
        assert_eq!(
            (e.retry_after(), e.throttle()),
            (Some(Duration::from_secs(7)), None)
        );
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn https_says_which_feature_it_needs() {
        let url = "https://example.com/hook?token=SECRET".parse().unwrap();
        let e = HttpWorker::new(url, Duration::from_secs(1), None).unwrap_err();
        assert!(e.contains("`tls` feature"), "{e}");
        assert!(!e.contains("SECRET"), "{e}");
    }

    #[test]
    fn a_ca_file_is_refused_for_plain_http() {
        let e = HttpWorker::new(
            "http://h/".parse().unwrap(),
            Duration::from_secs(1),
            Some(Path::new("/etc/ssl/certs/ca-certificates.crt")),
        )
        .unwrap_err();
        assert!(e.contains("--http-ca-file is for https://"), "{e}");
    }
}

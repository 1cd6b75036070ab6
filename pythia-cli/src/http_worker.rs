//! `--http URL`: a worker that POSTs each message to an HTTP endpoint and settles it by the
//! status code.
//!
//! A deliberately small HTTP/1.1 client over a tokio `TcpStream` (plain `http://` only): one
//! request per message, `Content-Length` bodies, responses framed by `Content-Length`, chunked
//! encoding or the end of the connection, and idle keep-alive connections reused. A reused
//! connection that the server closed while idle (it fails before any byte of a response
//! arrives) is retried once on a fresh connection, as browsers do. The whole exchange runs
//! under `--http-timeout`.

use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use pythia::{Message, Worker, WorkerError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head read.
const MAX_HEAD: usize = 64 * 1024;
/// Largest response body read to keep the connection; a longer one closes it.
const MAX_BODY: usize = 1024 * 1024;
/// Bytes of a response body kept for error messages.
const PREVIEW: usize = 200;
/// Idle keep-alive connections kept.
const MAX_IDLE: usize = 256;
/// Longest delay a `Retry-After` may ask for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Longest header value sent.
const MAX_HEADER_VALUE: usize = 4096;

/// An `http://host[:port][/path][?query]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpUrl {
    host: String,
    port: u16,
    /// The `Host` header: the host, and the port when not 80.
    authority: String,
    /// Path and query, as sent in the request line.
    target: String,
}

impl FromStr for HttpUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        // Errors show the URL without its query or fragment (an API key may be there).
        let shown = pythia::redis::mask_url(&s[..s.find(['?', '#']).unwrap_or(s.len())]);
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("https://") {
            return Err(format!(
                "invalid --http URL {shown:?}: https:// is not supported yet; run a TLS-terminating \
                 sidecar on localhost (e.g. stunnel, envoy, nginx) and give its http:// URL"
            ));
        }
        let Some(rest) = lower.starts_with("http://").then(|| &s[7..]) else {
            return Err(format!(
                "invalid --http URL {shown:?}: expected http://host[:port][/path]"
            ));
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        if authority.contains('@') {
            return Err(format!(
                "invalid --http URL {shown:?}: credentials in the URL are not supported"
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("invalid --http URL {shown:?}: unclosed [ in the host"))?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("invalid --http URL {shown:?}: no host"));
        }
        let port = match port {
            None | Some("") => 80,
            Some(p) => p
                .parse()
                .map_err(|_| format!("invalid --http URL {shown:?}: bad port {p:?}"))?,
        };
        let target = match target {
            "" => "/".to_owned(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_owned(),
        };
        if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!(
                "invalid --http URL {shown:?}: spaces or control characters in the path (percent-encode them)"
            ));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            target,
        })
    }
}

/// `http://host:port/path`: never the query, where API keys and tokens live, because this is
/// what failure reasons name, and they reach the logs, the dead-letter queue and the dashboard.
impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = &self.target[..self.target.find('?').unwrap_or(self.target.len())];
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}{path}", self.host, self.port)
        } else {
            write!(f, "http://{}:{}{path}", self.host, self.port)
        }
    }
}

/// POSTs each message to a URL; the status code decides the outcome.
#[derive(Debug)]
pub(crate) struct HttpWorker {
    url: HttpUrl,
    timeout: Duration,
    idle: Mutex<Vec<TcpStream>>,
}

/// What came back.
#[derive(Debug, Default)]
struct Response {
    status: u16,
    reason: String,
    retry_after: Option<Duration>,
    preview: Vec<u8>,
}

/// A failed exchange, and whether the server could have seen the request.
enum Failure {
    /// Nothing of a response arrived: on a reused connection, the server most likely closed it
    /// while idle, and the request may be sent again on a fresh one.
    NoResponse(io::Error),
    /// Failed after the response began.
    Broken(io::Error),
}

impl HttpWorker {
    pub(crate) fn new(url: HttpUrl, timeout: Duration) -> Self {
        Self {
            url,
            timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn head(&self, msg: &Message) -> Vec<u8> {
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: pythia/{}\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\
             X-Pythia-Message-Id: {}\r\nX-Pythia-Attempt: {}\r\nX-Pythia-Queue: {}\r\n",
            self.url.target,
            self.url.authority,
            env!("CARGO_PKG_VERSION"),
            msg.body().len(),
            header_value(msg.id()),
            msg.attempt(),
            header_value(msg.source().name()),
        );
        for (k, v) in msg.headers() {
            head.push_str(&header_name(k));
            head.push_str(": ");
            head.push_str(&header_value(v));
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    async fn exchange(&self, head: &[u8], body: &[u8]) -> io::Result<Response> {
        let reused = self.idle.lock().expect("idle lock").pop();
        if let Some(conn) = reused {
            match self.send(conn, head, body).await {
                Ok(r) => return Ok(r),
                Err(Failure::NoResponse(_)) => {} // stale: once more on a fresh connection
                Err(Failure::Broken(e)) => return Err(e),
            }
        }
        let conn = TcpStream::connect((self.url.host.as_str(), self.url.port)).await?;
        conn.set_nodelay(true)?;
        self.send(conn, head, body).await.map_err(|f| match f {
            Failure::NoResponse(e) | Failure::Broken(e) => e,
        })
    }

    async fn send(
        &self,
        mut conn: TcpStream,
        head: &[u8],
        body: &[u8],
    ) -> Result<Response, Failure> {
        let wrote = async {
            conn.write_all(head).await?;
            conn.write_all(body).await?;
            conn.flush().await
        };
        wrote.await.map_err(Failure::NoResponse)?;
        let mut reader = Reader::new(conn);
        let (response, reusable) = reader.response().await?;
        if reusable {
            let mut idle = self.idle.lock().expect("idle lock");
            if idle.len() < MAX_IDLE {
                idle.push(reader.stream);
            }
        }
        Ok(response)
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
        let head = self.head(msg);
        match tokio::time::timeout(self.timeout, self.exchange(&head, msg.body())).await {
            Ok(Ok(response)) => self.outcome(response),
            Ok(Err(e)) => Err(WorkerError::retry(format!("POST {} failed: {e}", self.url))),
            Err(_) => Err(WorkerError::retry(format!(
                "POST {} timed out after {:?} (--http-timeout)",
                self.url, self.timeout
            ))),
        }
    }
}

/// `X-Pythia-Header-<name>` with anything but ASCII letters, digits and `-` as `-`.
fn header_name(key: &str) -> String {
    let mut name = String::with_capacity(16 + key.len());
    name.push_str("X-Pythia-Header-");
    name.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '-' {
            c
        } else {
            '-'
        }
    }));
    name
}

/// A header value without control characters (no CR/LF can split the request), trimmed and
/// capped.
fn header_value(v: &str) -> String {
    v.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_HEADER_VALUE)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// A buffered reader of one response.
struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
}

impl Reader {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(1024),
            pos: 0,
        }
    }

    /// Reads more; false at the end of the stream.
    async fn fill(&mut self) -> io::Result<bool> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// A CRLF-terminated line (without it), read within `limit` bytes.
    async fn line(&mut self, limit: usize) -> io::Result<String> {
        loop {
            if let Some(i) = self.buf[self.pos..].windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[self.pos..self.pos + i]).into_owned();
                self.pos += i + 2;
                return Ok(line);
            }
            if self.buf.len() - self.pos > limit {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "response line too long",
                ));
            }
            if !self.fill().await? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Reads `n` body bytes, keeping the first ones in `preview`.
    async fn body(&mut self, mut n: usize, preview: &mut Vec<u8>) -> io::Result<()> {
        while n > 0 {
            if self.pos == self.buf.len() && !self.fill().await? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let take = n.min(self.buf.len() - self.pos);
            keep(preview, &self.buf[self.pos..self.pos + take]);
            self.pos += take;
            n -= take;
        }
        Ok(())
    }

    /// The response (skipping 1xx interim ones), and whether the connection can be reused.
    async fn response(&mut self) -> Result<(Response, bool), Failure> {
        let status_line = match self.line(MAX_HEAD).await {
            Ok(l) => l,
            Err(e) if self.buf.is_empty() => return Err(Failure::NoResponse(e)),
            Err(e) => return Err(Failure::Broken(e)),
        };
        self.rest(status_line).await.map_err(Failure::Broken)
    }

    async fn rest(&mut self, mut status_line: String) -> io::Result<(Response, bool)> {
        loop {
            let mut parts = status_line.splitn(3, ' ');
            let version = parts.next().unwrap_or_default().to_owned();
            let status: u16 = parts
                .next()
                .and_then(|c| c.parse().ok())
                .filter(|_| version.starts_with("HTTP/1."))
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("not an HTTP/1.x response: {:?}", status_line.escape_debug()),
                    )
                })?;
            let mut r = Response {
                status,
                reason: parts.next().unwrap_or_default().to_owned(),
                ..Response::default()
            };
            let mut length = None;
            let mut chunked = false;
            let mut close = version == "HTTP/1.0";
            let mut head_bytes = 0;
            loop {
                let line = self.line(MAX_HEAD).await?;
                head_bytes += line.len() + 2;
                if head_bytes > MAX_HEAD {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "response head too large",
                    ));
                }
                if line.is_empty() {
                    break;
                }
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                let value = value.trim();
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse::<usize>().ok(),
                    "transfer-encoding" => {
                        chunked = value.to_ascii_lowercase().contains("chunked");
                    }
                    "connection" => {
                        let v = value.to_ascii_lowercase();
                        close = v.contains("close") || (close && !v.contains("keep-alive"));
                    }
                    "retry-after" => {
                        r.retry_after = value
                            .parse::<u64>()
                            .ok()
                            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
                    }
                    _ => {}
                }
            }
            if (100..200).contains(&status) && status != 101 {
                status_line = self.line(MAX_HEAD).await?; // interim: the real one follows
                continue;
            }
            let mut preview = Vec::new();
            let complete = if matches!(status, 204 | 304) {
                true
            } else if chunked {
                self.chunked(&mut preview).await?
            } else if let Some(n) = length {
                if n > MAX_BODY {
                    self.body(PREVIEW.min(n), &mut preview).await?;
                    false
                } else {
                    self.body(n, &mut preview).await?;
                    true
                }
            } else {
                // Until the end of the connection, up to MAX_BODY.
                let mut read = self.buf.len() - self.pos;
                keep(&mut preview, &self.buf[self.pos..]);
                self.pos = self.buf.len();
                while read < MAX_BODY && self.fill().await? {
                    read += self.buf.len() - self.pos;
                    keep(&mut preview, &self.buf[self.pos..]);
                    self.pos = self.buf.len();
                }
                false
            };
            r.preview = preview;
            let reusable = complete && !close && self.pos == self.buf.len();
            return Ok((r, reusable));
        }
    }

    /// A chunked body; false when it was too long to read to the end.
    async fn chunked(&mut self, preview: &mut Vec<u8>) -> io::Result<bool> {
        let mut total = 0usize;
        loop {
            let line = self.line(1024).await?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidData, "bad chunk size in response")
            })?;
            if size == 0 {
                while !self.line(MAX_HEAD).await?.is_empty() {} // trailers
                return Ok(true);
            }
            total += size;
            if total > MAX_BODY {
                return Ok(false);
            }
            self.body(size, preview).await?;
            self.line(2).await?;
        }
    }
}

fn keep(preview: &mut Vec<u8>, bytes: &[u8]) {
    let room = PREVIEW.saturating_sub(preview.len());
    preview.extend_from_slice(&bytes[..room.min(bytes.len())]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_https_is_refused() {
        let u: HttpUrl = "http://127.0.0.1:8080/hook?x=1".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 8080));
        assert_eq!(u.target, "/hook?x=1");
        assert_eq!(
            u.to_string(),
            "http://127.0.0.1:8080/hook",
            "no query: it may hold a key"
        );
        let u: HttpUrl = "HTTP://example.com".parse().unwrap();
        assert_eq!((u.port, u.target.as_str()), (80, "/"));
        let u: HttpUrl = "http://[::1]:9000/a".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9000));
        let e = "https://example.com/".parse::<HttpUrl>().unwrap_err();
        assert!(e.contains("https:// is not supported"), "{e}");
        assert!("ftp://x".parse::<HttpUrl>().is_err());
        assert!("http://:80/".parse::<HttpUrl>().is_err());
        assert!("http://h:99999/".parse::<HttpUrl>().is_err());
        assert!("http://h/a b".parse::<HttpUrl>().is_err());
        let e = "http://u:hunter2@h/".parse::<HttpUrl>().unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        let e = "http://h:99999/hook?api_key=SECRET"
            .parse::<HttpUrl>()
            .unwrap_err();
        assert!(!e.contains("SECRET"), "{e}");
        let u: HttpUrl = "http://[::1]/a?k=SECRET#f".parse().unwrap();
        assert_eq!(u.to_string(), "http://[::1]:80/a");
    }

    #[tokio::test]
    async fn failure_reasons_never_name_the_query() {
        // Reasons go to the logs, the DLQ and the dashboard: no query, where API keys live.
        let url: HttpUrl = "http://127.0.0.1:1/hook?api_key=SECRET".parse().unwrap();
        let w = HttpWorker::new(url, Duration::from_secs(5));
        let e = w.process_message(&Message::new("x")).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("POST http://127.0.0.1:1/hook failed"),
            "{e}"
        );
        assert!(!e.to_string().contains("SECRET"), "{e}");
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
    fn headers_are_sanitised() {
        assert_eq!(header_name("content type"), "X-Pythia-Header-content-type");
        assert_eq!(header_name("a\r\nb"), "X-Pythia-Header-a--b");
        assert_eq!(header_value("x\r\nInjected: 1"), "x  Injected: 1");
    }

    #[test]
    fn status_codes_decide_the_outcome() {
        let w = HttpWorker::new("http://h/".parse().unwrap(), Duration::from_secs(1));
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
    }
}

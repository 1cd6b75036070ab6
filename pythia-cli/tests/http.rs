//! `pythia run --http` against real local endpoints (hyper servers run by the test) and a real
//! redis-server: keep-alive reuse counted in connections, `https://` with a private CA made with
//! openssl at test time (and refused without it), HTTP/2 negotiated through ALPN with
//! `Retry-After` and `--http-timeout` over it, and a TLS handshake that never finishes.
//! (`tests/config.rs` covers the status mapping and headers against a hand-written HTTP/1.1
//! server.)

mod common;
use pythia_test_support as support;

use std::convert::Infallible;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, Version};
#[cfg(feature = "tls")]
use hyper_util::rt::TokioExecutor;
use hyper_util::rt::TokioIo;

use common::{command, text};
use support::{RedisServer, cmd};

/// One request as the endpoint saw it.
#[derive(Debug, Clone)]
struct Seen {
    body: String,
    version: Version,
    attempt: String,
    content_length: Option<String>,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    at: Instant,
}

/// A local endpoint: answers by body (`ok` 200, `bad` 422, `busy` 429 with `Retry-After: 1`
/// the first time, `hang` nothing for 3 s the first time), counting the connections accepted.
struct Endpoint {
    port: u16,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Endpoint {
    /// Plain HTTP/1.1 with keep-alive.
    fn plain() -> Self {
        Self::start(None)
    }

    /// TLS with this server configuration; HTTP/2 when ALPN picked `h2`.
    #[cfg(feature = "tls")]
    fn tls(config: rustls::ServerConfig) -> Self {
        Self::start(Some(Arc::new(config)))
    }

    #[cfg(feature = "tls")]
    fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        Self::listen(move |tcp, seen| {
            let tls = tls.clone();
            async move {
                let Some(config) = tls else {
                    return serve_http1(TokioIo::new(tcp), seen).await;
                };
                // A client that refuses the certificate ends here.
                let Ok(stream) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await else {
                    return;
                };
                if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                    let service = hyper::service::service_fn(move |r| answer(r, seen.clone()));
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                } else {
                    serve_http1(TokioIo::new(stream), seen).await;
                }
            }
        })
    }

    #[cfg(not(feature = "tls"))]
    fn start(_tls: Option<()>) -> Self {
        Self::listen(|tcp, seen| serve_http1(TokioIo::new(tcp), seen))
    }

    /// Accepts on a loopback port in a thread of its own (the test thread blocks on the
    /// worker process), handing each connection to `serve`.
    fn listen<F, Fut>(serve: F) -> Self
    where
        F: Fn(tokio::net::TcpStream, Arc<Mutex<Vec<Seen>>>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (c, s) = (connections.clone(), seen.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                while let Ok((tcp, _)) = listener.accept().await {
                    c.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve(tcp, s.clone()));
                }
            });
        });
        Self {
            port,
            connections,
            seen,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn serve_http1<I>(io: I, seen: Arc<Mutex<Vec<Seen>>>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |r| answer(r, seen.clone()));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

async fn answer(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let version = req.version();
    let attempt = req
        .headers()
        .get("x-pythia-attempt")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let content_length = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match req.into_body().collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(_) => String::new(),
    };
    let earlier = {
        let mut s = seen.lock().unwrap();
        let n = s.iter().filter(|r| r.body == body).count();
        s.push(Seen {
            body: body.clone(),
            version,
            attempt,
            content_length,
            at: Instant::now(),
        });
        n
    };
    let reply = |status: u16, text: &'static str| {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from_static(text.as_bytes())))
            .unwrap()
    };
    Ok(match (body.as_str(), earlier) {
        ("hang", 0) => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            reply(200, "late")
        }
        ("busy", 0) => {
            let mut r = reply(429, "slow down");
            r.headers_mut()
                .insert("retry-after", hyper::header::HeaderValue::from_static("1"));
            r
        }
        ("bad", _) => reply(422, "no such account"),
        _ => reply(200, "ok"),
    })
}

/// `pythia run --burst` over `queue` with `--http url` and `extra` flags.
fn run_http(redis: &str, queue: &str, url: &str, extra: &[&str]) -> Output {
    command(["run", "--redis-url", redis, "--queue", queue, "--http", url])
        .args(["--burst", "--metrics-addr", "off", "--log", "error"])
        .args(extra)
        .env_remove("PYTHIA_CONFIG")
        .env_remove("PYTHIA_MAX_ATTEMPTS")
        // The system's roots only: the test CA must come from --http-ca-file.
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap()
}

async fn push(conn: &pythia_redis::RedisConnection, queue: &str, bodies: &[&str]) {
    let mut args = vec!["LPUSH", queue];
    args.extend_from_slice(bodies);
    let _: i64 = cmd(conn, &args).await;
}

#[tokio::test]
async fn keep_alive_connections_are_reused() {
    let redis = RedisServer::start();
    let conn = redis.connect().await;
    let endpoint = Endpoint::plain();
    push(&conn, "hooks", &["ok"; 299]).await;
    push(&conn, "hooks", &[""]).await;
    let url = format!("http://127.0.0.1:{}/hook", endpoint.port);
    let o = run_http(&redis.url(), "hooks", &url, &["--concurrency", "4"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("processed 300 (acked 300"), "{out}");
    let seen = endpoint.seen();
    assert_eq!(seen.len(), 300);
    assert!(
        seen.iter().all(|r| r.version == Version::HTTP_11),
        "{seen:?}"
    );
    assert!(seen.iter().all(|r| r.attempt == "1"), "{seen:?}");
    // Always a Content-Length, 0 for an empty body (hyper alone sends none then).
    for r in &seen {
        let want = r.body.len().to_string();
        assert_eq!(r.content_length.as_deref(), Some(want.as_str()), "{r:?}");
    }
    // About one connection per message in flight, not one per message. (A connection goes
    // back to the pool from a task of the client's once its response is read, so a request can
    // start before its predecessor's connection is back and open one more now and then.)
    let n = endpoint.connections();
    assert!((1..=10).contains(&n), "{n} connections for 300 requests");
}

/// Per connection: answers the first `answers` requests (keep-alive), then reads the next one
/// and closes without a word, as a server closing an idle connection just as a request goes out
/// does. Returns the port and the count of requests read.
fn closing_after(answers: usize) -> (u16, Arc<AtomicUsize>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut out = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                for n in 0..=answers {
                    let mut len = 0;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).unwrap();
                    counter.fetch_add(1, Ordering::SeqCst);
                    if n < answers {
                        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                        out.write_all(ok.as_bytes()).unwrap();
                    }
                }
            });
        }
    });
    (port, requests)
}

#[tokio::test]
async fn a_keep_alive_connection_closed_under_a_request_is_retried_once_on_a_fresh_one() {
    let redis = RedisServer::start();
    let conn = redis.connect().await;
    let (port, requests) = closing_after(1);
    push(&conn, "closing", &["m"; 20]).await;
    let url = format!("http://127.0.0.1:{port}/hook");
    let o = run_http(
        &redis.url(),
        "closing",
        &url,
        &["--concurrency", "1", "--max-attempts", "1"],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    // A message that meets a closing connection succeeds on a fresh one within its one
    // attempt. (Which messages meet one depends on whether the previous connection is back in
    // the pool when the next request starts: mostly, so some certainly do.)
    assert!(out.contains("processed 20 (acked 20"), "{out}");
    let n = requests.load(Ordering::SeqCst);
    assert!((21..=39).contains(&n), "{n} requests: {out}");

    // Once only: a server that never answers gets each attempt twice, then it fails.
    let (port, requests) = closing_after(0);
    push(&conn, "mute", &["x"]).await;
    let url = format!("http://127.0.0.1:{port}/hook");
    let o = run_http(&redis.url(), "mute", &url, &["--max-attempts", "1"]);
    let out = text(&o);
    assert!(out.contains("dead-lettered 1"), "{out}");
    assert_eq!(requests.load(Ordering::SeqCst), 2, "{out}");
    let dead: Vec<String> = cmd(&conn, &["LRANGE", "pythia:{mute}:dlq", "0", "-1"]).await;
    assert!(
        dead[0].contains(&format!("POST http://127.0.0.1:{port}/hook failed")),
        "{dead:?}"
    );
}

#[cfg(feature = "tls")]
mod tls {
    use rustls::ServerConfig;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    use super::*;

    /// The shared test PKI (`support::tls::TestPki`), with what these tests need of it.
    pub(super) struct Pki(crate::support::tls::TestPki);

    impl Pki {
        pub(super) fn new() -> Self {
            Self(crate::support::tls::TestPki::generate())
        }

        pub(super) fn ca(&self) -> String {
            self.0.ca_file().to_str().unwrap().to_owned()
        }

        /// A server configuration offering these ALPN protocols.
        pub(super) fn server(&self, alpn: &[&[u8]]) -> ServerConfig {
            let certs = CertificateDer::pem_file_iter(self.0.dir().join("server.crt"))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(self.0.dir().join("server.key")).unwrap();
            let mut config = ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            config
        }
    }
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn https_trusts_a_private_ca_and_refuses_an_unknown_one() {
    let redis = RedisServer::start();
    let conn = redis.connect().await;
    let pki = tls::Pki::new();
    let endpoint = Endpoint::tls(pki.server(&[b"http/1.1"]));
    let url = format!("https://127.0.0.1:{}/hook?token=SECRET", endpoint.port);

    // The system's roots do not know the test CA: the handshake fails, nothing is delivered.
    push(&conn, "refused", &["ok"]).await;
    let o = run_http(&redis.url(), "refused", &url, &["--max-attempts", "1"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("dead-lettered 1"), "{out}");
    let dead: Vec<String> = cmd(&conn, &["LRANGE", "pythia:{refused}:dlq", "0", "-1"]).await;
    assert_eq!(dead.len(), 1, "{out}");
    let reason = &dead[0];
    assert!(
        reason.contains(&format!(
            "POST https://127.0.0.1:{}/hook failed",
            endpoint.port
        )),
        "{reason}"
    );
    assert!(reason.contains("certificate"), "says why: {reason}");
    assert!(!reason.contains("SECRET"), "{reason}");
    assert!(endpoint.seen().is_empty());

    push(&conn, "trusted", &["ok"; 50]).await;
    let o = run_http(
        &redis.url(),
        "trusted",
        &url,
        &["--concurrency", "4", "--http-ca-file", &pki.ca()],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("processed 50 (acked 50"), "{out}");
    let seen = endpoint.seen();
    assert_eq!(seen.len(), 50);
    assert!(
        seen.iter().all(|r| r.version == Version::HTTP_11),
        "{seen:?}"
    );
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn http2_is_negotiated_over_tls_with_retry_after_and_timeouts() {
    let redis = RedisServer::start();
    let conn = redis.connect().await;
    let pki = tls::Pki::new();
    let endpoint = Endpoint::tls(pki.server(&[b"h2", b"http/1.1"]));
    let mut bodies = vec!["ok"; 40];
    bodies.extend(["busy", "hang", "bad"]);
    push(&conn, "h2", &bodies).await;
    let url = format!("https://localhost:{}/hook", endpoint.port);
    let started = Instant::now();
    let o = run_http(
        &redis.url(),
        "h2",
        &url,
        &[
            "--concurrency",
            "4",
            "--http-ca-file",
            &pki.ca(),
            "--http-timeout",
            "500ms",
            "--retry-delay",
            "50ms",
        ],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("processed 45 (acked 42, retried 2, dead-lettered 1)"),
        "{out}"
    );
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After");
    let seen = endpoint.seen();
    assert_eq!(seen.len(), 45);
    assert!(
        seen.iter().all(|r| r.version == Version::HTTP_2),
        "{seen:?}"
    );
    let busy: Vec<&Seen> = seen.iter().filter(|r| r.body == "busy").collect();
    assert_eq!(busy.len(), 2);
    assert!(
        busy[1].at - busy[0].at >= Duration::from_millis(900),
        "waited for Retry-After: {busy:?}"
    );
    // A 429 with Retry-After throttles the queue and hands the message back: no attempt counted.
    assert_eq!(
        (busy[0].attempt.as_str(), busy[1].attempt.as_str()),
        ("1", "1")
    );
    let hang = seen.iter().filter(|r| r.body == "hang").count();
    assert_eq!(hang, 2, "timed out after 500 ms, then retried");
    // Streams share connections: a timed-out request resets its stream, not the connection.
    let n = endpoint.connections();
    assert!((1..=4).contains(&n), "{n} connections");
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn a_tls_handshake_that_never_finishes_times_out() {
    let redis = RedisServer::start();
    let conn = redis.connect().await;
    // Accepts connections and never answers the ClientHello.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    push(&conn, "silent", &["ok"]).await;
    let started = Instant::now();
    let o = run_http(
        &redis.url(),
        "silent",
        &format!("https://127.0.0.1:{port}/hook"),
        &["--max-attempts", "1", "--http-timeout", "300ms"],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(started.elapsed() < Duration::from_secs(10), "{out}");
    let dead: Vec<String> = cmd(&conn, &["LRANGE", "pythia:{silent}:dlq", "0", "-1"]).await;
    assert_eq!(dead.len(), 1, "{out}");
    assert!(dead[0].contains("timed out after 300ms"), "{dead:?}");
}

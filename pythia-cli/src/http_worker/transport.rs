//! The pooled client behind `--http`: hyper-util's legacy `Client` over an `HttpConnector`
//! (TCP_NODELAY, idle keep-alive connections reused), wrapped in a rustls connector with the
//! `tls` feature.
//!
//! # Behaviour
//!
//! - `http://` speaks HTTP/1.1 with keep-alive; there is no cleartext HTTP/2 (h2c).
//! - `https://` (feature `tls`) offers `h2` and `http/1.1` through ALPN and speaks HTTP/2 when
//!   the server picks it: one connection then carries every request at once.
//! - Certificates are always verified, against the system's roots (as for `rediss://`: ring,
//!   `rustls-native-certs`, which also reads `SSL_CERT_FILE`), or only against the CAs of
//!   `--http-ca-file` when given. There is no switch to turn verification off.
//! - A request sent on a pooled connection that the server had already closed is sent again
//!   on a fresh one (hyper-util's `retry_canceled_requests`): it never reached the server. One
//!   whose connection closed after it went out, before an answer, is the worker's to re-send
//!   (see `HttpWorker`), through [`Transport::fresh`].

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

#[cfg(feature = "tls")]
use super::tls;
use super::url::{HttpUrl, Scheme};

/// Idle keep-alive connections kept (one host): more than any sane `--concurrency` needs.
const MAX_IDLE: usize = 256;
/// An idle connection older than this is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

#[cfg(feature = "tls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "tls"))]
type Connector = HttpConnector;

type HttpClient = Client<Connector, Full<Bytes>>;

/// The clients of one worker, sharing one connector (and TLS configuration).
#[derive(Debug)]
pub(crate) struct Transport {
    /// Every request goes through this one and its pool of keep-alive connections.
    pub(crate) pooled: HttpClient,
    /// Keeps no idle connection, so that each request opens its own: for the one re-send of a
    /// request whose pooled connection closed under it, which must not meet another pooled
    /// connection the server is closing too.
    pub(crate) fresh: HttpClient,
}

/// The clients for `url`. `ca_file` (a PEM file of CA certificates) replaces the system's
/// roots for `https://`; it is refused for `http://`, where it would silently mean nothing.
pub(crate) fn transport(url: &HttpUrl, ca_file: Option<&Path>) -> Result<Transport, String> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    if url.scheme() == Scheme::Http && ca_file.is_some() {
        return Err("--http-ca-file is for https:// URLs; this one is http://".to_owned());
    }
    #[cfg(feature = "tls")]
    let connector = {
        // The https connector hands the whole URI to this one, scheme and all.
        http.enforce_http(false);
        let tls = match url.scheme() {
            Scheme::Https => tls::config(ca_file)?,
            // Never used: the connector passes http:// straight to the TCP connector.
            Scheme::Http => tls::unused_config()?,
        };
        hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http)
    };
    #[cfg(not(feature = "tls"))]
    let connector = match url.scheme() {
        Scheme::Http => http,
        // Refused here rather than by the URL's parser, whose errors clap prints with the
        // whole value, query and all.
        Scheme::Https => {
            return Err(format!(
                "--http {url}: https:// needs the `pythia` binary built with the `tls` feature \
                 (cargo install pythia-cli --features tls)"
            ));
        }
    };
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(IDLE_TIMEOUT);
    Ok(Transport {
        pooled: builder
            .clone()
            .pool_max_idle_per_host(MAX_IDLE)
            .build(connector.clone()),
        fresh: builder.pool_max_idle_per_host(0).build(connector),
    })
}

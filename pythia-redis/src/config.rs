//! [`RedisConfig`]: where Redis is and how Pythia talks to it. Passwords never leave it.

use std::fmt;
use std::time::Duration;

use pythia_core::BrokerError;

/// The URL used when neither a URL nor `REDIS_URL` is given.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// Connection settings shared by every Redis broker and producer.
///
/// Built from a URL: `redis://[user[:password]@]host[:port][/db]`, or `rediss://…` for TLS
/// (needs the `tls` feature). [`RedisConfig::from_env`] reads `REDIS_URL`.
///
/// The URL's password is masked in `Debug`, in [`RedisConfig::masked_url`] and in every
/// error Pythia builds (`redis://user:***@host:6379`).
///
/// ```
/// use std::time::Duration;
/// use pythia_redis::RedisConfig;
///
/// let cfg = RedisConfig::from_url("redis://worker:s3cret@10.0.0.5:6380/2")
///     .unwrap()
///     .with_key_prefix("billing")
///     .with_block_timeout(Duration::from_secs(2));
/// assert_eq!(cfg.masked_url(), "redis://worker:***@10.0.0.5:6380/2");
/// assert!(!format!("{cfg:?}").contains("s3cret"));
/// assert!(RedisConfig::from_url("http://nope").is_err());
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    url: String,
    key_prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    block_timeout: Duration,
    tls_ca_file: Option<std::path::PathBuf>,
}

impl RedisConfig {
    /// Default key prefix (namespace) of Pythia's own keys: `pythia`.
    pub const DEFAULT_KEY_PREFIX: &'static str = "pythia";
    /// Default time allowed to open a connection: 5 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default time allowed for a non-blocking command's reply: 5 s.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default time a blocking read waits on an empty queue before returning: 1 s. Shutdown
    /// waits at most this long for an outstanding read.
    pub const DEFAULT_BLOCK_TIMEOUT: Duration = Duration::from_secs(1);
    /// What a blocking read's reply may take beyond its block time before the client gives up.
    /// A server under load answers late; giving up early can lose a popped item.
    pub const BLOCK_REPLY_MARGIN: Duration = Duration::from_secs(2);

    /// Settings for the Redis at `url`, with the defaults. Checks the URL's form (scheme,
    /// host, port, db), not whether the server is reachable.
    pub fn from_url(url: &str) -> Result<Self, BrokerError> {
        let url = url.trim();
        let masked = mask_url(url);
        let scheme = url.split_once("://").map(|(s, _)| s);
        match scheme {
            Some("redis" | "rediss" | "redis+unix" | "unix") => {}
            _ => {
                return Err(BrokerError::config(format!(
                    "invalid Redis URL {masked:?}: expected redis://[user[:password]@]host[:port][/db] or rediss://…"
                )));
            }
        }
        if let Err(e) = redis::Client::open(url) {
            return Err(BrokerError::config(format!(
                "invalid Redis URL {masked:?}: {}",
                scrub(&e.to_string(), url)
            )));
        }
        Ok(Self {
            url: url.to_owned(),
            key_prefix: Self::DEFAULT_KEY_PREFIX.to_owned(),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            block_timeout: Self::DEFAULT_BLOCK_TIMEOUT,
            tls_ca_file: None,
        })
    }

    /// Settings from `REDIS_URL`, or [`DEFAULT_URL`] when it is unset or empty.
    pub fn from_env() -> Result<Self, BrokerError> {
        match std::env::var("REDIS_URL") {
            Ok(u) if !u.trim().is_empty() => Self::from_url(&u),
            _ => Self::from_url(DEFAULT_URL),
        }
    }

    /// The namespace of Pythia's own keys (`<prefix>:{queue}:…`). Must be non-empty and free of
    /// braces and whitespace; an invalid prefix keeps the previous one and logs a warning.
    #[must_use]
    pub fn with_key_prefix(mut self, prefix: &str) -> Self {
        if prefix.is_empty() || prefix.contains(['{', '}']) || prefix.contains(char::is_whitespace)
        {
            tracing::warn!(prefix, "ignoring invalid key prefix");
        } else {
            self.key_prefix = prefix.to_owned();
        }
        self
    }

    /// Time allowed to open a connection (at least 100 ms).
    #[must_use]
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d.max(Duration::from_millis(100));
        self
    }

    /// Time allowed for a non-blocking command's reply (at least 100 ms).
    #[must_use]
    pub fn with_response_timeout(mut self, d: Duration) -> Self {
        self.response_timeout = d.max(Duration::from_millis(100));
        self
    }

    /// How long a blocking read waits on an empty queue (10 ms to 60 s).
    #[must_use]
    pub fn with_block_timeout(mut self, d: Duration) -> Self {
        self.block_timeout = d.clamp(Duration::from_millis(10), Duration::from_secs(60));
        self
    }

    /// For `rediss://` URLs (feature `tls`): trust the CA certificates in this PEM file instead
    /// of the system's roots (a private CA). Server certificates are always verified; there is
    /// no switch to turn verification off.
    #[must_use]
    pub fn with_tls_ca_file(mut self, pem_file: impl Into<std::path::PathBuf>) -> Self {
        self.tls_ca_file = Some(pem_file.into());
        self
    }

    /// The CA file set by [`with_tls_ca_file`](Self::with_tls_ca_file).
    pub fn tls_ca_file(&self) -> Option<&std::path::Path> {
        self.tls_ca_file.as_deref()
    }

    /// The URL with its password masked, for logs.
    pub fn masked_url(&self) -> String {
        mask_url(&self.url)
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// Time allowed to open a connection.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Time allowed for a non-blocking reply.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// How long a blocking read waits.
    pub fn block_timeout(&self) -> Duration {
        self.block_timeout
    }

    /// The reply timeout of a blocking connection: block time plus [`Self::BLOCK_REPLY_MARGIN`].
    pub fn blocking_response_timeout(&self) -> Duration {
        self.block_timeout + Self::BLOCK_REPLY_MARGIN
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Replaces any occurrence of this URL or its password in `text` with the masked form.
    pub(crate) fn scrub(&self, text: &str) -> String {
        scrub(text, &self.url)
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.masked_url())
            .field("key_prefix", &self.key_prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("block_timeout", &self.block_timeout)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

/// `url` with the password of its user-info part replaced by `***`
/// (`redis://:pw@h` → `redis://:***@h`, `redis://user:pw@h` → `redis://user:***@h`). A user
/// name alone is kept. Comma-separated lists of URLs are masked one by one.
pub fn mask_url(url: &str) -> String {
    url.split(',').map(mask_one).collect::<Vec<_>>().join(",")
}

fn mask_one(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                format!("{scheme}://{user}@{host}{tail}")
            }
        }
        None => url.to_owned(),
    }
}

fn password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = authority.rsplit_once('@')?.0;
    let pw = userinfo.split_once(':')?.1;
    (!pw.is_empty()).then_some(pw)
}

fn scrub(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &mask_url(url));
    if let Some(pw) = password(url) {
        out = out.replace(pw, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords_in_every_form() {
        let cases = [
            ("redis://:pw@h:1", "redis://:***@h:1"),
            ("redis://u:pw@h:1/3", "redis://u:***@h:1/3"),
            ("rediss://u:p@ss:w@h", "rediss://u:***@h"),
            ("redis://u@h", "redis://u@h"),
            ("redis://h:6379", "redis://h:6379"),
            (
                "redis://a:x@h1,redis://b:y@h2",
                "redis://a:***@h1,redis://b:***@h2",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(mask_url(url), want, "{url}");
        }
    }

    #[test]
    fn bad_urls_are_config_errors_without_the_password() {
        for url in [
            "http://u:hunter2@h",
            "nonsense",
            "redis://u:hunter2@h:notaport",
        ] {
            let e = RedisConfig::from_url(url).unwrap_err();
            assert_eq!(e.kind(), pythia_core::BrokerErrorKind::Config, "{url}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn scrub_removes_the_password_anywhere() {
        let cfg = RedisConfig::from_url("redis://u:hunter2@localhost:1").unwrap();
        let s = cfg.scrub("failed: redis://u:hunter2@localhost:1 said hunter2");
        assert!(!s.contains("hunter2"), "{s}");
    }

    #[test]
    fn setters_clamp() {
        let cfg = RedisConfig::from_url(DEFAULT_URL)
            .unwrap()
            .with_block_timeout(Duration::ZERO)
            .with_key_prefix("bad prefix");
        assert_eq!(cfg.block_timeout(), Duration::from_millis(10));
        assert_eq!(cfg.key_prefix(), "pythia");
    }
}

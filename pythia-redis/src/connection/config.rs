//! [`RedisConfig`]: where Redis is and how Pythia talks to it. Passwords never leave it.

use std::fmt;
use std::time::Duration;

use pythia_core::BrokerError;

/// The URL used when neither a URL nor `REDIS_URL` is given.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// Where the Redis deployment is and how Pythia finds the server to write to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Topology {
    /// One server at the (single) URL.
    #[default]
    Standalone,
    /// A Redis Cluster; the URLs are seed nodes (any reachable one is enough). Every key of
    /// one queue carries the queue's hash tag, so a queue lives in one slot.
    Cluster,
    /// A master watched by Redis Sentinel; the URLs are the sentinels, `master` the name they
    /// know it by. Pythia asks the sentinels for the current master and asks again when the
    /// master stops answering or turns into a replica (a failover).
    Sentinel {
        /// The master's name in the sentinels' configuration (`sentinel monitor <name> …`).
        master: String,
    },
}

/// Connection settings shared by every Redis broker and producer.
///
/// Built from a URL: `redis://[user[:password]@]host[:port][/db]`, or `rediss://…` for TLS
/// (needs the `tls` feature). [`RedisConfig::from_env`] reads `REDIS_URL`.
///
/// For Redis Cluster and Sentinel the URL is a comma-separated list: the cluster's seed nodes
/// with [`with_cluster`](Self::with_cluster), or the sentinels with
/// [`with_sentinel_master`](Self::with_sentinel_master). With Sentinel, the user name,
/// password and database in the URLs are used for the sentinels and for the master alike.
///
/// ```
/// use pythia_redis::{RedisConfig, Topology};
///
/// let cluster = RedisConfig::from_url("redis://10.0.0.1:7000,redis://10.0.0.2:7000")
///     .unwrap()
///     .with_cluster();
/// assert_eq!(cluster.topology(), &Topology::Cluster);
/// assert_eq!(cluster.urls().len(), 2);
///
/// let sentinel = RedisConfig::from_url("redis://s1:26379,redis://s2:26379,redis://s3:26379")
///     .unwrap()
///     .with_sentinel_master("mymaster");
/// assert!(matches!(sentinel.topology(), Topology::Sentinel { master } if master == "mymaster"));
/// ```
///
/// The URL's password is masked in `Debug`, in [`RedisConfig::masked_url`] and in every
/// error Pythia builds (`redis://user:***@host:6379`, `unix:///run/redis.sock?pass=***`):
/// see [`mask_url`].
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
    topology: Topology,
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
    /// host, port, db), not whether the server is reachable. `url` may be a comma-separated
    /// list (cluster seed nodes or sentinels); each one is checked.
    pub fn from_url(url: &str) -> Result<Self, BrokerError> {
        let urls = split_urls(url.trim());
        for one in &urls {
            check_url(one)?;
        }
        Ok(Self {
            url: urls.join(","),
            key_prefix: Self::DEFAULT_KEY_PREFIX.to_owned(),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            block_timeout: Self::DEFAULT_BLOCK_TIMEOUT,
            tls_ca_file: None,
            topology: Topology::Standalone,
        })
    }

    /// Settings from the environment: `REDIS_URL` ([`DEFAULT_URL`] when unset or empty),
    /// `PYTHIA_CLUSTER` (`1`/`true`/`yes`: the URLs are cluster seed nodes) and
    /// `PYTHIA_SENTINEL_MASTER` (a master name: the URLs are sentinels).
    pub fn from_env() -> Result<Self, BrokerError> {
        let cfg = match std::env::var("REDIS_URL") {
            Ok(u) if !u.trim().is_empty() => Self::from_url(&u)?,
            _ => Self::from_url(DEFAULT_URL)?,
        };
        let cluster = match std::env::var("PYTHIA_CLUSTER") {
            Ok(v) => parse_flag("PYTHIA_CLUSTER", &v)?,
            Err(_) => false,
        };
        let master = std::env::var("PYTHIA_SENTINEL_MASTER")
            .ok()
            .filter(|m| !m.trim().is_empty());
        match (cluster, master) {
            (true, Some(_)) => Err(BrokerError::config(
                "PYTHIA_CLUSTER and PYTHIA_SENTINEL_MASTER are both set: choose one topology",
            )),
            (true, None) => Ok(cfg.with_cluster()),
            (false, Some(m)) => Ok(cfg.with_sentinel_master(m.trim())),
            (false, None) => Ok(cfg),
        }
    }

    /// The URLs are the seed nodes of a Redis Cluster.
    #[must_use]
    pub fn with_cluster(mut self) -> Self {
        self.topology = Topology::Cluster;
        self
    }

    /// The URLs are Redis Sentinels watching the master named `master`.
    #[must_use]
    pub fn with_sentinel_master(mut self, master: impl Into<String>) -> Self {
        self.topology = Topology::Sentinel {
            master: master.into(),
        };
        self
    }

    /// Sets the topology (standalone, cluster or sentinel).
    #[must_use]
    pub fn with_topology(mut self, topology: Topology) -> Self {
        self.topology = topology;
        self
    }

    /// Where the deployment is: one server, a cluster or a sentinel-watched master.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The URLs, split at the commas that start a new URL (one for a standalone server).
    pub fn urls(&self) -> Vec<&str> {
        split_urls(&self.url)
    }

    /// Checks that the URLs fit the topology: one URL for a standalone server, no database
    /// other than 0 on a cluster, a non-empty master name for Sentinel.
    pub fn validate(&self) -> Result<(), BrokerError> {
        let n = self.urls().len();
        match &self.topology {
            Topology::Standalone if n > 1 => Err(BrokerError::config(format!(
                "{n} Redis URLs given ({}): a list of URLs needs --cluster (seed nodes) or \
                 --sentinel-master NAME (sentinels)",
                self.masked_url()
            ))),
            Topology::Cluster => {
                for u in self.urls() {
                    let info = redis::IntoConnectionInfo::into_connection_info(u)
                        .map_err(|e| BrokerError::config(scrub(&e.to_string(), u)))?;
                    if info.redis_settings().db() != 0 {
                        return Err(BrokerError::config(format!(
                            "Redis Cluster has only database 0, but {} names database {}",
                            mask_url(u),
                            info.redis_settings().db()
                        )));
                    }
                }
                Ok(())
            }
            Topology::Sentinel { master } if master.trim().is_empty() => Err(BrokerError::config(
                "the Sentinel master name is empty (--sentinel-master NAME)",
            )),
            _ => Ok(()),
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

    /// `text` (an error message, say) with every occurrence of these URLs masked and every
    /// password in them, raw or percent-decoded, replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
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
            .field("topology", &self.topology)
            .finish()
    }
}

/// `url` with every password replaced by `***`: the password of the user-info part
/// (`redis://:pw@h` → `redis://:***@h`, `redis://user:pw@h` → `redis://user:***@h`) and the
/// `pass` query parameter of socket URLs (`unix:///s.sock?pass=pw` → `unix:///s.sock?pass=***`).
/// A user name alone is kept. Comma-separated lists of URLs (cluster seed nodes, sentinels)
/// are masked one by one.
///
/// A URL is masked from redis-rs's own parse of it (`redis`, `rediss`, `valkey`, `valkeys`,
/// `redis+unix`, `valkey+unix`, `unix`), so that what is masked is exactly what would be sent
/// as a password. A URL that does not parse (a password holding `/`, `#` or `?` unencoded, a
/// bad port, another scheme) is masked conservatively: everything between the user name and
/// the last `@`, and every `pass=`/`password=` query value.
pub fn mask_url(url: &str) -> String {
    split_urls(url)
        .into_iter()
        .map(mask_one)
        .collect::<Vec<_>>()
        .join(",")
}

/// Query parameters that hold a password (redis-rs reads `pass` on socket URLs).
const PASSWORD_PARAMS: [&str; 2] = ["pass", "password"];

/// Splits a list of URLs at the commas that start a new URL (`…,redis://…`), so that a comma
/// inside a password does not cut a URL in two.
fn split_urls(list: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in list.match_indices(',') {
        if starts_with_scheme(list[i + 1..].trim_start()) {
            out.push(list[start..i].trim());
            start = i + 1;
        }
    }
    out.push(list[start..].trim());
    out
}

/// `scheme://` at the start of `s` (a letter, then letters, digits, `+`, `-` or `.`).
fn starts_with_scheme(s: &str) -> bool {
    let Some((scheme, _)) = s.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn mask_one(url: &str) -> String {
    match redis::parse_redis_url(url) {
        Some(mut parsed) => {
            if parsed.password().is_some() {
                // Cannot fail: the URL has a host, or it would have no password.
                let _ = parsed.set_password(Some("***"));
            }
            if parsed
                .query_pairs()
                .any(|(k, _)| PASSWORD_PARAMS.contains(&k.as_ref()))
            {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if PASSWORD_PARAMS.contains(&k.as_ref()) {
                            "***".to_owned()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        None => mask_unparsed(url),
    }
}

/// Masks a URL that redis-rs does not accept, erring on the side of masking too much.
fn mask_unparsed(url: &str) -> String {
    let (prefix, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let rest = match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => rest.to_owned(),
    };
    let mut out = prefix;
    let mut rest = rest.as_str();
    while let Some(at) = find_password_param(rest) {
        let (head, tail) = rest.split_at(at);
        out.push_str(head);
        out.push_str("***");
        rest = &tail[tail.find(['&', '#']).unwrap_or(tail.len())..];
    }
    out.push_str(rest);
    out
}

/// Where the value of the first `pass=` or `password=` parameter in `s` starts.
fn find_password_param(s: &str) -> Option<usize> {
    PASSWORD_PARAMS
        .iter()
        .filter_map(|name| {
            s.match_indices(&format!("{name}="))
                .find(|(i, _)| *i > 0 && matches!(s.as_bytes()[i - 1], b'?' | b'&' | b';'))
                .map(|(i, m)| i + m.len())
        })
        .min()
}

/// The secrets in one URL as they may appear in a message: raw and percent-decoded.
fn secrets(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    match redis::parse_redis_url(url) {
        Some(parsed) => {
            if let Some(pw) = parsed.password() {
                out.push(pw.to_owned());
            }
            if let Ok(info) = redis::IntoConnectionInfo::into_connection_info(url)
                && let Some(pw) = info.redis_settings().password()
            {
                out.push(pw.to_owned());
            }
            for (k, v) in parsed.query_pairs() {
                if PASSWORD_PARAMS.contains(&k.as_ref()) {
                    out.push(v.into_owned());
                }
            }
            if let Some(query) = parsed.query() {
                out.extend(raw_password_params(query));
            }
        }
        None => {
            if let Some((_, rest)) = url.split_once("://")
                && let Some((userinfo, _)) = rest.rsplit_once('@')
                && let Some((_, pw)) = userinfo.split_once(':')
            {
                out.push(pw.to_owned());
            }
            out.extend(raw_password_params(url));
        }
    }
    out.retain(|s| !s.is_empty() && s != "***");
    out
}

/// The raw values of the `pass=`/`password=` parameters in `s`.
fn raw_password_params(mut s: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(at) = find_password_param(s) {
        let tail = &s[at..];
        let end = tail.find(['&', '#']).unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        s = &tail[end..];
    }
    out
}

fn check_url(url: &str) -> Result<(), BrokerError> {
    let masked = mask_url(url);
    match url.split_once("://").map(|(s, _)| s) {
        Some("redis" | "rediss" | "redis+unix" | "unix" | "valkey" | "valkeys" | "valkey+unix") => {
        }
        _ => {
            return Err(BrokerError::config(format!(
                "invalid Redis URL {masked:?}: expected redis://[user[:password]@]host[:port][/db] or rediss://…"
            )));
        }
    }
    redis::Client::open(url).map(drop).map_err(|e| {
        BrokerError::config(format!(
            "invalid Redis URL {masked:?}: {}",
            scrub(&e.to_string(), url)
        ))
    })
}

fn parse_flag(name: &str, value: &str) -> Result<bool, BrokerError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        other => Err(BrokerError::config(format!(
            "{name}={other:?}: expected true or false"
        ))),
    }
}

fn scrub(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &mask_url(url));
    for one in split_urls(url) {
        out = out.replace(one, &mask_one(one));
        let mut secrets = secrets(one);
        // The longest first: a password that holds another one is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for secret in secrets {
            out = out.replace(&secret, "***");
        }
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
    fn masks_socket_url_passwords_and_every_scheme_redis_accepts() {
        let cases = [
            (
                "unix:///tmp/r.sock?pass=hunter2",
                "unix:///tmp/r.sock?pass=***",
            ),
            (
                "redis+unix:///tmp/r.sock?user=u&pass=hunter2&db=1",
                "redis+unix:///tmp/r.sock?user=u&pass=***&db=1",
            ),
            (
                "valkey+unix:///tmp/r.sock?pass=hunter2",
                "valkey+unix:///tmp/r.sock?pass=***",
            ),
            ("valkeys://u:hunter2@h:1", "valkeys://u:***@h:1"),
            ("redis://:hunter2@h:1", "redis://:***@h:1"),
            // Percent-encoded special characters: the whole password goes.
            ("redis://u:hu%2Fnt%23er2@h:1", "redis://u:***@h:1"),
            // Not accepted by redis-rs (the password cuts the authority short): masked anyway.
            ("redis://:hunt/er2@h:1", "redis://:***@h:1"),
            ("redis://:hunt#er2@h:1", "redis://:***@h:1"),
            ("redis://:hunt?er2@h:1", "redis://:***@h:1"),
            (
                "unix://$STATE/r.sock?pass=hunter2",
                "unix://$STATE/r.sock?pass=***",
            ),
            // A comma in a password does not split the list there.
            (
                "redis://:hun,ter2@a:1,redis://:hunter2@b:2",
                "redis://:***@a:1,redis://:***@b:2",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(mask_url(url), want, "{url}");
        }
    }

    #[test]
    fn configs_never_show_a_password() {
        // Each URL, and its password as redis-rs decodes it (its errors may name that).
        for (url, password) in [
            ("unix:///tmp/r.sock?pass=hunter2", "hunter2"),
            (
                "redis+unix:///tmp/r.sock?user=u&pass=hunter%262",
                "hunter&2",
            ),
            ("redis://u:hunter2@h:1", "hunter2"),
            ("redis://u:hunter%2F2@h:1", "hunter/2"),
            (
                "redis://:hunter2@s1:26379,redis://:hunter2@s2:26379",
                "hunter2",
            ),
            ("redis://:hunter,2@a:1,redis://:hunter2@b:2", "hunter,2"),
        ] {
            let cfg = RedisConfig::from_url(url).unwrap();
            for shown in [format!("{cfg:?}"), cfg.masked_url()] {
                assert!(!shown.contains("hunter"), "{url}: {shown}");
            }
            let s = cfg.scrub(&format!("{url} refused auth {password}"));
            assert!(!s.contains("hunter"), "{url}: {s}");
        }
        assert_eq!(
            RedisConfig::from_url("redis://:hunter,2@a:1,redis://:x@b:2")
                .unwrap()
                .urls(),
            ["redis://:hunter,2@a:1", "redis://:x@b:2"]
        );
        for url in [
            "unix://$STATE/nonexistent.sock?pass=hunter2",
            "redis+unix://$STATE/x.sock?user=u&pass=hunter2",
            "redis://:hunt/er2@127.0.0.1:1",
            "redis://:hunt#er2@127.0.0.1:1",
            "redis://:hunt?er2@127.0.0.1:1",
        ] {
            match RedisConfig::from_url(url) {
                Err(e) => assert!(!e.to_string().contains("hunt"), "{url}: {e}"),
                Ok(cfg) => assert!(!format!("{cfg:?}").contains("hunt"), "{url}"),
            }
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
    fn url_lists_need_a_topology() {
        let urls = "redis://u:hunter2@a:7000, redis://u:hunter2@b:7000";
        let cfg = RedisConfig::from_url(urls).unwrap();
        assert_eq!(
            cfg.urls(),
            ["redis://u:hunter2@a:7000", "redis://u:hunter2@b:7000"]
        );
        let e = cfg.validate().unwrap_err();
        assert!(e.to_string().contains("--cluster"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(cfg.clone().with_cluster().validate().is_ok());
        assert!(cfg.clone().with_sentinel_master("m").validate().is_ok());
        assert!(cfg.with_sentinel_master(" ").validate().is_err());
        let e = RedisConfig::from_url("redis://a:7000/3")
            .unwrap()
            .with_cluster()
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("database 3"), "{e}");
        assert!(RedisConfig::from_url("redis://a:1,http://b").is_err());
    }

    #[test]
    fn scrub_masks_every_password_of_a_list() {
        let cfg = RedisConfig::from_url("redis://:one@a:1,redis://:two@b:2").unwrap();
        let s = cfg.scrub("a said one, b said two");
        assert!(!s.contains("one") && !s.contains("two"), "{s}");
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

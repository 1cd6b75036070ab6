//! Connecting to Redis at start-up, and waiting for it when it is not there yet.
//!
//! A worker is often started before its Redis is reachable (a compose file's start order, a
//! Kubernetes rollout, a Redis restart): exiting at once turns that into a crash loop. So every
//! command retries an unreachable server with capped exponential backoff until
//! `--connect-timeout` has passed (for ever by default for `run`, 10 s for the other commands),
//! logging one line when it starts waiting and one per [`LOG_WINDOW`] after that, not one per
//! attempt. Only an unreachable server is retried: a bad URL, a refused password or an untrusted
//! TLS certificate fails at once (exit 2), and a server that cannot be reached in time exits 69
//! (`EX_UNAVAILABLE`).

use std::time::Duration;

use pythia::redis::{RedisConfig, RedisConnection};
use pythia::{BrokerError, BrokerErrorKind};
use tokio::time::Instant;

use crate::cli::{ConnectTimeout, QueueArgs, RedisArgs, TopologyArgs};
use crate::error::CliError;

/// The first pause between attempts; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// At most one "still waiting" line per this window.
const LOG_WINDOW: Duration = Duration::from_secs(30);

/// Connects to the Redis of `args`, waiting up to its `--connect-timeout` (10 s by default).
pub(crate) async fn connect(args: &QueueArgs) -> Result<RedisConnection, CliError> {
    args.redis.connect().await
}

impl RedisArgs {
    /// Connects to this Redis deployment, waiting up to `--connect-timeout` (10 s by default)
    /// for an unreachable one.
    pub(crate) async fn connect(&self) -> Result<RedisConnection, CliError> {
        self.connect_or_wait(ConnectTimeout::ONE_SHOT).await
    }

    /// Connects to this Redis deployment, waiting up to `--connect-timeout`, or `default` when
    /// the flag was not given.
    pub(crate) async fn connect_or_wait(
        &self,
        default: ConnectTimeout,
    ) -> Result<RedisConnection, CliError> {
        let config = config_for(&self.redis_url, &self.topology, &self.key_prefix)?;
        connect_waiting(config, self.connect_timeout.unwrap_or(default)).await
    }
}

/// Connects to the standalone Redis at `url`, waiting up to 10 s for it.
pub(crate) async fn connect_url(url: &str, key_prefix: &str) -> Result<RedisConnection, CliError> {
    let config = config_for(url, &TopologyArgs::default(), key_prefix)?;
    connect_waiting(config, ConnectTimeout::ONE_SHOT).await
}

/// The library's settings for the Redis deployment at `url` (one URL, or a list of cluster
/// seed nodes or sentinels as `topology` says).
fn config_for(
    url: &str,
    topology: &TopologyArgs,
    key_prefix: &str,
) -> Result<RedisConfig, CliError> {
    if !cfg!(feature = "tls") && url.split(',').any(|u| u.trim().starts_with("rediss://")) {
        return Err(CliError::usage(
            "rediss:// (TLS) needs the `tls` feature, which this pythia was built without: \
             build it with the default features (cargo build --release -p pythia-cli) or use \
             the deploy/Dockerfile image",
        ));
    }
    let mut config = RedisConfig::from_url(url)
        .map_err(CliError::usage)?
        .with_key_prefix(key_prefix)
        .with_topology(topology.topology());
    // A private CA for rediss://.
    if let Some(ca) = std::env::var_os("REDIS_TLS_CA_FILE").filter(|v| !v.is_empty()) {
        config = config.with_tls_ca_file(ca);
    }
    Ok(config)
}

/// Connects, retrying an unreachable server with backoff until `limit` has passed.
async fn connect_waiting(
    config: RedisConfig,
    limit: ConnectTimeout,
) -> Result<RedisConnection, CliError> {
    let started = Instant::now();
    let deadline = match limit {
        ConnectTimeout::Forever => None,
        ConnectTimeout::Within(d) => Some(started + d),
    };
    let mut backoff = FIRST_BACKOFF;
    let mut attempts: u64 = 0;
    let mut next_log = started;
    let mut last_error: Option<BrokerError> = None;
    loop {
        attempts += 1;
        let attempt = RedisConnection::connect(config.clone());
        // `None`: the deadline cut the attempt short.
        let result = match deadline {
            None => attempt.await.map_err(Some),
            Some(at) => match tokio::time::timeout_at(at, attempt).await {
                Ok(r) => r.map_err(Some),
                Err(_) => Err(None),
            },
        };
        let error = match result {
            Ok(conn) => {
                if attempts > 1 {
                    tracing::info!(
                        url = %config.masked_url(),
                        attempts,
                        waited = %crate::commands::human_duration(started.elapsed()),
                        "Redis is reachable: connected"
                    );
                }
                return Ok(conn);
            }
            Err(Some(e)) if e.kind() == BrokerErrorKind::Connection => e,
            Err(Some(e)) if e.kind() == BrokerErrorKind::Config => {
                return Err(CliError::usage(e));
            }
            Err(Some(e)) => return Err(CliError::runtime(e)),
            // The error of the attempt before says more than "no answer in time".
            Err(None) => last_error.take().unwrap_or_else(|| {
                BrokerError::connection(format!(
                    "cannot connect to Redis at {}: no answer",
                    config.masked_url()
                ))
            }),
        };
        let give_up = |now: Instant| {
            CliError::unavailable(format!(
                "{error} (gave up after {} and {attempts} attempt{}: --connect-timeout)",
                crate::commands::human_duration(now - started),
                if attempts == 1 { "" } else { "s" }
            ))
        };
        let now = Instant::now();
        if deadline.is_some_and(|at| now >= at) {
            return Err(give_up(now));
        }
        if now >= next_log {
            let bound = match limit {
                ConnectTimeout::Forever => "for ever".to_owned(),
                ConnectTimeout::Within(d) => {
                    format!("up to {}", crate::commands::human_duration(d))
                }
            };
            if attempts == 1 {
                tracing::warn!(
                    error = %error,
                    "Redis is not reachable yet: waiting {bound}, retrying with backoff (--connect-timeout)"
                );
            } else {
                tracing::warn!(
                    error = %error,
                    attempts,
                    waited = %crate::commands::human_duration(now - started),
                    "still waiting for Redis"
                );
            }
            next_log = now + LOG_WINDOW;
        }
        // Jitter spreads the replicas of a rollout that all wait for the same server.
        let pause = backoff.mul_f64(0.5 + fastrand::f64() / 2.0);
        let wake = match deadline {
            Some(at) => (now + pause).min(at),
            None => now + pause,
        };
        tokio::time::sleep_until(wake).await;
        if deadline.is_some_and(|at| wake >= at) {
            return Err(give_up(Instant::now()));
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        last_error = Some(error);
    }
}

//! One module per subcommand.

pub(crate) mod bench;
pub(crate) mod produce;
pub(crate) mod quickstart;
pub(crate) mod run;

use pythia::BrokerErrorKind;
use pythia::redis::{RedisConfig, RedisConnection};

use crate::cli::QueueArgs;
use crate::error::CliError;

/// Connects to the Redis of `args`, with clear errors for a bad URL or an unreachable server.
pub(crate) async fn connect(args: &QueueArgs) -> Result<RedisConnection, CliError> {
    connect_url(&args.redis_url, &args.key_prefix).await
}

pub(crate) async fn connect_url(url: &str, key_prefix: &str) -> Result<RedisConnection, CliError> {
    let mut config = RedisConfig::from_url(url)
        .map_err(CliError::usage)?
        .with_key_prefix(key_prefix);
    // A private CA for rediss:// (the binary needs the `tls` feature).
    if let Some(ca) = std::env::var_os("REDIS_TLS_CA_FILE").filter(|v| !v.is_empty()) {
        config = config.with_tls_ca_file(ca);
    }
    RedisConnection::connect(config)
        .await
        .map_err(|e| match e.kind() {
            BrokerErrorKind::Config | BrokerErrorKind::Connection => CliError::usage(e),
            _ => CliError::runtime(e),
        })
}

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
    let config = RedisConfig::from_url(url)
        .map_err(CliError::usage)?
        .with_key_prefix(key_prefix);
    RedisConnection::connect(config)
        .await
        .map_err(|e| match e.kind() {
            BrokerErrorKind::Config | BrokerErrorKind::Connection => CliError::usage(e),
            _ => CliError::runtime(e),
        })
}

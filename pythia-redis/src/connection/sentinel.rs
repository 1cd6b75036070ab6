//! A Sentinel-watched master: which one the sentinels named last, and asking them again after
//! an error (at most every [`RESOLVE_EVERY`]).

use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use pythia_core::BrokerError;
use redis::aio::ConnectionManager;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};

use redis::IntoConnectionInfo;

use super::config::RedisConfig;
use super::error::{invalid, redis_error, unreachable};
use super::manager_config;

/// The master the sentinels named last, and how to ask them again.
pub(super) struct SentinelState {
    config: RedisConfig,
    sentinels: tokio::sync::Mutex<SentinelClient>,
    current: RwLock<Current>,
    /// When the sentinels were last asked, to ask at most every [`RESOLVE_EVERY`].
    last_asked: Mutex<Instant>,
}

struct Current {
    client: redis::Client,
    manager: ConnectionManager,
}

/// The shortest gap between two questions to the sentinels after errors.
const RESOLVE_EVERY: Duration = Duration::from_millis(250);

impl SentinelState {
    pub(super) async fn connect(config: &RedisConfig, master: &str) -> Result<Self, BrokerError> {
        if config.tls_ca_file().is_some() {
            return Err(BrokerError::config(
                "a TLS CA file is not supported with Sentinel yet; use the system's roots",
            ));
        }
        let urls = config.urls();
        let first = urls[0]
            .into_connection_info()
            .map_err(|e| invalid(config, &e))?;
        let mut node = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(first.redis_settings().clone());
        if urls[0].starts_with("rediss://") {
            node = node.set_tls_mode(redis::TlsMode::Secure);
        }
        let mut sentinels = SentinelClient::build(
            urls.clone(),
            String::from(master),
            Some(node),
            SentinelServerType::Master,
        )
        .map_err(|e| invalid(config, &e))?;
        let client = sentinels.async_get_client().await.map_err(|e| {
            BrokerError::connection(format!(
                "no sentinel at {} names a reachable master {master:?}: {}",
                config.masked_url(),
                config.scrub(&e.to_string())
            ))
        })?;
        let manager = ConnectionManager::new_with_config(client.clone(), manager_config(config))
            .await
            .map_err(|e| unreachable(config, &e))?;
        tracing::info!(master, addr = %client.get_connection_info().addr(), "the sentinels name the master");
        Ok(Self {
            config: config.clone(),
            sentinels: tokio::sync::Mutex::new(sentinels),
            current: RwLock::new(Current { client, manager }),
            last_asked: Mutex::new(Instant::now()),
        })
    }

    pub(super) fn current(&self) -> ConnectionManager {
        self.current.read().expect("sentinel state").manager.clone()
    }

    pub(super) fn current_addr(&self) -> String {
        let current = self.current.read().expect("sentinel state");
        current.client.get_connection_info().addr().to_string()
    }

    /// After a failed command: when the failure says the master may have moved (it refuses
    /// writes as a replica, or cannot be reached), ask the sentinels again.
    pub(super) async fn after_error(&self, e: &redis::RedisError) {
        let moved = e.code() == Some("READONLY")
            || e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout();
        if moved && let Err(err) = self.resolve(false).await {
            tracing::debug!(error = %err, "asking the sentinels for the master failed");
        }
    }

    /// Asks the sentinels for the master and, when it moved, points the shared connection at
    /// the new one. Returns a client for the current master. Without `force`, asks at most
    /// every [`RESOLVE_EVERY`] and not while another task is asking.
    pub(super) async fn resolve(&self, force: bool) -> Result<redis::Client, BrokerError> {
        let recent = {
            let mut last = self.last_asked.lock().expect("sentinel clock");
            let recent = last.elapsed() < RESOLVE_EVERY;
            if !recent || force {
                *last = Instant::now();
            }
            recent
        };
        let current = || self.current.read().expect("sentinel state").client.clone();
        if recent && !force {
            return Ok(current());
        }
        let mut sentinels = if force {
            self.sentinels.lock().await
        } else {
            match self.sentinels.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(current()),
            }
        };
        let asking =
            tokio::time::timeout(self.config.connect_timeout(), sentinels.async_get_client());
        let client = match asking.await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                return Err(redis_error(
                    &self.config,
                    "SENTINEL get-master-addr-by-name",
                    e,
                ));
            }
            Err(_) => {
                return Err(BrokerError::connection(format!(
                    "the sentinels at {} did not answer within {:?}",
                    self.config.masked_url(),
                    self.config.connect_timeout()
                )));
            }
        };
        let addr = client.get_connection_info().addr().to_string();
        if addr == self.current_addr() {
            return Ok(client);
        }
        let manager =
            ConnectionManager::new_with_config(client.clone(), manager_config(&self.config))
                .await
                .map_err(|e| unreachable(&self.config, &e))?;
        tracing::warn!(
            from = %self.current_addr(),
            to = %addr,
            "the Redis master moved (Sentinel failover); following it"
        );
        *self.current.write().expect("sentinel state") = Current {
            client: client.clone(),
            manager,
        };
        Ok(client)
    }
}

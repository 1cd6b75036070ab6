//! [`RedisConnection`]: one shared auto-reconnecting connection for everything non-blocking,
//! and dedicated connections for blocking reads, on a standalone server, a Redis Cluster or a
//! Sentinel-watched master alike.

mod blocking;
pub mod config;
mod error;
pub(crate) mod in_order;
mod node;
mod sentinel;
pub(crate) mod transient_retry;

pub use self::blocking::BlockingConnection;
pub(crate) use self::blocking::BlockingSlot;
pub(crate) use self::error::redis_error;
use self::error::{invalid, is_refused_credentials, unreachable};
use self::node::Node;
use self::sentinel::SentinelState;

use std::sync::Arc;
use std::time::Duration;

use pythia_core::BrokerError;

use crate::client_metrics::ClientMetrics;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};

use crate::connection::config::{RedisConfig, Topology};

/// A handle on one Redis deployment (a server, a cluster or a Sentinel-watched master), cheap
/// to clone.
///
/// * [`manager`](Self::manager): a [`SharedConnection`] shared by every non-blocking command
///   (acks, produces, heartbeats, scripts). It reconnects by itself after a restart or a
///   dropped connection, follows slot moves on a cluster and a failover under Sentinel; the
///   command that failed returns its error, and the caller's own backoff retries it.
/// * [`blocking`](Self::blocking): a fresh connection for one consumer's blocking reads
///   (BRPOP, BLMOVE, XREADGROUP BLOCK). A blocking command on the shared connection would stall
///   every other command behind it; and its reply timeout is set above the block time, since a
///   client that gives up before the server answers can lose a popped item.
#[derive(Clone)]
pub struct RedisConnection {
    inner: Arc<Inner>,
}

struct Inner {
    config: RedisConfig,
    backend: Backend,
    shared: SharedConnection,
    metrics: Arc<ClientMetrics>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.metrics.connection_closed();
    }
}

// One per connection, behind an `Arc`: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Backend {
    Standalone(redis::Client),
    /// The client for blocking connections (its reply timeout is the blocking one).
    Cluster(ClusterClient),
    Sentinel(Arc<SentinelState>),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("url", &self.inner.config.masked_url())
            .field("topology", self.inner.config.topology())
            .finish()
    }
}

impl RedisConnection {
    /// Connects to the deployment in `config` and checks it answers `PING`.
    ///
    /// Fails with a [`BrokerErrorKind::Connection`](pythia_core::BrokerErrorKind::Connection) error naming the (masked) URL when the
    /// server (the cluster, the sentinels or the master they name) is unreachable, and
    /// [`BrokerErrorKind::Config`](pythia_core::BrokerErrorKind::Config) when the URLs are unusable or do not fit the topology.
    pub async fn connect(config: RedisConfig) -> Result<Self, BrokerError> {
        #[cfg(feature = "tls")]
        {
            // rustls needs a process-wide crypto provider; installing it twice is harmless.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        config.validate()?;
        let limit = config.connect_timeout() * 3;
        let connecting = async {
            match config.topology() {
                Topology::Standalone => {
                    let client = open_client(&config, config.url())?;
                    let manager =
                        ConnectionManager::new_with_config(client.clone(), manager_config(&config))
                            .await
                            .map_err(|e| unreachable(&config, &e))?;
                    Ok((
                        Backend::Standalone(client),
                        SharedConnection(Kind::Node(Node::Standalone(manager))),
                    ))
                }
                Topology::Cluster => {
                    let shared = cluster_client(&config, config.response_timeout())?
                        .get_async_connection()
                        .await
                        .map_err(|e| unreachable(&config, &e))?;
                    let blocking = cluster_client(&config, config.blocking_response_timeout())?;
                    Ok((
                        Backend::Cluster(blocking),
                        SharedConnection(Kind::Node(Node::Cluster(shared))),
                    ))
                }
                Topology::Sentinel { master } => {
                    let state = Arc::new(SentinelState::connect(&config, master).await?);
                    Ok((
                        Backend::Sentinel(state.clone()),
                        SharedConnection(Kind::Sentinel(state)),
                    ))
                }
            }
        };
        let (backend, mut shared) = match tokio::time::timeout(limit, connecting).await {
            Ok(res) => res?,
            Err(_) => {
                return Err(BrokerError::connection(format!(
                    "cannot connect to Redis at {}: timed out after {limit:?}",
                    config.masked_url(),
                )));
            }
        };
        let pong: Result<String, _> = redis::cmd("PING").query_async(&mut shared).await;
        if let Err(e) = pong {
            if is_refused_credentials(&e) {
                return Err(unreachable(&config, &e));
            }
            return Err(redis_error(&config, "PING", e));
        }
        tracing::debug!(url = %config.masked_url(), topology = ?config.topology(), "connected to Redis");
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                backend,
                shared,
                metrics: {
                    let metrics = Arc::new(ClientMetrics::new());
                    metrics.connection_opened();
                    metrics
                },
            }),
        })
    }

    /// This connection's Redis client metrics (see [`client_metrics`](crate::client_metrics)).
    pub(crate) fn client_metrics(&self) -> &ClientMetrics {
        &self.inner.metrics
    }

    /// Samples Redis memory (`INFO memory`) into `pythia_redis_used_memory_bytes` and
    /// `pythia_redis_maxmemory_bytes`; called with the queue gauges. A failure is only logged.
    pub(crate) async fn sample_memory(&self) {
        let mut m = self.manager();
        match redis::cmd("INFO")
            .arg("memory")
            .query_async::<String>(&mut m)
            .await
        {
            Ok(info) => self.inner.metrics.memory_from_info(&info),
            Err(e) => tracing::debug!(error = %e, "sampling Redis memory failed"),
        }
    }

    /// The shared, auto-reconnecting connection for non-blocking commands.
    pub fn manager(&self) -> SharedConnection {
        self.inner.shared.clone()
    }

    /// The Redis server's clock (`TIME`), retried while the connection recovers: the one clock
    /// every worker and producer of a queue shares, so that due times never depend on a
    /// machine's own clock.
    pub async fn server_time(&self) -> Result<std::time::SystemTime, BrokerError> {
        let (secs, micros): (u64, u64) =
            crate::connection::transient_retry::retry_transient("read the server time", || {
                let mut m = self.manager();
                async move {
                    redis::cmd("TIME")
                        .query_async(&mut m)
                        .await
                        .map_err(|e| self.error("TIME", e))
                }
            })
            .await?;
        Ok(std::time::UNIX_EPOCH + Duration::from_micros(secs * 1_000_000 + micros))
    }

    /// The settings this connection was made with.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// Whether this is a Redis Cluster (keys of different hash tags live on different nodes,
    /// pub/sub is sharded).
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.backend, Backend::Cluster(_))
    }

    /// A new dedicated connection for blocking reads, with a reply timeout of
    /// [`RedisConfig::blocking_response_timeout`]. Under Sentinel it goes to the master the
    /// sentinels name now, so a consumer that reconnects after a failover reads from the new
    /// master.
    pub async fn blocking(&self) -> Result<BlockingConnection, BrokerError> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.inner.config.connect_timeout()))
            .set_response_timeout(Some(self.inner.config.blocking_response_timeout()));
        let limit = self.inner.config.connect_timeout() * 2;
        let opening = async {
            match &self.inner.backend {
                Backend::Standalone(client) => client
                    .get_multiplexed_async_connection_with_config(&cfg)
                    .await
                    .map(|c| BlockingConnection(Node::Standalone(c), None))
                    .map_err(|e| self.error("connect", e)),
                Backend::Cluster(client) => client
                    .get_async_connection()
                    .await
                    .map(|c| BlockingConnection(Node::Cluster(c), None))
                    .map_err(|e| self.error("connect", e)),
                Backend::Sentinel(state) => {
                    let client = state.resolve(true).await?;
                    client
                        .get_multiplexed_async_connection_with_config(&cfg)
                        .await
                        .map(|c| BlockingConnection(Node::Standalone(c), None))
                        .map_err(|e| self.error("connect", e))
                }
            }
        };
        match tokio::time::timeout(limit, opening).await {
            Ok(res) => res.map(|c| c.counted(&self.inner.metrics)),
            Err(_) => Err(BrokerError::connection(format!(
                "cannot open a blocking connection to {}: timed out after {limit:?}",
                self.inner.config.masked_url()
            ))),
        }
    }

    /// A new dedicated pub/sub connection: it carries only `SUBSCRIBE`/`PSUBSCRIBE`, `PING`
    /// and the messages the server pushes. A connection in subscribed mode cannot run other
    /// commands, so it is never shared. Opening it (TCP, TLS, `AUTH`, `SELECT`) fails after
    /// [`RedisConfig::connect_timeout`]. On a cluster use
    /// [`cluster_subscriber`](Self::cluster_subscriber) (sharded pub/sub) instead.
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, BrokerError> {
        let limit = self.inner.config.connect_timeout();
        let opening = async {
            let client = match &self.inner.backend {
                Backend::Standalone(client) => client.clone(),
                Backend::Sentinel(state) => state.resolve(true).await?,
                Backend::Cluster(_) => {
                    return Err(BrokerError::config(
                        "a Redis Cluster has no single pub/sub connection: use sharded pub/sub \
                         (RedisConnection::cluster_subscriber)",
                    ));
                }
            };
            client
                .get_async_pubsub()
                .await
                .map_err(|e| self.error("connect (pub/sub)", e))
        };
        match tokio::time::timeout(limit, opening).await {
            Ok(res) => res,
            Err(_) => Err(BrokerError::connection(format!(
                "cannot open a pub/sub connection to {}: timed out after {limit:?}",
                self.inner.config.masked_url()
            ))),
        }
    }

    /// On a cluster: a new RESP3 cluster connection whose pushed messages (sharded pub/sub
    /// `smessage`s, subscription confirmations, disconnection notices) go to `pushes`. It
    /// subscribes with `SSUBSCRIBE`, routed to the node owning each channel's slot, and
    /// re-subscribes by itself after a reconnect or a slot move.
    pub async fn cluster_subscriber(
        &self,
        pushes: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
    ) -> Result<ClusterConnection, BrokerError> {
        if !self.is_cluster() {
            return Err(BrokerError::config(
                "sharded pub/sub needs a Redis Cluster (--cluster)",
            ));
        }
        let config = &self.inner.config;
        let client = cluster_builder(config, config.response_timeout())?
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes)
            .build()
            .map_err(|e| invalid(config, &e))?;
        let limit = config.connect_timeout();
        match tokio::time::timeout(limit, client.get_async_connection()).await {
            Ok(res) => res.map_err(|e| self.error("connect (sharded pub/sub)", e)),
            Err(_) => Err(BrokerError::connection(format!(
                "cannot open a sharded pub/sub connection to {}: timed out after {limit:?}",
                config.masked_url()
            ))),
        }
    }

    /// Runs `cmd` on every master (one on a standalone server or under Sentinel, each
    /// primary of a cluster) and returns each node's address with its reply. For commands
    /// that are about a server rather than a key: `INFO`, `SCAN`, `DBSIZE`, `SCRIPT LOAD`.
    pub async fn on_each_master(&self, cmd: &Cmd) -> Result<Vec<(String, Value)>, BrokerError> {
        let op = command_name(cmd);
        match &self.inner.shared.0 {
            Kind::Node(Node::Cluster(c)) => {
                let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                let reply = c
                    .clone()
                    .route_command(cmd.clone(), routing)
                    .await
                    .map_err(|e| self.error(&op, e))?;
                by_node(reply).map_err(|e| self.error(&op, e))
            }
            _ => {
                let value: Value = cmd
                    .query_async(&mut self.manager())
                    .await
                    .map_err(|e| self.error(&op, e))?;
                Ok(vec![(self.node_name(), value)])
            }
        }
    }

    /// Every key matching `pattern` on every master, found with `SCAN` (never `KEYS`), at
    /// most `limit` of them, sorted. Keys whose names are not UTF-8 are left out.
    pub async fn scan_keys(&self, pattern: &str, limit: usize) -> Result<Vec<String>, BrokerError> {
        let nodes: Vec<String> = match &self.inner.shared.0 {
            Kind::Node(Node::Cluster(_)) => self
                .on_each_master(&redis::cmd("PING"))
                .await?
                .into_iter()
                .map(|(node, _)| node)
                .collect(),
            _ => vec![String::new()],
        };
        let mut keys = Vec::new();
        for node in nodes {
            let mut cursor = 0u64;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000);
                let value = self.on_node(&node, &scan).await?;
                let (next, page): (u64, Vec<Vec<u8>>) =
                    redis::from_redis_value(value).map_err(|e| self.error("SCAN", e.into()))?;
                // Key names that are not UTF-8 are not Pythia's; skip them.
                keys.extend(page.into_iter().filter_map(|k| String::from_utf8(k).ok()));
                if next == 0 || keys.len() >= limit {
                    break;
                }
                cursor = next;
            }
            if keys.len() >= limit {
                keys.truncate(limit);
                break;
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Runs `cmd` on the node at `addr` (`host:port` as [`on_each_master`](Self::on_each_master)
    /// names it); an empty `addr` means the one server of a standalone or Sentinel setup.
    async fn on_node(&self, addr: &str, cmd: &Cmd) -> Result<Value, BrokerError> {
        let op = command_name(cmd);
        match &self.inner.shared.0 {
            Kind::Node(Node::Cluster(c)) if !addr.is_empty() => {
                let (host, port) = addr
                    .rsplit_once(':')
                    .and_then(|(h, p)| Some((h.to_owned(), p.parse().ok()?)))
                    .ok_or_else(|| BrokerError::backend(format!("bad node address {addr:?}")))?;
                let routing =
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                c.clone()
                    .route_command(cmd.clone(), routing)
                    .await
                    .map_err(|e| self.error(&op, e))
            }
            _ => cmd
                .query_async(&mut self.manager())
                .await
                .map_err(|e| self.error(&op, e)),
        }
    }

    fn node_name(&self) -> String {
        match &self.inner.shared.0 {
            Kind::Sentinel(s) => s.current_addr(),
            _ => self.inner.config.masked_url(),
        }
    }

    /// Maps a Redis error from `op` to a [`BrokerError`] with the password scrubbed.
    pub fn error(&self, op: &str, e: redis::RedisError) -> BrokerError {
        redis_error(&self.inner.config, op, e)
    }
}

/// The connection every non-blocking command of a [`RedisConnection`] goes through: a
/// reconnecting multiplexed connection to one server, a cluster connection routing each
/// command to the node owning its key's slot, or a connection to the master the sentinels
/// name, replaced after a failover. Cheap to clone; run commands with
/// `cmd.query_async(&mut conn.manager())`.
#[derive(Clone)]
pub struct SharedConnection(Kind);

#[derive(Clone)]
enum Kind {
    Node(Node<ConnectionManager>),
    Sentinel(Arc<SentinelState>),
}

impl std::fmt::Debug for SharedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let topology = match &self.0 {
            Kind::Node(n) => n.topology(),
            Kind::Sentinel(_) => "sentinel",
        };
        f.debug_tuple("SharedConnection").field(&topology).finish()
    }
}

impl ConnectionLike for SharedConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Kind::Node(n) => n.req_packed_command(cmd),
            Kind::Sentinel(s) => Box::pin(async move {
                let mut m = s.current();
                let reply = m.req_packed_command(cmd).await;
                if let Err(e) = &reply {
                    s.after_error(e).await;
                }
                reply
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Kind::Node(n) => n.req_packed_commands(pipeline, offset, count),
            Kind::Sentinel(s) => Box::pin(async move {
                let mut m = s.current();
                let reply = m.req_packed_commands(pipeline, offset, count).await;
                if let Err(e) = &reply {
                    s.after_error(e).await;
                }
                reply
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Kind::Node(n) => n.get_db(),
            Kind::Sentinel(s) => s.current().get_db(),
        }
    }
}

pub(super) fn manager_config(config: &RedisConfig) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout()))
        .set_response_timeout(Some(config.response_timeout()))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2))
}

fn cluster_builder(
    config: &RedisConfig,
    response_timeout: Duration,
) -> Result<ClusterClientBuilder, BrokerError> {
    let builder = ClusterClientBuilder::new(config.urls())
        .connection_timeout(config.connect_timeout())
        .response_timeout(response_timeout)
        .retries(3)
        .max_retry_wait(1000);
    match config.tls_ca_file() {
        None => Ok(builder),
        #[cfg(feature = "tls")]
        Some(path) => Ok(builder.certs(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(read_ca(path)?),
        })),
        #[cfg(not(feature = "tls"))]
        Some(path) => Err(no_tls(path)),
    }
}

fn cluster_client(
    config: &RedisConfig,
    response_timeout: Duration,
) -> Result<ClusterClient, BrokerError> {
    cluster_builder(config, response_timeout)?
        .build()
        .map_err(|e| invalid(config, &e))
}

fn open_client(config: &RedisConfig, url: &str) -> Result<redis::Client, BrokerError> {
    match config.tls_ca_file() {
        None => redis::Client::open(url).map_err(|e| invalid(config, &e)),
        #[cfg(feature = "tls")]
        Some(path) => {
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(read_ca(path)?),
            };
            redis::Client::build_with_tls(url, certs).map_err(|e| invalid(config, &e))
        }
        #[cfg(not(feature = "tls"))]
        Some(path) => Err(no_tls(path)),
    }
}

#[cfg(feature = "tls")]
fn read_ca(path: &std::path::Path) -> Result<Vec<u8>, BrokerError> {
    std::fs::read(path).map_err(|e| {
        BrokerError::config(format!("cannot read TLS CA file {}: {e}", path.display()))
    })
}

#[cfg(not(feature = "tls"))]
fn no_tls(path: &std::path::Path) -> BrokerError {
    BrokerError::config(format!(
        "a TLS CA file ({}) needs pythia-redis built with the `tls` feature",
        path.display()
    ))
}

fn command_name(cmd: &Cmd) -> String {
    cmd.args_iter()
        .next()
        .and_then(|a| match a {
            redis::Arg::Simple(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
        .unwrap_or_else(|| "command".to_owned())
}

/// A cluster fan-out reply (a map of node address → reply) as pairs; a node's error reply
/// fails the whole call.
fn by_node(reply: Value) -> Result<Vec<(String, Value)>, redis::RedisError> {
    let Value::Map(pairs) = reply else {
        return Ok(vec![(String::new(), reply)]);
    };
    let mut out = Vec::with_capacity(pairs.len());
    for (node, value) in pairs {
        let node: String = redis::from_redis_value(node)?;
        if let Value::ServerError(e) = value {
            return Err(e.into());
        }
        out.push((node, value));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

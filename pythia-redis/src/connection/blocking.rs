//! Connections for blocking reads: [`BlockingConnection`], one consumer's own, and
//! [`BlockingSlot`], a broker's lazily opened one that is dropped after an error.

use pythia_core::BrokerError;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::RedisConnection;
use super::node::Node;
use crate::call::Call;
use crate::client_metrics::ClientMetrics;

/// A broker's dedicated connection for its blocking reads (`BRPOP`, `BLMOVE`, `XREADGROUP …
/// BLOCK`, `XREAD … BLOCK`), opened on first use and dropped after an error (it may be broken: the
/// next read opens a new one). A blocking command never shares the multiplexed connection, where
/// it would stall every other command behind it.
#[derive(Debug, Default)]
pub(crate) struct BlockingSlot(tokio::sync::Mutex<Option<BlockingConnection>>, AtomicBool);

impl BlockingSlot {
    /// Runs `cmd` on the slot's connection, opening it first if needed. The outer error is a
    /// connection that could not be opened; the inner result is the command's own (after an
    /// error the connection is dropped).
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        conn: &RedisConnection,
        call: &Call,
    ) -> Result<Result<T, redis::RedisError>, BrokerError> {
        let mut slot = self.0.lock().await;
        if slot.is_none() {
            *slot = Some(conn.blocking().await?);
            // Opened before and dropped after an error: a reconnect.
            if self.1.swap(true, Ordering::Relaxed) {
                conn.client_metrics().reconnected();
            }
        }
        let con = slot.as_mut().expect("just set");
        let res = call.query(con).await;
        if res.is_err() {
            *slot = None;
        }
        Ok(res)
    }
}

/// One consumer's connection for blocking reads (see [`RedisConnection::blocking`]).
#[derive(Clone)]
pub struct BlockingConnection(
    pub(super) Node<MultiplexedConnection>,
    pub(super) Option<Arc<Open>>,
);

/// Counts a blocking connection in `pythia_redis_connections` while a clone of it lives.
pub(super) struct Open(Arc<ClientMetrics>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

impl BlockingConnection {
    pub(super) fn counted(mut self, metrics: &Arc<ClientMetrics>) -> Self {
        metrics.connection_opened();
        self.1 = Some(Arc::new(Open(Arc::clone(metrics))));
        self
    }
}

impl std::fmt::Debug for BlockingConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("BlockingConnection")
            .field(&self.0.topology())
            .finish()
    }
}

impl ConnectionLike for BlockingConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.0.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

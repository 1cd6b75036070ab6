//! [`Node`]: a connection to one server or to a Redis Cluster, the two shapes that the shared
//! connection and a blocking connection both take, with their [`ConnectionLike`] written once.

use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// A connection to one server (`S`: the shared connection's reconnecting manager, or a blocking
/// connection's own multiplexed one) or to a cluster, routing each command by its key's slot.
#[derive(Clone)]
pub(super) enum Node<S> {
    Standalone(S),
    Cluster(ClusterConnection),
}

impl<S> Node<S> {
    /// The topology's name, for `Debug` (a connection's internals are not shown).
    pub(super) fn topology(&self) -> &'static str {
        match self {
            Self::Standalone(_) => "standalone",
            Self::Cluster(_) => "cluster",
        }
    }
}

impl<S: ConnectionLike + Send> ConnectionLike for Node<S> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

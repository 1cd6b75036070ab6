//! Redis client metrics: how long Pythia's Redis round trips take by operation, which scripts
//! fail, how many connections are open and re-opened, and how full Redis is, so that an
//! operator sees when Redis, not the handler, is the bottleneck.
//!
//! Handles are resolved once per [`RedisConnection`](crate::RedisConnection), when it connects;
//! recording a round trip costs two clock reads and a histogram record per Redis call (a call
//! carries a whole batch), nothing per message.

use std::time::Instant;

use metrics::{Counter, Gauge, Histogram};

/// Seconds per Redis round trip of Pythia's own operations, by `op`: `fetch` (the non-blocking
/// fetch commands; a blocking wait for new messages is not timed), `settle` (acks, retries and
/// dead letters of a batch), `promote` (due retries back to the queue), `heartbeat` (a
/// consumer's liveness) and `produce` (a producer's pushes or adds).
pub const REDIS_COMMAND_SECONDS: &str = "pythia_redis_command_seconds";
/// Pythia Lua scripts that Redis answered with an error, by `script` (the `lua/` file's name):
/// a wrong key type, a script over its limits. Connection errors are not counted.
pub const REDIS_SCRIPT_ERRORS_TOTAL: &str = "pythia_redis_script_errors_total";
/// Redis connections open: the shared connection and each consumer's blocking connection.
pub const REDIS_CONNECTIONS: &str = "pythia_redis_connections";
/// Blocking connections opened again after an error dropped them.
pub const REDIS_RECONNECTS_TOTAL: &str = "pythia_redis_reconnects_total";
/// Redis `used_memory` (bytes), sampled with the queue gauges.
pub const REDIS_USED_MEMORY_BYTES: &str = "pythia_redis_used_memory_bytes";
/// Redis `maxmemory` (bytes; 0 = no limit), sampled with the queue gauges.
pub const REDIS_MAXMEMORY_BYTES: &str = "pythia_redis_maxmemory_bytes";

/// An operation whose round trips are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Fetch,
    Settle,
    Promote,
    Heartbeat,
    Produce,
}

impl Op {
    const ALL: [Op; 5] = [
        Op::Fetch,
        Op::Settle,
        Op::Promote,
        Op::Heartbeat,
        Op::Produce,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Op::Fetch => "fetch",
            Op::Settle => "settle",
            Op::Promote => "promote",
            Op::Heartbeat => "heartbeat",
            Op::Produce => "produce",
        }
    }
}

/// One connection's metric handles.
#[derive(Debug)]
pub(crate) struct ClientMetrics {
    ops: [Histogram; 5],
    connections: Gauge,
    reconnects: Counter,
    used_memory: Gauge,
    maxmemory: Gauge,
}

impl ClientMetrics {
    pub(crate) fn new() -> Self {
        // Every script's error counter exists from the start (at 0), so that a rate works and
        // the series is there before the first error.
        for script in crate::scripts::names() {
            metrics::counter!(REDIS_SCRIPT_ERRORS_TOTAL, "script" => script).increment(0);
        }
        Self {
            ops: Op::ALL.map(|op| metrics::histogram!(REDIS_COMMAND_SECONDS, "op" => op.as_str())),
            connections: metrics::gauge!(REDIS_CONNECTIONS),
            reconnects: metrics::counter!(REDIS_RECONNECTS_TOTAL),
            used_memory: metrics::gauge!(REDIS_USED_MEMORY_BYTES),
            maxmemory: metrics::gauge!(REDIS_MAXMEMORY_BYTES),
        }
    }

    /// A round trip of `op` that started at `since` is over.
    pub(crate) fn observe(&self, op: Op, since: Instant) {
        let i = Op::ALL.iter().position(|o| *o == op).unwrap_or(0);
        self.ops[i].record(since.elapsed().as_secs_f64());
    }

    pub(crate) fn connection_opened(&self) {
        self.connections.increment(1.0);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections.decrement(1.0);
    }

    pub(crate) fn reconnected(&self) {
        self.reconnects.increment(1);
    }

    /// Sets the memory gauges from the text of `INFO memory`.
    pub(crate) fn memory_from_info(&self, info: &str) {
        for line in info.lines() {
            let Some((k, v)) = line.trim_end().split_once(':') else {
                continue;
            };
            let Ok(v) = v.parse::<u64>() else { continue };
            match k {
                "used_memory" => self.used_memory.set(v as f64),
                "maxmemory" => self.maxmemory.set(v as f64),
                _ => {}
            }
        }
    }
}

/// Counts a script error, unless it is a connection error (the script may not have run).
pub(crate) fn script_failed(script: &'static str, e: &redis::RedisError) {
    if !(e.is_io_error() || e.is_connection_dropped() || e.is_timeout()) {
        metrics::counter!(REDIS_SCRIPT_ERRORS_TOTAL, "script" => script).increment(1);
    }
}

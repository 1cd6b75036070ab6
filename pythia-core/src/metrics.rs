//! Metric names and the handles the runtime records into.
//!
//! Pythia records through the [`metrics`] facade: nothing is exported until the binary installs
//! a recorder (the `pythia` CLI installs a Prometheus one). Handles are resolved once per run, so
//! recording costs an atomic add, not a registry lookup.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

use crate::message::Source;

/// Messages processed, by `outcome`: `ok`, `retried` (scheduled again), `dead_lettered` (out of
/// attempts) or `rejected` (the handler said poison).
pub const MESSAGES_TOTAL: &str = "pythia_messages_total";
/// Handler failures, by `kind`: `error`, `timeout` or `panic`.
pub const HANDLER_FAILURES_TOTAL: &str = "pythia_handler_failures_total";
/// Seconds spent in the handler stack per message.
pub const PROCESSING_SECONDS: &str = "pythia_processing_seconds";
/// Seconds from enqueue (envelope time) to the start of processing.
pub const END_TO_END_SECONDS: &str = "pythia_end_to_end_latency_seconds";
/// Messages being processed right now.
pub const IN_FLIGHT: &str = "pythia_in_flight_messages";
/// Messages per fetch.
pub const FETCH_BATCH_SIZE: &str = "pythia_fetch_batch_size";
/// Failed broker operations, by `operation` (`fetch`, `settle`, `release`, `maintain`).
pub const BROKER_ERRORS_TOTAL: &str = "pythia_broker_errors_total";
/// Deliveries handed back unprocessed on shutdown.
pub const RELEASED_TOTAL: &str = "pythia_released_total";
/// Outcomes finished and not yet confirmed by the broker (the settle on the wire and those
/// waiting for it). At twice the larger of concurrency and batch size, or while settles fail,
/// fetching pauses.
pub const SETTLE_BACKLOG: &str = "pythia_settle_backlog_messages";
/// Outcomes never settled: still failing at the shutdown deadline, or refused by the broker for
/// a configuration error. An at-least-once broker delivers these messages again.
pub const UNSETTLED_TOTAL: &str = "pythia_unsettled_total";
/// Times fetching recovered after the broker was unreachable.
pub const BROKER_RECONNECTS_TOTAL: &str = "pythia_broker_reconnects_total";
/// Messages waiting in the queue (list length, or stream entries not yet delivered to the group).
pub const QUEUE_DEPTH: &str = "pythia_queue_depth";
/// Messages delivered and not yet settled, by any consumer, as the broker sees them.
pub const QUEUE_IN_FLIGHT: &str = "pythia_queue_in_flight";
/// Retries waiting for their time.
pub const QUEUE_SCHEDULED: &str = "pythia_queue_scheduled";
/// Entries in the dead-letter queue.
pub const DEAD_LETTERS: &str = "pythia_dead_letters";
/// Age in seconds of the next message to be delivered (0 when the queue is empty or the age is
/// unknown).
pub const QUEUE_OLDEST_AGE_SECONDS: &str = "pythia_queue_oldest_age_seconds";
/// Consumers registered for the queue.
pub const CONSUMERS: &str = "pythia_consumers";
/// Gauge: 1 while the queue is paused (a gated worker's last poll), else 0.
pub const QUEUE_PAUSED: &str = "pythia_queue_paused";

/// The runtime's metric handles for one queue.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeMetrics {
    pub(crate) ok: Counter,
    pub(crate) retried: Counter,
    pub(crate) dead_lettered: Counter,
    pub(crate) rejected: Counter,
    pub(crate) failed_error: Counter,
    pub(crate) failed_timeout: Counter,
    pub(crate) failed_panic: Counter,
    pub(crate) processing: Histogram,
    pub(crate) end_to_end: Histogram,
    pub(crate) in_flight: Gauge,
    pub(crate) fetch_batch: Histogram,
    pub(crate) fetch_errors: Counter,
    pub(crate) settle_errors: Counter,
    pub(crate) released: Counter,
    pub(crate) reconnects: Counter,
    pub(crate) settle_backlog: Gauge,
    pub(crate) unsettled: Counter,
}

impl RuntimeMetrics {
    pub(crate) fn new(source: &Source) -> Self {
        let queue = source.name().to_owned();
        let broker = source.broker();
        let outcome = |o: &'static str| metrics::counter!(MESSAGES_TOTAL, "queue" => queue.clone(), "broker" => broker, "outcome" => o);
        let failure = |k: &'static str| metrics::counter!(HANDLER_FAILURES_TOTAL, "queue" => queue.clone(), "broker" => broker, "kind" => k);
        let errors = |op: &'static str| metrics::counter!(BROKER_ERRORS_TOTAL, "queue" => queue.clone(), "broker" => broker, "operation" => op);
        Self {
            ok: outcome("ok"),
            retried: outcome("retried"),
            dead_lettered: outcome("dead_lettered"),
            rejected: outcome("rejected"),
            failed_error: failure("error"),
            failed_timeout: failure("timeout"),
            failed_panic: failure("panic"),
            processing: metrics::histogram!(PROCESSING_SECONDS, "queue" => queue.clone(), "broker" => broker),
            end_to_end: metrics::histogram!(END_TO_END_SECONDS, "queue" => queue.clone(), "broker" => broker),
            in_flight: metrics::gauge!(IN_FLIGHT, "queue" => queue.clone(), "broker" => broker),
            fetch_batch: metrics::histogram!(FETCH_BATCH_SIZE, "queue" => queue.clone(), "broker" => broker),
            fetch_errors: errors("fetch"),
            settle_errors: errors("settle"),
            released: metrics::counter!(RELEASED_TOTAL, "queue" => queue.clone(), "broker" => broker),
            reconnects: metrics::counter!(BROKER_RECONNECTS_TOTAL, "queue" => queue.clone(), "broker" => broker),
            settle_backlog: metrics::gauge!(SETTLE_BACKLOG, "queue" => queue.clone(), "broker" => broker),
            unsettled: metrics::counter!(UNSETTLED_TOTAL, "queue" => queue.clone(), "broker" => broker),
        }
    }

    pub(crate) fn observe_processing(&self, took: Duration) {
        self.processing.record(took.as_secs_f64());
    }
}

/// The metrics of a message's own queue: `all` for a broker of one queue (no lookup), else the
/// entry of `per_queue` for the message's source (compared by the shared name first, so a
/// match costs a pointer comparison), `all` when none matches.
pub(crate) fn for_message<'a>(
    all: &'a RuntimeMetrics,
    per_queue: &'a [(Source, RuntimeMetrics)],
    source: &Source,
) -> &'a RuntimeMetrics {
    if per_queue.is_empty() {
        return all;
    }
    per_queue
        .iter()
        .find(|(q, _)| std::sync::Arc::ptr_eq(q.name_arc(), source.name_arc()))
        .or_else(|| per_queue.iter().find(|(q, _)| q.name() == source.name()))
        .map_or(all, |(_, m)| m)
}

/// The queue gauges, sampled periodically from [`Broker::stats`](crate::Broker::stats).
#[derive(Debug, Clone)]
pub(crate) struct QueueGauges {
    depth: Gauge,
    in_flight: Gauge,
    scheduled: Gauge,
    dead_letters: Gauge,
    oldest_age: Gauge,
    consumers: Gauge,
}

impl QueueGauges {
    pub(crate) fn new(source: &Source) -> Self {
        let queue = source.name().to_owned();
        let broker = source.broker();
        let g = |name: &'static str| metrics::gauge!(name, "queue" => queue.clone(), "broker" => broker);
        Self {
            depth: g(QUEUE_DEPTH),
            in_flight: g(QUEUE_IN_FLIGHT),
            scheduled: g(QUEUE_SCHEDULED),
            dead_letters: g(DEAD_LETTERS),
            oldest_age: g(QUEUE_OLDEST_AGE_SECONDS),
            consumers: g(CONSUMERS),
        }
    }

    pub(crate) fn set(&self, s: &crate::broker::QueueStats) {
        self.depth.set(s.depth as f64);
        self.in_flight.set(s.in_flight as f64);
        self.scheduled.set(s.scheduled as f64);
        self.dead_letters.set(s.dead_letters as f64);
        self.oldest_age
            .set(s.oldest_age.map_or(0.0, |d| d.as_secs_f64()));
        self.consumers.set(s.consumers as f64);
    }
}

/// Describes every runtime metric (type, unit, help text) to the installed recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        MESSAGES_TOTAL,
        "Messages processed, by outcome (ok, retried, dead_lettered, rejected)"
    );
    describe_counter!(
        HANDLER_FAILURES_TOTAL,
        "Handler failures, by kind (error, timeout, panic)"
    );
    describe_histogram!(
        PROCESSING_SECONDS,
        Unit::Seconds,
        "Time spent in the handler stack per message"
    );
    describe_histogram!(
        END_TO_END_SECONDS,
        Unit::Seconds,
        "Time from enqueue to the start of processing (0 when the enqueue time is ahead of the worker's clock)"
    );
    describe_gauge!(IN_FLIGHT, "Messages being processed right now");
    describe_histogram!(FETCH_BATCH_SIZE, "Messages per fetch");
    describe_counter!(
        BROKER_ERRORS_TOTAL,
        "Failed broker operations, by operation"
    );
    describe_counter!(
        RELEASED_TOTAL,
        "Deliveries handed back unprocessed on shutdown"
    );
    describe_gauge!(
        SETTLE_BACKLOG,
        "Outcomes finished and not yet settled; fetching pauses while settles fail or this reaches its bound"
    );
    describe_counter!(
        UNSETTLED_TOTAL,
        "Outcomes never settled (failing at the shutdown deadline, or refused); delivered again"
    );
    describe_gauge!(
        QUEUE_PAUSED,
        "1 while the queue is paused (pythia pause): gated workers fetch nothing"
    );
    crate::resilience::metrics::describe();
}

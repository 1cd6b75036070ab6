#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Where things live (see docs/architecture.md):
// connection/  the shared and blocking connections, config (URL, TLS, Sentinel, Cluster),
//              error classification and masking, transient retries
// keys.rs scripts.rs   key naming; the Lua scripts (lua/*.lua, checks in lua/lib/checks.lua)
// consumer/    the at-least-once machinery every consumer-group broker shares
// list/        ListBroker (at-most-once), ReliableListBroker (at-least-once), ListProducer
// stream/      StreamBroker, StreamProducer, StreamReader (XREAD), reader checkpoints
// sharded_stream/  one queue over many streams (Cluster)
// pubsub/      PubSubBroker (at-most-once fan-out), Publisher
// dlq/         dead-letter queues: list, replay, purge
// layer/       idempotency and job-status tower layers
// gate/        QueueGate: pause, throttle and rate limit of a queue across replicas
// admin.rs     EmptyQueue (pythia empty)
// coord/       delayed messages, destinations, locks, periodic jobs
mod admin;
// queues/      the operator's view: queue registry, pause flag, daily counters, reports
mod call;
pub mod checkpoint;
pub mod client_metrics;
pub mod connection;
pub mod consumer;
pub mod coord;
pub mod dlq;
pub mod gate;
mod job_producer;
pub mod keys;
pub mod layer;
pub mod list;
pub mod pubsub;
pub mod queues;
mod scripts;
pub mod sharded_stream;
pub mod stream;

pub use crate::admin::{EmptyQueue, EmptyReport};
pub use crate::call::Call;
pub use crate::checkpoint::{CheckpointStore, StoredCheckpoint};
pub use crate::connection::config::{DEFAULT_URL, RedisConfig, Topology, mask_url};
pub use crate::connection::{BlockingConnection, RedisConnection, SharedConnection};
pub use crate::consumer::liveness::SETTLE_NOT_OWNED_TOTAL;
pub use crate::consumer::retry_schedule;
pub use crate::dlq::{DeadLetter, DeadLetterQueue, DlqEntry, ReplayReport};
pub use crate::gate::{QueueGate, RateLimit};
pub use crate::job_producer::JobProducer;
pub use crate::keys::{QueueKeys, unique_consumer_name};
pub use crate::list::producer::{Encoding, ListProducer};
pub use crate::list::reliable::ReliableListBroker;
pub use crate::list::{ListBroker, ListSide};
pub use crate::pubsub::publisher::Publisher;
pub use crate::pubsub::{Overflow, PubSubBroker, PubSubBuilder, PubSubCounters};
pub use crate::sharded_stream::{
    ShardEntryId, ShardedQueue, ShardedStreamBroker, ShardedStreamProducer,
};
pub use crate::stream::checkpoint::Checkpoint;
pub use crate::stream::producer::StreamProducer;
pub use crate::stream::reader::{ReaderStart, StreamReader};
pub use crate::stream::{GroupStart, StreamBroker, StreamEntryId};

pub use crate::coord::breaker::RedisCircuitStateStore;
pub use crate::coord::delayed::DelayedProducer;
pub use crate::coord::destination::Destination;
pub use crate::coord::lock::{Exclusive, Lock, LockGuard};
pub use crate::coord::periodic::{FireReport, PeriodicJob, PeriodicScheduler, Schedule};
pub use crate::coord::scheduled::{
    ScheduledKind, ScheduledMessage, ScheduledMessages, ScheduledPage,
};
pub use crate::layer::idempotency::{
    Idempotency, IdempotencyKey, IdempotencyLayer, IdempotencyStore,
};
pub use crate::layer::job_status::{
    JobCheckpoint, JobEvent, JobHandle, JobProgress, JobState, JobStatus, JobStatusStore,
    JobTracking, JobTrackingExt, record_job_result,
};

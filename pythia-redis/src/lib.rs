#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod config;
pub mod connection;
pub mod dead_letters;
mod in_order;
pub mod keys;
pub mod list;
mod liveness;
pub mod producer;
pub mod publisher;
pub mod pubsub;
mod recent_settlements;
pub mod reliable_list;
pub mod retry_schedule;
mod scripts;
pub mod sharded_stream;
pub mod stream;
pub mod stream_producer;

pub use crate::config::{DEFAULT_URL, RedisConfig, Topology, mask_url};
pub use crate::connection::{BlockingConnection, RedisConnection, SharedConnection};
pub use crate::dead_letters::{DeadLetter, DeadLetterQueue, ReplayReport};
pub use crate::keys::{QueueKeys, unique_consumer_name};
pub use crate::list::{ListBroker, ListSide};
pub use crate::liveness::SETTLE_NOT_OWNED_TOTAL;
pub use crate::producer::{Encoding, ListProducer};
pub use crate::publisher::Publisher;
pub use crate::pubsub::{Overflow, PubSubBroker, PubSubBuilder, PubSubCounters};
pub use crate::reliable_list::ReliableListBroker;
pub use crate::sharded_stream::{
    ShardEntryId, ShardedQueue, ShardedStreamBroker, ShardedStreamProducer,
};
pub use crate::stream::{GroupStart, StreamBroker, StreamEntryId};
pub use crate::stream_producer::StreamProducer;

// Coordination features (issue #13): delayed messages, locks, periodic jobs, idempotency, job
// status, checkpoints.
pub mod checkpoint;
pub mod delayed;
pub mod destination;
pub mod idempotency;
pub mod job_status;
pub mod lock;
pub mod periodic;
pub mod stream_reader;
mod transient_retry;

pub use crate::checkpoint::Checkpoint;
pub use crate::delayed::DelayedProducer;
pub use crate::destination::Destination;
pub use crate::idempotency::{Idempotency, IdempotencyKey, IdempotencyLayer, IdempotencyStore};
pub use crate::job_status::{
    JobState, JobStatus, JobStatusLayer, JobStatusService, JobStatusStore, record_job_result,
};
pub use crate::lock::{Exclusive, Lock, LockGuard};
pub use crate::periodic::{FireReport, PeriodicJob, PeriodicScheduler, Schedule};
pub use crate::stream_reader::{ReaderStart, StreamReader};

//! The operator's view of every queue under a key prefix: which queues exist (the registry),
//! whether each is paused, how many messages it settled today (the counters), and one typed
//! report per queue built from the brokers' own stats.
//!
//! * [`registry`]: a hash `<prefix>:queues` of queue name → [`QueueKind`]. Every producer
//!   writes it once (its first send) and every broker once (its first maintenance, which the
//!   runtime runs at start), so a queue shows up from its first message, before any worker
//!   ran. One `HSETNX`/`HSET` per producer or
//!   broker, never per message.
//! * [`pause`], [`resume`], [`is_paused`]: the flag `<prefix>:{<queue>}:paused`
//!   ([`QueueKeys::paused`]), re-exported from [`gate`](crate::gate), whose `QueueGate` obeys it.
//! * [`counters`]: processed / failed / retried per queue and UTC day, kept by a
//!   [`CountingBroker`] around any broker and flushed with one pipeline every few seconds.
//! * [`report`]: [`QueueReport`] and friends, one row per queue: what `pythia queues` and the
//!   dashboard's overview show.
//! * [`inspect`]: [`QueueInspection`](inspect::QueueInspection), one queue down to each
//!   consumer: what `pythia inspect` and the dashboard's queue page show.
//!
//! [`QueueKeys::paused`]: crate::QueueKeys::paused

pub mod counters;
pub mod inspect;
pub mod registry;
pub mod report;

pub use crate::gate::{is_paused, pause, resume};
pub use counters::{CountingBroker, DailyCounts};
pub use registry::{QueueKind, discovered_queues, registered_queues};
pub use report::{GroupReport, QueueReport, queue_report, queue_reports};

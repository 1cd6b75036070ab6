//! The at-least-once machinery every consumer-group broker shares (the reliable list, the stream
//! and so every shard of a sharded stream), written once:
//!
//! * `liveness`: the heartbeat (lifetime, interval, the `SET … PX` + registry pipeline), when a
//!   consumer may judge the others dead (`ReapGate`: only after a whole
//!   lifetime of unbroken heartbeats of its own, so an outage never makes live consumers reap
//!   each other), and the count of settlements of deliveries it no longer owned;
//! * [`retry_schedule`]: retries and delayed messages that survive a crash (a sorted set due on
//!   the server's clock, promoted by a script that adds before it removes) and the dead-letter
//!   payloads;
//! * `recent_settlements`: the last settlements, sent again after a connection error (a
//!   failover can lose acknowledged writes), bounded by count and bytes.
//!
//! A broker that wants to count as at-least-once uses these, and passes the conformance suite
//! (`pythia-redis/tests/conformance.rs`, see RELIABILITY.md).

pub(crate) mod liveness;
pub(crate) mod recent_settlements;
pub mod retry_schedule;

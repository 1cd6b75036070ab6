//! Runnable examples of Pythia, one per delivery mode. Each file in this folder starts with the
//! command that runs it; all of them need a Redis at `REDIS_URL` (default
//! `redis://127.0.0.1:6379`), e.g. `redis-server --port 6379 --save '' &`.
//!
//! | example | delivery mode |
//! |---|---|
//! | `list.rs` | list, at-most-once (`RPOP n` / `BRPOP`) |
//! | `reliable_list.rs` | reliable list, at-least-once (in-flight hash, heartbeat, reaper) |
//! | `pubsub.rs` | pub/sub, at-most-once fan-out (`SUBSCRIBE` / `PSUBSCRIBE`, bounded buffer) |
//! | `stream.rs` | stream consumer group, at-least-once (`XREADGROUP` / `XACK`, heartbeat reclaim, trimming) |
//! | `typed_job.rs` | a typed `Job` on a reliable list, its outputs kept in job-status records |
//! | `sharded_stream.rs` | one queue over N streams in different cluster slots, at-least-once, per-key order |
//! | `dashboard_mount.rs` | the dashboard's router nested under a path of one's own axum service |
//! | `service.rs` | a long-running reliable-list worker serving `/metrics` and the probes (what `deploy/Dockerfile.worker` builds) |

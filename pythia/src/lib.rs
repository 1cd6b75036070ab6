//! Pythia: background workers on Redis.
//!
//! This facade re-exports [`pythia_core`] (the [`Worker`] trait, [`Message`], the
//! [`WorkerRuntime`], the in-memory broker) at its root and [`pythia_redis`] (the Redis brokers
//! and producers) as [`redis`], so a user depends on `pythia` alone.
//!
//! ```no_run
//! use pythia::redis::{RedisConfig, RedisConnection, ReliableListBroker};
//! use pythia::{Message, Worker, WorkerError, WorkerRuntime};
//!
//! struct Hello;
//! impl Worker for Hello {
//!     async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
//!         println!("hello, {}", msg.body_str()?); // not UTF-8: rejected, never retried
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
//! WorkerRuntime::new(ReliableListBroker::new(&conn, "greetings"), Hello).run().await?;
//! # Ok(()) }
//! ```

pub use pythia_core::*;

/// The Redis brokers, producers and connection settings ([`pythia_redis`]).
pub mod redis {
    pub use pythia_redis::*;
}

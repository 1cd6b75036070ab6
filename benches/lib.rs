//! Criterion benchmarks of Pythia's hot paths, and its end-to-end throughput. Only `throughput`
//! needs Redis: it starts its own `redis-server` (on `PATH`) on a free loopback port.
//!
//! | bench | what |
//! |---|---|
//! | `envelope` | `envelope::encode` / `encode_into` / `decode` of Pythia, Python `pythia-framework`, raw and plain-JSON items |
//! | `runtime` | `WorkerRuntime` over a `MemoryBroker` with a no-op worker: `Inline` vs `Spawn` dispatch, with and without a tower layer |
//! | `stream_reply` | turning a 1000-entry `XREADGROUP` reply (`redis::Value`) into deliveries, vs redis' typed `StreamReadReply` |
//! | `settle` | building the settle commands of a batch of 1000 (all acks; acks + retries + dead letters) |
//! | `throughput` | msg/s end to end through a real `redis-server`: consume (list, reliable list, stream) with a no-op worker, pub/sub, produce (list, stream) |
//!
//! ```sh
//! cargo bench -p pythia-benches                 # all, a few minutes on 2 cores
//! cargo bench -p pythia-benches --bench runtime # one
//! cargo bench -p pythia-benches -- --test       # each bench once, as a test (CI)
//! ```
//!
//! `peers/` is not a Rust bench: `peers/run.sh` runs BullMQ, apalis and the Python
//! pythia-framework beside Pythia on one workload (see BENCHMARKS.md).

//! Criterion benchmarks of Pythia's hot paths. None needs a Redis server.
//!
//! | bench | what |
//! |---|---|
//! | `envelope` | `envelope::encode` / `encode_into` / `decode` of Pythia, Python `pythia-framework`, raw and plain-JSON items |
//! | `runtime` | `WorkerRuntime` over a `MemoryBroker` with a no-op worker: `Inline` vs `Spawn` dispatch, with and without a tower layer |
//! | `stream_reply` | turning a 1000-entry `XREADGROUP` reply (`redis::Value`) into deliveries, vs redis' typed `StreamReadReply` |
//! | `settle` | building the settle commands of a batch of 1000 (all acks; acks + retries + dead letters) |
//!
//! ```sh
//! cargo bench -p pythia-benches                 # all, a few minutes on 2 cores
//! cargo bench -p pythia-benches --bench runtime # one
//! cargo test -p pythia-benches --benches        # each bench once, as a test (CI)
//! ```

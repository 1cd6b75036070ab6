//! The at-least-once conformance suite: the same fault scenarios, generic over the broker
//! ([`harness::Subject`]), against the reliable list, the stream and the sharded stream, on one
//! server and on a 3-master Cluster. Each scenario prints one `CHAOS …` line (lost, duplicated,
//! recovery) that RELIABILITY.md quotes, and asserts nothing is lost and duplicates stay within
//! the scenario's bound. **A new broker counts as at-least-once once it has a `Subject` impl
//! and passes every scenario here.**
//!
//! ```sh
//! cargo test -p pythia-redis --test conformance -- --nocapture 2>&1 | grep CHAOS
//! PYTHIA_CHAOS_LONG=1 cargo test -p pythia-redis --test conformance   # longer soaks
//! ```
//!
//! Set `PYTHIA_CHAOS_SEED` to replay the kill schedule of a SIGKILL run (each prints its seed).
//! Worker processes are this test binary re-executed with only `conformance_child` selected.

use pythia_test_support as support;
use pythia_test_support::chaos;
use pythia_test_support::counters;

#[path = "conformance/children.rs"]
mod children;
#[path = "conformance/harness.rs"]
mod harness;
#[path = "conformance/server.rs"]
mod server;
#[path = "conformance/workers.rs"]
mod workers;

use harness::{Env, Reliable, Sharded, Step, Stream, Subject};
use support::RedisServer;
use support::cluster::RedisCluster;

/// Not a test of its own (ignored, so it never counts as a pass): the body of the worker
/// processes the scenarios start, kill, stop and continue, run with `--ignored --exact`.
#[tokio::test]
#[ignore = "a worker child process, run by its parent test (--ignored --exact), not a test"]
async fn conformance_child() {
    let spec =
        chaos::ChildSpec::from_env().expect("run by its parent test, with PYTHIA_CHAOS_CHILD");
    children::child_main(spec).await;
}

async fn single() -> (RedisServer, Env) {
    let server = RedisServer::start();
    let env = Env::single(&server).await;
    (server, env)
}

/// The scenarios on one server, for broker `S`.
macro_rules! standalone {
    ($m:ident, $S:ty) => {
        mod $m {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sigkill_mid_batch() {
                let (_server, env) = single().await;
                workers::sigkill::<$S>(&env, "kill", workers::scale(5000), 3).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sigterm_drain() {
                let (_server, env) = single().await;
                workers::sigterm::<$S>(&env, "term").await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_restart_shorter_than_the_ttl() {
                server::restart_short::<$S>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_restart_longer_than_the_ttl() {
                server::restart_long::<$S>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn client_kill_while_draining() {
                server::client_kill::<$S>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn client_pause_while_draining() {
                server::client_pause::<$S>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn wrong_type_key_at_each_step() {
                let (_server, env) = single().await;
                server::wrong_type::<$S>(&env, "wt", &Step::ALL).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn hash_tag_neighbours() {
                let (_server, env) = single().await;
                server::neighbours::<$S>(&env).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn stopped_and_continued_worker() {
                let (_server, env) = single().await;
                workers::sigstop::<$S>(&env, "stop").await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reused_consumer_name_after_sigkill() {
                let (_server, env) = single().await;
                workers::reused_name::<$S>(&env, "reused").await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn clock_skew_between_two_workers() {
                let (_server, env) = single().await;
                workers::clock_skew::<$S>(&env, "skew").await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn oversized_entries() {
                let (_server, env) = single().await;
                server::oversized::<$S>(&env).await;
            }
        }
    };
}

standalone!(reliable_list, Reliable);
standalone!(stream, Stream);
standalone!(sharded_stream, Sharded);

/// A consumer registry of the wrong type (written by every heartbeat, in a pipeline: the
/// WRONGTYPE comes back as one command's error inside the pipeline's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_type_consumer_registry_reliable_list() {
    let (_server, env) = single().await;
    server::wrong_type::<Reliable>(&env, "wt", &[Step::Registry]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_type_consumer_registry_stream() {
    let (_server, env) = single().await;
    server::wrong_type::<Stream>(&env, "wt", &[Step::Registry]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_type_consumer_registry_sharded_stream() {
    let (_server, env) = single().await;
    server::wrong_type::<Sharded>(&env, "wt", &[Step::Registry]).await;
}

/// The cheapest scenarios on one 3-master cluster (a cluster start costs seconds: one per
/// test function), for broker `S`.
async fn on_a_cluster<S: Subject>() {
    let cluster = RedisCluster::start();
    let env = Env::cluster(&cluster).await;
    workers::sigkill::<S>(&env, "kill", workers::scale(3000), 2).await;
    workers::sigterm::<S>(&env, "term").await;
    server::wrong_type::<S>(&env, "wt", &Step::ALL).await;
    server::neighbours::<S>(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reliable_list_on_a_cluster() {
    on_a_cluster::<Reliable>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_on_a_cluster() {
    on_a_cluster::<Stream>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_stream_on_a_cluster() {
    on_a_cluster::<Sharded>().await;
}

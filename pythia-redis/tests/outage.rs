//! A Redis outage longer than the heartbeat lifetime (the server killed and restarted from its
//! append-only file: every heartbeat key has expired meanwhile): live consumers running long
//! jobs must not take each other for dead and run those jobs a second time.

mod support;

#[path = "support/chaos.rs"]
mod chaos;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pythia_core::{Broker, Message, Worker, WorkerError, WorkerRuntime};
use pythia_redis::{
    GroupStart, ListProducer, RedisConnection, ReliableListBroker, StreamBroker, StreamProducer,
};
use support::{RedisServer, eventually};

const LIFETIME: Duration = Duration::from_millis(600);
const INTERVAL: Duration = Duration::from_millis(100);
const JOB: Duration = Duration::from_secs(5);
const OUTAGE: Duration = Duration::from_millis(2500);

/// A long job that records each start (body, attempt) and each end.
#[derive(Clone, Default)]
struct LongJob {
    starts: Arc<Mutex<Vec<(String, u32)>>>,
    ends: Arc<Mutex<usize>>,
}

impl Worker for LongJob {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        let body = String::from_utf8_lossy(msg.body()).into_owned();
        self.starts.lock().unwrap().push((body, msg.attempt()));
        tokio::time::sleep(JOB).await;
        *self.ends.lock().unwrap() += 1;
        Ok(())
    }
}

async fn outage_longer_than_the_lifetime<B: Broker + 'static>(
    name: &str,
    server: &mut RedisServer,
    make: impl Fn(&RedisConnection) -> B,
) {
    let conns = [server.connect().await, server.connect().await];
    let job = LongJob::default();
    let mut runs = Vec::new();
    let mut stops = Vec::new();
    for conn in &conns {
        let rt = WorkerRuntime::new(make(conn), job.clone())
            .with_signal_handling(false)
            .with_stats_interval(None)
            .with_concurrency(1)
            .with_batch_size(1);
        stops.push(rt.cancellation_token());
        runs.push(tokio::spawn(rt.run()));
    }
    eventually(Duration::from_secs(10), "both jobs running", || async {
        job.starts.lock().unwrap().len() == 2
    })
    .await;

    let t0 = Instant::now();
    server.stop();
    tokio::time::sleep(OUTAGE).await;
    server.restart();
    eventually(Duration::from_secs(30), "both jobs done", || async {
        *job.ends.lock().unwrap() >= 2
    })
    .await;
    // Time for a reaper that took the other for dead to deliver the job again.
    tokio::time::sleep(LIFETIME * 4).await;
    for stop in &stops {
        stop.cancel();
    }
    for run in runs {
        chaos::within(30, "the worker", run).await.unwrap().unwrap();
    }
    let starts = job.starts.lock().unwrap().clone();
    let duplicated = starts.len() as i64 - 2;
    chaos::report(
        "outage-longer-than-ttl",
        name,
        2,
        0,
        duplicated,
        Some(t0.elapsed()),
        &format!(
            "outage_ms={} ttl_ms={}",
            OUTAGE.as_millis(),
            LIFETIME.as_millis()
        ),
    );
    assert_eq!(
        starts.len(),
        2,
        "{name}: a live consumer's running job was started again: {starts:?}"
    );
}

fn aof_server() -> RedisServer {
    RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
}

#[tokio::test]
async fn reliable_list_consumers_keep_their_jobs_across_a_long_outage() {
    let mut server = aof_server();
    let conn = server.connect().await;
    ListProducer::new(&conn, "jobs")
        .push_many(&[Message::new("job-A"), Message::new("job-B")])
        .await
        .unwrap();
    outage_longer_than_the_lifetime("reliable-list", &mut server, |c| {
        ReliableListBroker::new(c, "jobs")
            .with_maintenance_interval(INTERVAL)
            .with_heartbeat_ttl(LIFETIME)
    })
    .await;
}

#[tokio::test]
async fn stream_consumers_keep_their_jobs_across_a_long_outage() {
    let mut server = aof_server();
    let conn = server.connect().await;
    StreamProducer::new(&conn, "events")
        .add_many(&[Message::new("job-A"), Message::new("job-B")])
        .await
        .unwrap();
    outage_longer_than_the_lifetime("stream", &mut server, |c| {
        StreamBroker::new(c, "events", "g")
            .with_start(GroupStart::Beginning)
            .with_maintenance_interval(INTERVAL)
            .with_heartbeat_ttl(LIFETIME)
    })
    .await;
}

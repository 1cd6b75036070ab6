//! What the scenarios are generic over: [`Subject`], an at-least-once broker under test, with
//! one impl per broker; [`Env`], the Redis deployment it runs on (one server or a 3-master
//! Cluster); and the workers that count what was processed.

#![allow(unreachable_pub)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pythia_core::{
    Broker, BrokerError, CancellationToken, Message, RetryPolicy, RunSummary, RuntimeError,
    RuntimeStatus, Worker, WorkerError, WorkerRuntime,
};
use pythia_redis::{
    GroupStart, ListProducer, QueueKeys, RedisConfig, RedisConnection, ReliableListBroker,
    ShardedQueue, ShardedStreamBroker, ShardedStreamProducer, StreamBroker, StreamProducer,
};
use redis::Value;
use tokio::task::JoinHandle;

use crate::chaos::{ChildSpec, query, within};
use crate::support::RedisServer;
use crate::support::cluster::RedisCluster;

/// Heartbeat and maintenance every 100 ms.
pub const MAINTENANCE: Duration = Duration::from_millis(100);
/// The heartbeat lifetime of the scenarios: a dead consumer's work comes back within about
/// two lifetimes, while a live one starved of CPU for a moment on a busy 2-core machine is not
/// taken for dead.
pub const TTL: Duration = Duration::from_millis(1200);
/// The consumer group of the streams.
pub const GROUP: &str = "g";
/// Shards of the sharded stream.
pub const SHARDS: usize = 3;

/// The steps a message goes through, each with a key another program may have given another
/// type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The queue itself (list or stream).
    Queue,
    /// The dead-letter queue.
    DeadLetters,
    /// The retry schedule.
    Schedule,
    /// In-flight storage (a reliable list consumer's in-flight hash; a stream keeps its
    /// pending entries in the stream itself, covered by [`Step::Queue`]).
    InFlight,
    /// The registry of the queue's (or group's) Pythia consumers, written with each heartbeat.
    Registry,
}

impl Step {
    /// The steps a message goes through (the registry is not one: [`Step::Registry`]).
    pub const ALL: [Step; 4] = [
        Step::Queue,
        Step::DeadLetters,
        Step::Schedule,
        Step::InFlight,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Queue => "queue",
            Step::DeadLetters => "dlq",
            Step::Schedule => "schedule",
            Step::InFlight => "in-flight",
            Step::Registry => "registry",
        }
    }
}

/// Where the scenario runs: the URL (seed URLs on a cluster), a connection, and the nodes whose
/// keys make up the data set (every master on a cluster).
#[derive(Clone)]
pub struct Env {
    pub url: String,
    pub cluster: bool,
    pub conn: RedisConnection,
    nodes: Vec<String>,
}

impl Env {
    /// One standalone server.
    pub async fn single(server: &RedisServer) -> Self {
        Self::from_parts(server.url(), false, vec![server.url()]).await
    }

    /// A 3-master cluster.
    pub async fn cluster(cluster: &RedisCluster) -> Self {
        let nodes = cluster
            .master_ports()
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect();
        Self::from_parts(cluster.seed_urls(), true, nodes).await
    }

    async fn from_parts(url: String, cluster: bool, nodes: Vec<String>) -> Self {
        let conn = RedisConnection::connect(config(&url, cluster))
            .await
            .unwrap();
        Self {
            url,
            cluster,
            conn,
            nodes,
        }
    }

    /// A label for the CHAOS line: the broker's name, `@cluster` on a cluster.
    pub fn label(&self, broker: &str) -> String {
        if self.cluster {
            format!("{broker}@cluster")
        } else {
            broker.to_owned()
        }
    }

    /// The settings a worker child needs to reach this deployment.
    pub fn child_spec(&self) -> ChildSpec {
        ChildSpec::new()
            .set("url", &self.url)
            .set("cluster", u8::from(self.cluster))
    }

    /// Every key matching `pattern`, over every master.
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let mut all = Vec::new();
        for node in &self.nodes {
            let c = RedisConnection::connect(config(node, false)).await.unwrap();
            let mut found: Vec<String> = query(&c, &["KEYS", pattern]).await;
            all.append(&mut found);
        }
        all.sort();
        all
    }
}

/// A connection config with the tests' short timeouts.
pub fn config(url: &str, cluster: bool) -> RedisConfig {
    let c = RedisConfig::from_url(url)
        .unwrap()
        .with_block_timeout(Duration::from_millis(200))
        .with_connect_timeout(Duration::from_secs(1));
    if cluster { c.with_cluster() } else { c }
}

/// `<key>.saved` in `key`'s slot: where a scenario parks a key's content while another program's
/// key of the wrong type stands in its place.
pub fn saved_key(key: &str) -> String {
    if pythia_redis::keys::hash_tag(key).len() < key.len() {
        format!("{key}.saved")
    } else {
        format!("{{{key}}}.saved")
    }
}

/// An at-least-once broker under test, bound to one queue name. A new broker counts as
/// at-least-once once it has an impl here and passes every scenario of the suite.
pub trait Subject: Clone + Send + Sync + 'static {
    /// The broker type.
    type B: Broker + 'static;
    /// Its name in CHAOS lines and RELIABILITY.md.
    const NAME: &'static str;

    /// The subject for queue `queue`.
    fn on(queue: &str) -> Self;

    /// Two queues that are neighbours: their names share a hash tag, so on a cluster they live
    /// in one slot.
    fn neighbours() -> (Self, Self);

    /// A broker with the fast heartbeat (interval [`MAINTENANCE`], lifetime `ttl`), under
    /// `consumer` when given, else a fresh unique name.
    fn broker(&self, conn: &RedisConnection, consumer: Option<&str>, ttl: Duration) -> Self::B;

    /// The consumer name of `b`.
    fn consumer(b: &Self::B) -> String;

    /// Creates what must exist before messages are produced (a stream's consumer group).
    fn prepare(&self, conn: &RedisConnection) -> impl Future<Output = ()> + Send;

    /// Produces `msgs`.
    fn produce(
        &self,
        conn: &RedisConnection,
        msgs: &[Message],
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// The keys of `step` a scenario gives another type (for `consumer`); none when the broker
    /// has no key of its own for that step.
    fn key_of(&self, step: Step, consumer: &str) -> Vec<String>;

    /// What `consumer` holds: in-flight and staged items, or pending entries.
    fn held(&self, conn: &RedisConnection, consumer: &str) -> impl Future<Output = i64> + Send;

    /// Whether `consumer` is forgotten: its work returned and no trace of it left.
    fn gone(&self, conn: &RedisConnection, consumer: &str) -> impl Future<Output = bool> + Send;

    /// Messages waiting: in the queue and not yet delivered, or scheduled for a retry.
    fn backlog(&self, conn: &RedisConnection) -> impl Future<Output = i64> + Send;

    /// Deliveries in flight over every consumer (in-flight hashes and staging lists, or
    /// pending entries).
    fn pending(&self, conn: &RedisConnection) -> impl Future<Output = i64> + Send;

    /// Dead letters kept for the queue.
    fn dead_letters(&self, conn: &RedisConnection) -> impl Future<Output = i64> + Send;

    /// Deletes the dead letters (once counted), so that "no state left" can be checked.
    fn clear_dead_letters(&self, conn: &RedisConnection) -> impl Future<Output = ()> + Send;

    /// Nothing left: no Pythia key of the queue, no message in the queue, no pending entry.
    fn assert_no_state_left(&self, env: &Env) -> impl Future<Output = ()> + Send;
}

async fn xpending_total(conn: &RedisConnection, stream: &str) -> i64 {
    let v: Value = query(conn, &["XPENDING", stream, GROUP]).await;
    match v {
        Value::Array(parts) => match parts.first() {
            Some(Value::Int(n)) => *n,
            other => panic!("unexpected XPENDING reply {other:?}"),
        },
        other => panic!("unexpected XPENDING reply {other:?}"),
    }
}

async fn xpending_of(conn: &RedisConnection, stream: &str, consumer: &str) -> i64 {
    let p: Vec<Value> = query(
        conn,
        &["XPENDING", stream, GROUP, "-", "+", "100000", consumer],
    )
    .await;
    p.len() as i64
}

async fn group_consumers(conn: &RedisConnection, stream: &str) -> Vec<String> {
    let v: redis::streams::StreamInfoConsumersReply =
        query(conn, &["XINFO", "CONSUMERS", stream, GROUP]).await;
    v.consumers.into_iter().map(|c| c.name).collect()
}

/// Entries of `stream` after its group's last delivered id (at most 1000), and its retries.
async fn stream_backlog(conn: &RedisConnection, stream: &str) -> i64 {
    let last = last_delivered(conn, stream).await;
    let undelivered: Vec<Value> = query(
        conn,
        &["XRANGE", stream, &format!("({last}"), "+", "COUNT", "1000"],
    )
    .await;
    let scheduled: i64 = query(
        conn,
        &["ZCARD", &QueueKeys::new("pythia", stream).scheduled()],
    )
    .await;
    undelivered.len() as i64 + scheduled
}

async fn last_delivered(conn: &RedisConnection, stream: &str) -> String {
    let v: Vec<Value> = query(conn, &["XINFO", "GROUPS", stream]).await;
    let Some(Value::Array(fields)) = v.into_iter().next() else {
        panic!("no group on {stream}")
    };
    let info: HashMap<String, Value> = fields
        .chunks(2)
        .filter_map(|kv| match &kv[0] {
            Value::BulkString(k) => Some((String::from_utf8_lossy(k).into_owned(), kv[1].clone())),
            _ => None,
        })
        .collect();
    match info.get("last-delivered-id") {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        other => panic!("{stream}: last-delivered-id {other:?}"),
    }
}

fn pattern(keys: &QueueKeys) -> String {
    // Every key of the queue starts with the schedule's base.
    let s = keys.scheduled();
    format!("{}*", s.strip_suffix("scheduled").unwrap())
}

async fn assert_stream_clean(env: &Env, stream: &str, what: &str) {
    let keys = env.keys(&pattern(&QueueKeys::new("pythia", stream))).await;
    assert!(keys.is_empty(), "{what}: left behind: {keys:?}");
    assert_eq!(
        xpending_total(&env.conn, stream).await,
        0,
        "{what}: PEL of {stream} not empty"
    );
    let left = group_consumers(&env.conn, stream).await;
    assert!(
        left.is_empty(),
        "{what}: consumers left in {stream}: {left:?}"
    );
    let left = stream_backlog(&env.conn, stream).await;
    assert_eq!(
        left, 0,
        "{what}: {stream} has entries never delivered to the group"
    );
}

/// The reliable list ([`ReliableListBroker`]).
#[derive(Clone)]
pub struct Reliable {
    queue: String,
}

impl Subject for Reliable {
    type B = ReliableListBroker;
    const NAME: &'static str = "reliable-list";

    fn on(queue: &str) -> Self {
        Self {
            queue: queue.to_owned(),
        }
    }

    fn neighbours() -> (Self, Self) {
        (Self::on("{t}.a"), Self::on("{t}.b"))
    }

    fn broker(&self, conn: &RedisConnection, consumer: Option<&str>, ttl: Duration) -> Self::B {
        match consumer {
            Some(c) => ReliableListBroker::with_consumer_name(conn, &self.queue, c),
            None => ReliableListBroker::new(conn, &self.queue),
        }
        .with_maintenance_interval(MAINTENANCE)
        .with_heartbeat_ttl(ttl)
    }

    fn consumer(b: &Self::B) -> String {
        b.consumer().to_owned()
    }

    async fn prepare(&self, _conn: &RedisConnection) {}

    async fn produce(&self, conn: &RedisConnection, msgs: &[Message]) -> Result<(), BrokerError> {
        ListProducer::new(conn, &self.queue)
            .push_many(msgs)
            .await
            .map(drop)
    }

    fn key_of(&self, step: Step, consumer: &str) -> Vec<String> {
        let k = QueueKeys::new("pythia", &self.queue);
        vec![match step {
            Step::Queue => self.queue.clone(),
            Step::DeadLetters => k.dead_letters(),
            Step::Schedule => k.scheduled(),
            Step::InFlight => k.in_flight(consumer),
            Step::Registry => k.consumers(),
        }]
    }

    async fn held(&self, conn: &RedisConnection, consumer: &str) -> i64 {
        let k = QueueKeys::new("pythia", &self.queue);
        let inflight: i64 = query(conn, &["HLEN", &k.in_flight(consumer)]).await;
        let staged: i64 = query(conn, &["LLEN", &k.staging(consumer)]).await;
        inflight + staged
    }

    async fn gone(&self, conn: &RedisConnection, consumer: &str) -> bool {
        let k = QueueKeys::new("pythia", &self.queue);
        let a: i64 = query(conn, &["EXISTS", &k.in_flight(consumer)]).await;
        let b: i64 = query(conn, &["EXISTS", &k.staging(consumer)]).await;
        let member: i64 = query(conn, &["SISMEMBER", &k.consumers(), consumer]).await;
        a + b + member == 0
    }

    async fn backlog(&self, conn: &RedisConnection) -> i64 {
        let k = QueueKeys::new("pythia", &self.queue);
        let queued: i64 = query(conn, &["LLEN", &self.queue]).await;
        let scheduled: i64 = query(conn, &["ZCARD", &k.scheduled()]).await;
        queued + scheduled
    }

    async fn pending(&self, conn: &RedisConnection) -> i64 {
        let k = QueueKeys::new("pythia", &self.queue);
        let consumers: Vec<String> = query(conn, &["SMEMBERS", &k.consumers()]).await;
        let mut n = 0;
        for c in consumers {
            n += self.held(conn, &c).await;
        }
        n
    }

    async fn dead_letters(&self, conn: &RedisConnection) -> i64 {
        let k = QueueKeys::new("pythia", &self.queue);
        query(conn, &["LLEN", &k.dead_letters()]).await
    }

    async fn clear_dead_letters(&self, conn: &RedisConnection) {
        let k = QueueKeys::new("pythia", &self.queue);
        let _: i64 = query(conn, &["DEL", &k.dead_letters()]).await;
    }

    async fn assert_no_state_left(&self, env: &Env) {
        let keys = env
            .keys(&pattern(&QueueKeys::new("pythia", &self.queue)))
            .await;
        assert!(keys.is_empty(), "{}: left behind: {keys:?}", self.queue);
        let len: i64 = query(&env.conn, &["LLEN", &self.queue]).await;
        assert_eq!(len, 0, "{}: items left in the queue", self.queue);
    }
}

/// The stream ([`StreamBroker`]).
#[derive(Clone)]
pub struct Stream {
    queue: String,
}

impl Subject for Stream {
    type B = StreamBroker;
    const NAME: &'static str = "stream";

    fn on(queue: &str) -> Self {
        Self {
            queue: queue.to_owned(),
        }
    }

    fn neighbours() -> (Self, Self) {
        (Self::on("{t}.a"), Self::on("{t}.b"))
    }

    fn broker(&self, conn: &RedisConnection, consumer: Option<&str>, ttl: Duration) -> Self::B {
        match consumer {
            Some(c) => StreamBroker::with_consumer_name(conn, &self.queue, GROUP, c),
            None => StreamBroker::new(conn, &self.queue, GROUP),
        }
        .with_start(GroupStart::Beginning)
        .with_maintenance_interval(MAINTENANCE)
        .with_heartbeat_ttl(ttl)
    }

    fn consumer(b: &Self::B) -> String {
        b.consumer().to_owned()
    }

    async fn prepare(&self, conn: &RedisConnection) {
        self.broker(conn, None, TTL).ensure_group().await.unwrap();
    }

    async fn produce(&self, conn: &RedisConnection, msgs: &[Message]) -> Result<(), BrokerError> {
        StreamProducer::new(conn, &self.queue)
            .add_many(msgs)
            .await
            .map(drop)
    }

    fn key_of(&self, step: Step, _consumer: &str) -> Vec<String> {
        let k = QueueKeys::new("pythia", &self.queue);
        match step {
            Step::Queue => vec![self.queue.clone()],
            Step::DeadLetters => vec![k.dead_letters()],
            Step::Schedule => vec![k.scheduled()],
            Step::InFlight => vec![],
            Step::Registry => vec![k.group_consumers(GROUP)],
        }
    }

    async fn held(&self, conn: &RedisConnection, consumer: &str) -> i64 {
        xpending_of(conn, &self.queue, consumer).await
    }

    async fn gone(&self, conn: &RedisConnection, consumer: &str) -> bool {
        !group_consumers(conn, &self.queue)
            .await
            .iter()
            .any(|c| c == consumer)
    }

    async fn backlog(&self, conn: &RedisConnection) -> i64 {
        stream_backlog(conn, &self.queue).await
    }

    async fn pending(&self, conn: &RedisConnection) -> i64 {
        xpending_total(conn, &self.queue).await
    }

    async fn dead_letters(&self, conn: &RedisConnection) -> i64 {
        let k = QueueKeys::new("pythia", &self.queue);
        query(conn, &["XLEN", &k.dead_letters()]).await
    }

    async fn clear_dead_letters(&self, conn: &RedisConnection) {
        let k = QueueKeys::new("pythia", &self.queue);
        let _: i64 = query(conn, &["DEL", &k.dead_letters()]).await;
    }

    async fn assert_no_state_left(&self, env: &Env) {
        assert_stream_clean(env, &self.queue, &self.queue).await;
    }
}

/// The sharded stream ([`ShardedStreamBroker`]), [`SHARDS`] shards.
#[derive(Clone)]
pub struct Sharded {
    queue: ShardedQueue,
}

impl Sharded {
    fn each_key(&self, f: impl Fn(&QueueKeys) -> String) -> Vec<String> {
        self.queue
            .streams()
            .iter()
            .map(|s| f(&QueueKeys::new("pythia", s)))
            .collect()
    }
}

impl Subject for Sharded {
    type B = ShardedStreamBroker;
    const NAME: &'static str = "sharded-stream";

    fn on(queue: &str) -> Self {
        Self {
            queue: ShardedQueue::new(queue, SHARDS).unwrap(),
        }
    }

    /// A sharded queue's name may not hold a hash tag (each shard has its own): the
    /// neighbours are `t.a` and `t.b`, whose shards' tags (`t.a#0.…`) differ.
    fn neighbours() -> (Self, Self) {
        (Self::on("t.a"), Self::on("t.b"))
    }

    fn broker(&self, conn: &RedisConnection, consumer: Option<&str>, ttl: Duration) -> Self::B {
        match consumer {
            Some(c) => ShardedStreamBroker::with_consumer_name(conn, &self.queue, GROUP, c),
            None => ShardedStreamBroker::new(conn, &self.queue, GROUP),
        }
        .with_start(GroupStart::Beginning)
        .with_maintenance_interval(MAINTENANCE)
        .with_heartbeat_ttl(ttl)
    }

    fn consumer(b: &Self::B) -> String {
        b.consumer().to_owned()
    }

    async fn prepare(&self, conn: &RedisConnection) {
        self.broker(conn, None, TTL).ensure_group().await.unwrap();
    }

    async fn produce(&self, conn: &RedisConnection, msgs: &[Message]) -> Result<(), BrokerError> {
        ShardedStreamProducer::new(conn, &self.queue)
            .add_many(msgs)
            .await
            .map(drop)
    }

    /// Every shard's key of `step`.
    fn key_of(&self, step: Step, _consumer: &str) -> Vec<String> {
        match step {
            Step::Queue => self.queue.streams().to_vec(),
            Step::DeadLetters => self.each_key(QueueKeys::dead_letters),
            Step::Schedule => self.each_key(QueueKeys::scheduled),
            Step::InFlight => vec![],
            Step::Registry => self.each_key(|k| k.group_consumers(GROUP)),
        }
    }

    async fn held(&self, conn: &RedisConnection, consumer: &str) -> i64 {
        let mut n = 0;
        for s in self.queue.streams() {
            n += xpending_of(conn, s, consumer).await;
        }
        n
    }

    async fn gone(&self, conn: &RedisConnection, consumer: &str) -> bool {
        for s in self.queue.streams() {
            if group_consumers(conn, s).await.iter().any(|c| c == consumer) {
                return false;
            }
        }
        true
    }

    async fn backlog(&self, conn: &RedisConnection) -> i64 {
        let mut n = 0;
        for s in self.queue.streams() {
            n += stream_backlog(conn, s).await;
        }
        n
    }

    async fn pending(&self, conn: &RedisConnection) -> i64 {
        let mut n = 0;
        for s in self.queue.streams() {
            n += xpending_total(conn, s).await;
        }
        n
    }

    async fn dead_letters(&self, conn: &RedisConnection) -> i64 {
        let mut n = 0;
        for k in self.each_key(QueueKeys::dead_letters) {
            let len: i64 = query(conn, &["XLEN", &k]).await;
            n += len;
        }
        n
    }

    async fn clear_dead_letters(&self, conn: &RedisConnection) {
        for k in self.each_key(QueueKeys::dead_letters) {
            let _: i64 = query(conn, &["DEL", &k]).await;
        }
    }

    async fn assert_no_state_left(&self, env: &Env) {
        for s in self.queue.streams() {
            assert_stream_clean(env, s, self.queue.name()).await;
        }
    }
}

/// The bodies `<prefix><i>` for `i` in `0..n`, as messages.
pub fn numbered(prefix: &str, from: usize, n: usize) -> Vec<Message> {
    (from..from + n)
        .map(|i| Message::new(format!("{prefix}{i}")))
        .collect()
}

/// The bodies of `msgs`.
pub fn bodies(msgs: &[Message]) -> Vec<String> {
    msgs.iter()
        .map(|m| String::from_utf8_lossy(m.body()).into_owned())
        .collect()
}

/// What a handler does with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Plan {
    /// Every message succeeds.
    #[default]
    AllOk,
    /// By the number at the end of the body: `n % 4 == 0` is rejected (dead-lettered),
    /// `n % 4 == 1` fails its first attempt with a 300 ms retry, the rest succeed.
    Mixed,
    /// Even numbers fail their first attempt with a 300 ms retry.
    RetryEven,
}

/// What `plan` does with `msg`: `None` for a failed first attempt (not final), else the
/// handler's result (final).
pub fn apply(plan: Plan, msg: &Message) -> Result<(), WorkerError> {
    let body = String::from_utf8_lossy(msg.body());
    let n: u64 = body
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    let retry = || {
        Err(WorkerError::retry_later(
            Duration::from_millis(300),
            "first attempt fails",
        ))
    };
    match plan {
        Plan::AllOk => Ok(()),
        Plan::Mixed if n.is_multiple_of(4) => Err(WorkerError::reject("poison")),
        Plan::Mixed if n % 4 == 1 && msg.attempt() == 1 => retry(),
        Plan::RetryEven if n.is_multiple_of(2) && msg.attempt() == 1 => retry(),
        _ => Ok(()),
    }
}

/// An in-process worker that counts, in memory, each final handling (success or rejection)
/// by body, so that an outage never makes recording fail.
#[derive(Clone, Default)]
pub struct Probe {
    finals: Arc<Mutex<HashMap<String, i64>>>,
    starts: Arc<Mutex<Vec<(String, u32)>>>,
    total: Arc<AtomicU64>,
    delay: Duration,
    plan: Plan,
}

impl Probe {
    pub fn new(delay: Duration, plan: Plan) -> Self {
        Self {
            delay,
            plan,
            ..Self::default()
        }
    }

    /// Final handlings so far (duplicates included).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Distinct bodies handled finally.
    pub fn distinct(&self) -> usize {
        self.finals.lock().unwrap().len()
    }

    /// Body → final handlings.
    pub fn counts(&self) -> HashMap<String, i64> {
        self.finals.lock().unwrap().clone()
    }

    /// Every handler start: body and attempt.
    pub fn starts(&self) -> Vec<(String, u32)> {
        self.starts.lock().unwrap().clone()
    }
}

impl Worker for Probe {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        let body = String::from_utf8_lossy(msg.body()).into_owned();
        self.starts
            .lock()
            .unwrap()
            .push((body.clone(), msg.attempt()));
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let r = apply(self.plan, msg);
        let retried = matches!(&r, Err(e) if e.is_retryable());
        if !retried {
            *self.finals.lock().unwrap().entry(body).or_default() += 1;
            self.total.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

/// A worker runtime running in this process.
pub struct Running {
    pub status: RuntimeStatus,
    pub stop: CancellationToken,
    pub handle: JoinHandle<Result<RunSummary, RuntimeError>>,
}

impl Running {
    /// Starts `broker` with `worker`: `concurrency` handlers, batches of `batch`.
    pub fn start<B: Broker + 'static, W: Worker + 'static>(
        broker: B,
        worker: W,
        concurrency: usize,
        batch: usize,
    ) -> Self {
        let rt = WorkerRuntime::new(broker, worker)
            .with_signal_handling(false)
            .with_concurrency(concurrency)
            .with_batch_size(batch)
            .with_retry_policy(RetryPolicy::default().with_max_attempts(1000))
            .with_stats_interval(None);
        Self {
            status: rt.status(),
            stop: rt.cancellation_token(),
            handle: tokio::spawn(rt.run()),
        }
    }

    /// Stops it and waits; it must not have ended by itself, and must end without error.
    pub async fn finish(self) -> RunSummary {
        assert!(
            !self.handle.is_finished(),
            "the runtime ended by itself during the scenario"
        );
        self.stop.cancel();
        within(30, "the runtime to stop", self.handle)
            .await
            .unwrap()
            .expect("the runtime ends without error")
    }
}

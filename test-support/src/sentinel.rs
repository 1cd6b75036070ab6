//! A Redis Sentinel setup on loopback: a master, a replica of it and three sentinels watching
//! it (quorum 2), with a failover to force and a master to kill, and the time the sentinels
//! take to name the replica. Never a mock, never port 6379.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use super::redis_process::{RedisProcess, info_field};
use super::{RedisServer, eventually, free_port};

/// The name the sentinels monitor the master under.
const MASTER_NAME: &str = "mymaster";
const SENTINELS: usize = 3;
/// Ports tried per sentinel before giving up.
const PORT_ATTEMPTS: usize = 10;
/// How long the setup may take to come up, or a failover to complete. Generous: the machine
/// may be busy compiling.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// One `redis-server --sentinel` process with a generated `sentinel.conf` in its own
/// directory (Sentinel rewrites its config file, so it must be its own and writable).
pub struct Sentinel {
    process: RedisProcess,
}

impl Sentinel {
    fn start(master_port: u16) -> Self {
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!(
                "pythia-test-sentinel-{}-{port}-{:x}",
                std::process::id(),
                fastrand::u32(..)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let conf = dir.join("sentinel.conf");
            // A failover-timeout of 5 s: a split vote is retried after twice that, not 20 s.
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\nloglevel notice\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 5000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir = dir.display()
                ),
            )
            .unwrap();
            let args: Vec<OsString> = vec![conf.into(), "--sentinel".into()];
            match RedisProcess::spawn(&args, port, dir) {
                Ok(process) => return Self { process },
                Err(e) => last = e,
            }
        }
        panic!("starting a sentinel: no port worked in {PORT_ATTEMPTS} tries; last: {last}");
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port())
    }

    /// `SENTINEL <args…>` on this sentinel.
    pub async fn sentinel<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let client = redis::Client::open(self.url())?;
        let mut c = client.get_multiplexed_async_connection().await?;
        let mut cmd = redis::cmd("SENTINEL");
        for a in args {
            cmd.arg(*a);
        }
        cmd.query_async(&mut c).await
    }

    /// The port of the master this sentinel names.
    pub async fn master_port(&self) -> Option<u16> {
        let addr: Option<(String, String)> = self
            .sentinel(&["GET-MASTER-ADDR-BY-NAME", MASTER_NAME])
            .await
            .ok()?;
        addr.and_then(|(_, p)| p.parse().ok())
    }
}

/// A master, a replica of it and three sentinels watching it, all on 127.0.0.1.
///
/// `master()` and `replica()` are the servers as started: after a failover the replica is the
/// master (and after [`kill_master`](Self::kill_master) the master is stopped).
pub struct SentinelSetup {
    master: RedisServer,
    replica: RedisServer,
    sentinels: Vec<Sentinel>,
}

impl SentinelSetup {
    /// Starts the servers and the sentinels and waits until the replica is in sync and every
    /// sentinel knows the replica and the two other sentinels.
    pub async fn start() -> Self {
        // A replica's first sync starts at once instead of after the default 5 s.
        let master = RedisServer::start_with(&["--repl-diskless-sync-delay", "0"]);
        let port = master.port().to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
        let sentinels: Vec<Sentinel> = (0..SENTINELS)
            .map(|_| Sentinel::start(master.port()))
            .collect();
        let setup = Self {
            master,
            replica,
            sentinels,
        };
        let replica_port = setup.replica.port();
        eventually(STEP_TIMEOUT, "the replica in sync", || async {
            let info = info(replica_port, "replication").await;
            info_field(&info, "master_link_status") == Some("up")
        })
        .await;
        for s in &setup.sentinels {
            eventually(
                STEP_TIMEOUT,
                "every sentinel to know the replica and the other sentinels",
                || async {
                    let replicas: Vec<redis::Value> = s
                        .sentinel(&["REPLICAS", MASTER_NAME])
                        .await
                        .unwrap_or_default();
                    let others: Vec<redis::Value> = s
                        .sentinel(&["SENTINELS", MASTER_NAME])
                        .await
                        .unwrap_or_default();
                    replicas.len() == 1 && others.len() == SENTINELS - 1
                },
            )
            .await;
        }
        setup
    }

    /// The name the sentinels know the master by.
    pub fn master_name(&self) -> &'static str {
        MASTER_NAME
    }

    /// The server started as the master.
    pub fn master(&self) -> &RedisServer {
        &self.master
    }

    /// The server started as the master's replica.
    pub fn replica(&self) -> &RedisServer {
        &self.replica
    }

    /// The three sentinels.
    pub fn sentinels(&self) -> &[Sentinel] {
        &self.sentinels
    }

    /// `redis://127.0.0.1:<port>` of every sentinel, comma-separated.
    pub fn sentinel_urls(&self) -> String {
        self.sentinels
            .iter()
            .map(Sentinel::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `SENTINEL FAILOVER` (no election, the master demoted cleanly) and the time until the
    /// replica says it is master and every sentinel names it: about 1.1 s on loopback, as the
    /// sentinel sees the promotion in the replica's `INFO`, which it polls once a second
    /// during a failover.
    pub async fn failover(&self) -> Duration {
        let t = Instant::now();
        let () = self.sentinels[0]
            .sentinel(&["FAILOVER", MASTER_NAME])
            .await
            .expect("SENTINEL FAILOVER");
        self.wait_for_the_replica_promoted("SENTINEL FAILOVER")
            .await;
        t.elapsed()
    }

    /// SIGKILLs the master and returns the time until the replica says it is master and every
    /// sentinel names it: the master found down (`down-after-milliseconds` 1000), the quorum
    /// of 2 agreeing, a leader elected, the replica promoted.
    pub async fn kill_master(&mut self) -> Duration {
        let t = Instant::now();
        self.master.stop();
        self.wait_for_the_replica_promoted("SIGKILL of the master")
            .await;
        t.elapsed()
    }

    async fn wait_for_the_replica_promoted(&self, after: &str) {
        let new = self.replica.port();
        eventually(
            STEP_TIMEOUT,
            &format!("the replica {new} to say it is master after {after}"),
            || async { info_field(&info(new, "replication").await, "role") == Some("master") },
        )
        .await;
        for s in &self.sentinels {
            eventually(
                STEP_TIMEOUT,
                &format!(
                    "the sentinel {} to name {new} as master after {after}",
                    s.port()
                ),
                || async { s.master_port().await == Some(new) },
            )
            .await;
        }
    }
}

/// `INFO <section>` of the server on `port`, empty if it does not answer.
async fn info(port: u16, section: &str) -> String {
    let reply = async {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
        let mut c = client.get_multiplexed_async_connection().await?;
        redis::cmd("INFO")
            .arg(section)
            .query_async::<String>(&mut c)
            .await
    };
    reply.await.unwrap_or_default()
}

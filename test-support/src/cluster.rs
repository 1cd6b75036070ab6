//! A Redis Cluster on loopback: six `redis-server --cluster-enabled yes` processes, three
//! masters with a replica each, joined by `redis-cli --cluster create`; a master to SIGKILL or
//! fail over gracefully, and the time the cluster takes to heal. Never a mock, never port 6379.
//!
//! The API blocks (it waits on processes and polls the nodes). From an async test use a
//! `multi_thread` runtime: the waits then run in `block_in_place`, and the test's own tasks
//! (a worker under test) keep running on the other thread during a failover.

use std::ffi::OsString;
use std::ops::Range;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::redis_process::{
    RedisProcess, blocking, info_field, port_is_free, query, tail, wait_until,
};

/// Three masters and one replica for each.
const NODES: usize = 6;
const SLOTS: u32 = 16_384;
/// A node's cluster bus listens on its port + 10000 (Redis's default `cluster-port`).
const BUS_OFFSET: u16 = 10_000;
/// Client ports come from here, so that they and their bus ports stay below Linux's
/// ephemeral range (32768..): the `bind(0)` ports of the other tests never land on them.
const PORTS: Range<u16> = 12_000..22_000;
/// Port pairs tried per node before giving up.
const PORT_ATTEMPTS: usize = 20;
/// The limit of each step: `redis-cli --cluster create`, the cluster becoming healthy, a
/// failover completing. Generous: the machine may be busy compiling.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Six cluster nodes on 127.0.0.1, every process killed and every directory removed on drop.
pub struct RedisCluster {
    root: PathBuf,
    nodes: Vec<RedisProcess>,
}

/// One row of `CLUSTER SLOTS`: a slot range, its master and its replicas (by port).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SlotRange {
    start: u16,
    end: u16,
    master: u16,
    replicas: Vec<u16>,
}

impl RedisCluster {
    /// Starts the six nodes, creates the cluster and waits until it is healthy: every node
    /// says `cluster_state:ok`, every node's `CLUSTER SLOTS` covers the 16384 slots with the
    /// same masters and a replica for each, and every replica's link is up.
    ///
    /// Panics naming the step that failed, with the end of redis-cli's output or the node's
    /// log.
    pub fn start() -> Self {
        blocking(|| {
            let root = std::env::temp_dir().join(format!(
                "pythia-test-cluster-{}-{:x}",
                std::process::id(),
                fastrand::u64(..)
            ));
            std::fs::create_dir_all(&root)
                .unwrap_or_else(|e| panic!("creating {}: {e}", root.display()));
            // Built first, so that a panic in a later step still kills what was started.
            let mut cluster = Self {
                root,
                nodes: Vec::with_capacity(NODES),
            };
            for _ in 0..NODES {
                let node = cluster.spawn_node();
                cluster.nodes.push(node);
            }
            cluster.create();
            if let Err(e) = wait_until(STEP_TIMEOUT, "the new cluster healthy", || {
                cluster.health(true).map(drop)
            }) {
                panic!("starting the cluster: {e}");
            }
            cluster
        })
    }

    /// A node with a free port pair (port, port + 10000): another one when the server cannot
    /// bind (a port taken since it was checked).
    fn spawn_node(&self) -> RedisProcess {
        let mut last = String::from("no free port pair found");
        for _ in 0..PORT_ATTEMPTS {
            let port = fastrand::u16(PORTS);
            if self.nodes.iter().any(|n| n.port() == port)
                || !port_is_free(port)
                || !port_is_free(port + BUS_OFFSET)
            {
                continue;
            }
            let dir = self.root.join(format!("node-{port}"));
            let args: Vec<OsString> = [
                "--port".into(),
                port.to_string().into(),
                "--bind".into(),
                "127.0.0.1".into(),
                "--dir".into(),
                dir.clone().into(),
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                dir.join(format!("nodes-{port}.conf")).into(),
                "--cluster-node-timeout".into(),
                "1000".into(),
                "--save".into(),
                "".into(),
                "--appendonly".into(),
                "no".into(),
                // A replica's first sync starts at once instead of after the default 5 s.
                "--repl-diskless-sync-delay".into(),
                "0".into(),
                // CLUSTER SLOTS lists a replica only once its replication offset is not 0,
                // which on an idle master takes its first ping to the replicas: every 10 s by
                // default.
                "--repl-ping-replica-period".into(),
                "1".into(),
                "--daemonize".into(),
                "no".into(),
            ]
            .into();
            match RedisProcess::spawn(&args, port, dir) {
                Ok(node) => return node,
                Err(e) => last = e,
            }
        }
        panic!(
            "starting a cluster node: no port pair worked in {PORT_ATTEMPTS} tries; last: {last}"
        );
    }

    /// `redis-cli --cluster create … --cluster-replicas 1 --cluster-yes`, its output in a file
    /// (quoted when it fails) and a deadline (it waits for the nodes to join with no limit).
    fn create(&self) {
        let out = self.root.join("redis-cli-create.log");
        let file = std::fs::File::create(&out).expect("creating redis-cli's output file");
        let mut cmd = Command::new("redis-cli");
        cmd.arg("--cluster").arg("create");
        for n in &self.nodes {
            cmd.arg(format!("127.0.0.1:{}", n.port()));
        }
        let mut child = cmd
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("cloning a file handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("redis-cli not runnable ({e}); install redis-tools"));
        let deadline = Instant::now() + STEP_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting on redis-cli") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "redis-cli --cluster create did not finish within {STEP_TIMEOUT:?}; its output ends:\n{}",
                    tail(&out, 15)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = tail(&out, 1000);
        if !status.success() || !output.contains("All 16384 slots covered") {
            panic!(
                "redis-cli --cluster create failed ({status}); its output ends:\n{}",
                tail(&out, 15)
            );
        }
    }

    /// Every node's port, in start order (a killed node's too).
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisProcess::port).collect()
    }

    /// The ports of the masters now serving slots, ascending.
    pub fn master_ports(&self) -> Vec<u16> {
        let table = blocking(|| self.slot_table());
        let mut ports: Vec<u16> = table.into_iter().map(|r| r.master).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// `redis://127.0.0.1:<port>` of every master now serving slots, comma-separated: the
    /// seed nodes of a cluster client.
    pub fn seed_urls(&self) -> String {
        self.master_ports()
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A Pythia connection to this cluster (`--cluster` with the seed URLs).
    pub async fn connect(&self) -> pythia_redis::RedisConnection {
        let cfg = pythia_redis::RedisConfig::from_url(&self.seed_urls())
            .unwrap()
            .with_cluster();
        pythia_redis::RedisConnection::connect(cfg).await.unwrap()
    }

    /// `n` names `<prefix>-<i>` whose slots are served by `n` different masters, sorted.
    pub fn names_on_different_masters(&self, prefix: &str, n: usize) -> Vec<String> {
        let mut by_master = std::collections::HashMap::new();
        for i in 0.. {
            let name = format!("{prefix}-{i}");
            by_master
                .entry(self.master_port_for_key(&name))
                .or_insert(name);
            if by_master.len() == n {
                break;
            }
        }
        let mut names: Vec<String> = by_master.into_values().collect();
        names.sort();
        names
    }

    /// The port of the master that owns `key`'s slot.
    pub fn master_port_for_key(&self, key: &str) -> u16 {
        blocking(|| self.range_for_key(key).1.master)
    }

    /// SIGKILLs the master that owns `key`'s slot and waits until its replica is promoted and
    /// the surviving nodes are healthy again (`cluster_state:ok`, all slots covered, the slot
    /// served by the former replica in every node's view). Returns the time from the kill.
    ///
    /// The promoted master has no replica afterwards: killing it too panics.
    pub fn kill_master_for_key(&mut self, key: &str) -> Duration {
        blocking(|| {
            let (slot, range) = self.range_for_key(key);
            let (master, replica) = (range.master, Self::replica_of(&range));
            let began = Instant::now();
            self.node_mut(master).kill();
            let what = format!(
                "the replica {replica} promoted for slot {slot} after SIGKILL of its master {master}"
            );
            if let Err(e) = wait_until(STEP_TIMEOUT, &what, || self.promoted(slot, replica, false))
            {
                panic!("{e}\nthe replica's log ends:\n{}", self.log_tail(replica));
            }
            began.elapsed()
        })
    }

    /// `CLUSTER FAILOVER` on the replica of the master that owns `key`'s slot (a graceful
    /// promotion: the master hands over with no write lost) and waits until the replica is
    /// master in every node's view and the former master replicates it. Returns the time
    /// from the command.
    pub fn failover_for_key(&self, key: &str) -> Duration {
        blocking(|| {
            let (slot, range) = self.range_for_key(key);
            let (master, replica) = (range.master, Self::replica_of(&range));
            let began = Instant::now();
            let reply: redis::RedisResult<String> = query(replica, &["CLUSTER", "FAILOVER"]);
            if let Err(e) = reply {
                panic!("CLUSTER FAILOVER on the replica {replica} of {master}: {e}");
            }
            let what = format!(
                "the replica {replica} promoted for slot {slot} by CLUSTER FAILOVER, {master} its replica"
            );
            if let Err(e) = wait_until(STEP_TIMEOUT, &what, || self.promoted(slot, replica, true)) {
                panic!("{e}\nthe replica's log ends:\n{}", self.log_tail(replica));
            }
            began.elapsed()
        })
    }

    /// Ok once `replica` says it is a master and the cluster is healthy with `slot` on it.
    fn promoted(&self, slot: u16, replica: u16, with_replicas: bool) -> Result<(), String> {
        let info: String =
            query(replica, &["INFO", "replication"]).map_err(|e| format!("{replica}: {e}"))?;
        if info_field(&info, "role") != Some("master") {
            return Err(format!("{replica} is not master yet"));
        }
        let table = self.health(with_replicas)?;
        match table.iter().find(|r| r.start <= slot && slot <= r.end) {
            Some(r) if r.master == replica => Ok(()),
            other => Err(format!("slot {slot} is on {other:?}")),
        }
    }

    /// The healthy cluster's slot table, or what is wrong: every running node says
    /// `cluster_state:ok` and has the same `CLUSTER SLOTS`, covering every slot (and with a
    /// replica per range if `with_replicas`); every running replica's link to its master is up.
    fn health(&self, with_replicas: bool) -> Result<Vec<SlotRange>, String> {
        let mut agreed: Option<(u16, Vec<SlotRange>)> = None;
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let port = node.port();
            let info: String =
                query(port, &["CLUSTER", "INFO"]).map_err(|e| format!("{port}: {e}"))?;
            if info_field(&info, "cluster_state") != Some("ok") {
                return Err(format!("{port}: cluster_state is not ok"));
            }
            let table = slot_table_of(port)?;
            let covered: u32 = table
                .iter()
                .map(|r| u32::from(r.end) - u32::from(r.start) + 1)
                .sum();
            if covered != SLOTS {
                return Err(format!("{port}: CLUSTER SLOTS covers {covered} slots"));
            }
            if with_replicas && let Some(r) = table.iter().find(|r| r.replicas.is_empty()) {
                return Err(format!("{port}: no replica for {}-{}", r.start, r.end));
            }
            let replication: String =
                query(port, &["INFO", "replication"]).map_err(|e| format!("{port}: {e}"))?;
            if info_field(&replication, "role") == Some("slave")
                && info_field(&replication, "master_link_status") != Some("up")
            {
                return Err(format!(
                    "{port}: the replica's link to its master is not up"
                ));
            }
            match &agreed {
                None => agreed = Some((port, table)),
                Some((first, t)) if *t != table => {
                    return Err(format!("{port} and {first} disagree: {table:?} vs {t:?}"));
                }
                Some(_) => {}
            }
        }
        agreed
            .map(|(_, t)| t)
            .ok_or_else(|| "no node is running".to_owned())
    }

    /// `CLUSTER SLOTS` of the first running node that answers.
    fn slot_table(&self) -> Vec<SlotRange> {
        let mut last = String::from("no node is running");
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            match slot_table_of(node.port()) {
                Ok(t) => return t,
                Err(e) => last = e,
            }
        }
        panic!("reading CLUSTER SLOTS: {last}");
    }

    /// `key`'s slot (`CLUSTER KEYSLOT`) and the range of the slot table that holds it.
    fn range_for_key(&self, key: &str) -> (u16, SlotRange) {
        let asked = self
            .nodes
            .iter()
            .find(|n| n.is_running())
            .expect("a running node")
            .port();
        let slot: u16 = query(asked, &["CLUSTER", "KEYSLOT", key])
            .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT {key} on {asked}: {e}"));
        let range = self
            .slot_table()
            .into_iter()
            .find(|r| r.start <= slot && slot <= r.end)
            .unwrap_or_else(|| panic!("no node serves slot {slot} (key {key})"));
        (slot, range)
    }

    fn replica_of(range: &SlotRange) -> u16 {
        *range.replicas.first().unwrap_or_else(|| {
            panic!(
                "the master {} of slots {}-{} has no replica to promote",
                range.master, range.start, range.end
            )
        })
    }

    fn node_mut(&mut self, port: u16) -> &mut RedisProcess {
        self.nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("{port} is not a node of this cluster"))
    }

    fn log_tail(&self, port: u16) -> String {
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .map_or_else(String::new, |n| n.log_tail(15))
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        // Each node kills its process and removes its directory; then the root goes.
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `CLUSTER SLOTS` of one node, sorted by range.
fn slot_table_of(port: u16) -> Result<Vec<SlotRange>, String> {
    use redis::Value;
    let rows: Vec<Value> =
        query(port, &["CLUSTER", "SLOTS"]).map_err(|e| format!("{port}: CLUSTER SLOTS: {e}"))?;
    let bad = |what: &str| format!("{port}: unexpected CLUSTER SLOTS reply ({what})");
    let node_port = |node: &Value| match node {
        Value::Array(fields) => match fields.get(1) {
            Some(Value::Int(p)) => u16::try_from(*p).ok(),
            _ => None,
        },
        _ => None,
    };
    let mut table = Vec::with_capacity(rows.len());
    for row in rows {
        let Value::Array(fields) = row else {
            return Err(bad("a row is not an array"));
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(master)) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return Err(bad("a row has no range and master"));
        };
        let slot = |n: i64| u16::try_from(n).map_err(|_| bad("slot out of range"));
        table.push(SlotRange {
            start: slot(*start)?,
            end: slot(*end)?,
            master: node_port(master).ok_or_else(|| bad("master"))?,
            replicas: fields[3..]
                .iter()
                .map(|r| node_port(r).ok_or_else(|| bad("replica")))
                .collect::<Result<_, _>>()?,
        });
    }
    table.sort();
    Ok(table)
}

//! `pythia doctor`: is this Redis fit to hold queues? Each check prints PASS, WARN or FAIL with
//! the fix; the exit code is 1 when any check FAILed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Args;
use pythia::redis::{QueueKeys, RedisConnection, Topology};
use serde_json::json;

use crate::cli::RedisArgs;
use crate::error::CliError;

#[derive(Debug, Clone, Args)]
#[command(
    after_long_help = "Each check prints PASS, WARN or FAIL with the fix. Exit 0 when \
    nothing FAILed (warnings allowed), 1 when a check FAILed, 69 when Redis cannot be reached.\n\
    JSON fields (--json): redis_url (password masked), server_version, checks[] {check, status \
    (pass, warn, fail), detail, fix (null when none)}, passed, warnings, failures."
)]
pub(crate) struct DoctorArgs {
    #[command(flatten)]
    pub(crate) redis: RedisArgs,

    /// Check the ACL key permissions on this queue's keys (default: a placeholder queue
    /// `pythia-doctor`).
    #[arg(long, short = 'q', env = "PYTHIA_QUEUE")]
    pub(crate) queue: Option<String>,

    /// Print one JSON document instead of lines.
    #[arg(long)]
    pub(crate) json: bool,
}

/// PING round trips timed.
const PINGS: usize = 20;
/// A median round trip above this is a warning.
const SLOW_PING: Duration = Duration::from_millis(5);
/// Used memory above this share of `maxmemory` is a warning.
const MEMORY_WARN_RATIO: f64 = 0.9;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

/// One check's result.
#[derive(Debug)]
struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    fix: Option<String>,
}

impl Check {
    fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Self {
        Self {
            name,
            status,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

pub(crate) async fn doctor(args: DoctorArgs) -> Result<(), CliError> {
    let conn = args.redis.connect().await?;
    let (version, checks) = match args.redis.topology.topology() {
        Topology::Cluster => {
            // The topology first, then every server check on each master, naming the node.
            let mut checks = vec![cluster_check(&conn).await?];
            let mut version = String::new();
            for (node, _) in conn
                .on_each_master(&redis::cmd("PING"))
                .await
                .map_err(CliError::runtime)?
            {
                let url = node_url(conn.config().urls()[0], &node);
                let node_conn = super::connect_url(&url, &args.redis.key_prefix).await?;
                let (v, node_checks) = server_checks(&node_conn, &args).await?;
                version = v;
                checks.extend(node_checks.into_iter().map(|mut c| {
                    c.detail = format!("{node}: {}", c.detail);
                    c
                }));
            }
            (version, checks)
        }
        Topology::Sentinel { master } => {
            let mut checks = vec![sentinel_check(&conn, &master).await];
            let (version, server) = server_checks(&conn, &args).await?;
            checks.extend(server);
            (version, checks)
        }
        _ => server_checks(&conn, &args).await?,
    };

    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    let (passed, warnings, failures) = (
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail),
    );
    if args.json {
        let doc = json!({
            "redis_url": conn.config().masked_url(),
            "server_version": version,
            "checks": checks.iter().map(|c| json!({
                "check": c.name,
                "status": c.status.as_str(),
                "detail": c.detail,
                "fix": c.fix,
            })).collect::<Vec<_>>(),
            "passed": passed,
            "warnings": warnings,
            "failures": failures,
        });
        crate::output::outln!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("JSON values serialise")
        )?;
    } else {
        crate::output::outln!("Redis {} ({version})", conn.config().masked_url())?;
        for c in &checks {
            crate::output::outln!(
                "{:<5} {:<12} {}",
                c.status.as_str().to_ascii_uppercase(),
                c.name,
                c.detail
            )?;
            if let Some(fix) = &c.fix {
                crate::output::outln!("      fix: {fix}")?;
            }
        }
        crate::output::outln!("{failures} failed, {warnings} warnings, {passed} passed")?;
    }
    if failures > 0 {
        return Err(CliError::runtime(format!(
            "{failures} check{} FAILed",
            if failures == 1 { "" } else { "s" }
        )));
    }
    Ok(())
}

/// The checks of one server: version, eviction policy, memory, persistence, ACL, timeouts,
/// latency. Returns the server's version too.
async fn server_checks(
    conn: &RedisConnection,
    args: &DoctorArgs,
) -> Result<(String, Vec<Check>), CliError> {
    let info = info(conn).await?;
    let version = info.get("redis_version").cloned().unwrap_or_default();
    let parsed = parse_version(&version);
    let mut checks = vec![version_check(&version, parsed)];
    checks.push(eviction_check(&info));
    if let Some(c) = memory_check(&info) {
        checks.push(c);
    }
    checks.push(persistence_check(conn, &info).await);
    checks.push(acl_check(conn, parsed, args).await);
    checks.push(timeout_check(conn).await);
    checks.push(latency_check(conn).await?);
    Ok((version, checks))
}

/// `url` (a seed node's URL, with its credentials and options) pointed at `node` (`host:port`).
fn node_url(url: &str, node: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, _)) => format!("{scheme}://{userinfo}@{node}{tail}"),
        None => format!("{scheme}://{node}{tail}"),
    }
}

/// A cluster's health: every slot served (`cluster_state:ok`), and a replica behind every
/// master (without one, a lost master takes its slots down with it).
async fn cluster_check(conn: &RedisConnection) -> Result<Check, CliError> {
    let mut m = conn.manager();
    let text: String = redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut m)
        .await
        .map_err(|e| CliError::runtime(conn.error("CLUSTER INFO", e)))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let (state, slots_ok, size) = (
        field("cluster_state"),
        field("cluster_slots_ok"),
        field("cluster_size"),
    );
    if state != "ok" {
        return Ok(Check::new(
            "cluster",
            Status::Fail,
            format!("cluster_state is {state:?} ({slots_ok} of 16384 slots ok): some slots have no master"),
        )
        .fix("see CLUSTER NODES; restart or replace the failed master, or `redis-cli --cluster fix`"));
    }
    let replicas = conn
        .on_each_master(redis::cmd("INFO").arg("replication"))
        .await
        .map_err(CliError::runtime)?;
    let lonely: Vec<String> = replicas
        .iter()
        .filter(|(_, v)| {
            let text: String = redis::from_redis_value(v.clone()).unwrap_or_default();
            text.lines()
                .find_map(|l| l.strip_prefix("connected_slaves:"))
                .is_none_or(|n| n.trim() == "0")
        })
        .map(|(node, _)| node.clone())
        .collect();
    if lonely.is_empty() {
        Ok(Check::new(
            "cluster",
            Status::Pass,
            format!("{size} masters serve all 16384 slots; every master has a replica"),
        ))
    } else {
        Ok(Check::new(
            "cluster",
            Status::Warn,
            format!(
                "{size} masters serve all 16384 slots, but {} {} no replica: losing it loses its slots' queues",
                lonely.join(", "),
                if lonely.len() == 1 { "has" } else { "have" }
            ),
        )
        .fix("add a replica to each master (`redis-cli --cluster add-node NEW EXISTING --cluster-slave`)"))
    }
}

/// The sentinels: how many answer, whether they agree they can fail the master over
/// (`SENTINEL CKQUORUM`), and which master they name.
async fn sentinel_check(conn: &RedisConnection, master: &str) -> Check {
    let urls = conn.config().urls();
    let mut ok = 0;
    let mut problems = Vec::new();
    for url in &urls {
        let masked = pythia::redis::mask_url(url);
        let reply: Result<String, String> = async {
            let client = redis::Client::open(*url).map_err(|e| e.to_string())?;
            let mut c = tokio::time::timeout(
                Duration::from_secs(3),
                client.get_multiplexed_async_connection(),
            )
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
            redis::cmd("SENTINEL")
                .arg("CKQUORUM")
                .arg(master)
                .query_async(&mut c)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match reply {
            Ok(_) => ok += 1,
            Err(e) => problems.push(format!("{masked}: {}", conn.config().scrub(&e))),
        }
    }
    let total = urls.len();
    let now = conn.on_each_master(&redis::cmd("PING")).await;
    let at = match now {
        Ok(nodes) => nodes
            .into_iter()
            .map(|(n, _)| n)
            .collect::<Vec<_>>()
            .join(","),
        Err(e) => e.to_string(),
    };
    if ok * 2 > total {
        let status = if ok == total {
            Status::Pass
        } else {
            Status::Warn
        };
        let mut c = Check::new(
            "sentinel",
            status,
            format!("{ok} of {total} sentinels can fail over master {master:?} (now at {at})"),
        );
        if !problems.is_empty() {
            c.detail.push_str(&format!("; {}", problems.join("; ")));
            c = c.fix("bring the failing sentinels back: a majority must agree to fail over");
        }
        c
    } else {
        Check::new(
            "sentinel",
            Status::Fail,
            format!(
                "only {ok} of {total} sentinels can fail over master {master:?}: {}",
                problems.join("; ")
            ),
        )
        .fix("run at least three sentinels and check `SENTINEL CKQUORUM <master>` on each")
    }
}

/// `INFO` as a map of `field → value`.
async fn info(conn: &RedisConnection) -> Result<HashMap<String, String>, CliError> {
    let mut m = conn.manager();
    let text: String = redis::cmd("INFO")
        .query_async(&mut m)
        .await
        .map_err(|e| CliError::runtime(conn.error("INFO", e)))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

/// `CONFIG GET name`: the value, or the reason it cannot be read.
async fn config_get(conn: &RedisConnection, name: &str) -> Result<String, String> {
    let mut m = conn.manager();
    let reply: Result<Vec<String>, _> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(&mut m)
        .await;
    match reply {
        Ok(pair) if pair.len() >= 2 => Ok(pair[1].clone()),
        Ok(_) => Err(format!("CONFIG GET {name} returned nothing")),
        Err(e) => Err(format!("CONFIG GET {name} failed: {e}")),
    }
}

fn parse_version(v: &str) -> (u32, u32, u32) {
    let mut parts = v.split('.').map(|p| p.parse().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

fn version_check(version: &str, v: (u32, u32, u32)) -> Check {
    if v < (6, 2, 0) {
        Check::new(
            "version",
            Status::Fail,
            format!(
                "Redis {version}: Pythia needs 6.2 or later (BLMOVE, XAUTOCLAIM, RPOP with a count)"
            ),
        )
        .fix("upgrade Redis to 7.x")
    } else if v < (7, 0, 0) {
        Check::new(
            "version",
            Status::Warn,
            format!("Redis {version} works; 7 or later adds stream group lag, ACL DRYRUN and faster scripts"),
        )
        .fix("upgrade Redis to 7.x when you can")
    } else {
        Check::new("version", Status::Pass, format!("Redis {version}"))
    }
}

fn eviction_check(info: &HashMap<String, String>) -> Check {
    match info.get("maxmemory_policy").map(String::as_str) {
        Some("noeviction") => Check::new(
            "eviction",
            Status::Pass,
            "maxmemory-policy noeviction: a full Redis refuses writes instead of deleting queued messages",
        ),
        Some(policy) => Check::new(
            "eviction",
            Status::Fail,
            format!("maxmemory-policy is {policy}: under memory pressure Redis deletes keys, queued messages and in-flight records included"),
        )
        .fix("CONFIG SET maxmemory-policy noeviction (and in redis.conf: maxmemory-policy noeviction)"),
        None => Check::new(
            "eviction",
            Status::Warn,
            "INFO does not report maxmemory_policy: check it is noeviction",
        )
        .fix("CONFIG SET maxmemory-policy noeviction (and in redis.conf: maxmemory-policy noeviction)"),
    }
}

fn memory_check(info: &HashMap<String, String>) -> Option<Check> {
    let max: u64 = info.get("maxmemory")?.parse().ok()?;
    let used: u64 = info.get("used_memory")?.parse().ok()?;
    if max == 0 {
        return None;
    }
    let ratio = used as f64 / max as f64;
    let detail = format!(
        "{} used of maxmemory {} ({:.0}%)",
        super::human_bytes(used),
        super::human_bytes(max),
        ratio * 100.0
    );
    Some(if ratio > MEMORY_WARN_RATIO {
        Check::new("memory", Status::Warn, detail)
            .fix("raise maxmemory, drain the backlog, or purge dead letters (pythia dlq purge)")
    } else {
        Check::new("memory", Status::Pass, detail)
    })
}

async fn persistence_check(conn: &RedisConnection, info: &HashMap<String, String>) -> Check {
    let aof = info.get("aof_enabled").map(String::as_str) == Some("1");
    if aof {
        let fsync = config_get(conn, "appendfsync")
            .await
            .unwrap_or_else(|_| "?".into());
        return Check::new(
            "persistence",
            Status::Pass,
            format!("AOF on (appendfsync {fsync}): a restart keeps queued messages"),
        );
    }
    match config_get(conn, "save").await {
        Ok(save) if !save.trim().is_empty() => Check::new(
            "persistence",
            Status::Pass,
            format!("RDB snapshots (save {save}); a crash loses what was written since the last snapshot, AOF would lose at most a second"),
        ),
        Ok(_) => Check::new(
            "persistence",
            Status::Warn,
            "AOF and RDB snapshots are both off: a Redis restart loses every queued message, retry and dead letter",
        )
        .fix("CONFIG SET appendonly yes (and in redis.conf: appendonly yes)"),
        Err(e) => Check::new(
            "persistence",
            Status::Warn,
            format!("AOF is off, and the RDB save points cannot be read ({e})"),
        )
        .fix("CONFIG SET appendonly yes (and in redis.conf: appendonly yes)"),
    }
}

/// The commands Pythia runs (directly and inside its Lua scripts), with arguments naming the
/// queue's keys, as `ACL DRYRUN` takes them.
fn needed_commands(queue: &str, prefix: &str) -> Vec<Vec<String>> {
    let k = QueueKeys::new(prefix, queue);
    let (q, c) = (queue.to_owned(), "doctor-consumer".to_owned());
    let (inflight, staging, hb) = (k.in_flight(&c), k.staging(&c), k.heartbeat(&c));
    let (sched, dlq, cons) = (k.scheduled(), k.dead_letters(), k.consumers());
    let (registry, stat) = (
        pythia::redis::keys::registry(prefix),
        k.stat("processed", "2026-01-01"),
    );
    let v = |parts: &[&str]| parts.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    vec![
        v(&["PING"]),
        v(&["LPUSH", &q, "x"]),
        v(&["RPUSH", &q, "x"]),
        v(&["RPOP", &q, "10"]),
        v(&["LPOP", &q, "10"]),
        v(&["BRPOP", &q, "1"]),
        v(&["BLPOP", &q, "1"]),
        v(&["BLMOVE", &q, &staging, "RIGHT", "LEFT", "1"]),
        v(&["LMOVE", &staging, &q, "LEFT", "RIGHT"]),
        v(&["LLEN", &q]),
        v(&["LINDEX", &q, "0"]),
        v(&["LRANGE", &dlq, "0", "10"]),
        v(&["LREM", &dlq, "1", "x"]),
        v(&["LTRIM", &dlq, "0", "10"]),
        v(&["HSET", &inflight, "1", "x"]),
        v(&["HGET", &inflight, "1"]),
        v(&["HDEL", &inflight, "1"]),
        v(&["HLEN", &inflight]),
        v(&["HGETALL", &inflight]),
        v(&["SET", &hb, "1", "PX", "10000"]),
        v(&["GET", &hb]),
        v(&["EXISTS", &hb]),
        v(&["DEL", &hb]),
        v(&["SADD", &cons, &c]),
        v(&["SREM", &cons, &c]),
        v(&["SMEMBERS", &cons]),
        v(&["ZADD", &sched, "1", "x"]),
        v(&["ZCARD", &sched]),
        v(&["ZRANGEBYSCORE", &sched, "-inf", "+inf"]),
        v(&["ZREM", &sched, "x"]),
        v(&[
            "EVALSHA",
            "0000000000000000000000000000000000000000",
            "1",
            &q,
        ]),
        v(&["SCRIPT", "LOAD", "return 1"]),
        v(&["XADD", &q, "*", "body", "x"]),
        v(&[
            "XREADGROUP",
            "GROUP",
            "g",
            &c,
            "COUNT",
            "1",
            "STREAMS",
            &q,
            ">",
        ]),
        v(&["XACK", &q, "g", "0-1"]),
        v(&["XGROUP", "CREATE", &q, "g", "$", "MKSTREAM"]),
        v(&["XGROUP", "DELCONSUMER", &q, "g", &c]),
        v(&["XINFO", "GROUPS", &q]),
        v(&["XINFO", "CONSUMERS", &q, "g"]),
        v(&["XPENDING", &q, "g"]),
        v(&["XCLAIM", &q, "g", &c, "0", "0-1"]),
        v(&["XDEL", &q, "0-1"]),
        v(&["XTRIM", &q, "MINID", "~", "0"]),
        v(&["XRANGE", &q, "-", "+"]),
        v(&["XLEN", &q]),
        v(&["XADD", &dlq, "*", "body", "x"]),
        v(&["PUBLISH", &q, "x"]),
        v(&["SUBSCRIBE", &q]),
        v(&["PSUBSCRIBE", &format!("{q}*")]),
        // The queue registry, the daily counters and the pause flag (`pythia queues`).
        v(&["HSETNX", &registry, &q, "list"]),
        v(&["HSET", &registry, &q, "list"]),
        v(&["HGETALL", &registry]),
        v(&["INCRBY", &stat, "1"]),
        v(&["EXPIRE", &stat, "60"]),
        v(&["EXISTS", &k.paused()]),
    ]
}

async fn acl_check(conn: &RedisConnection, version: (u32, u32, u32), args: &DoctorArgs) -> Check {
    if version < (7, 0, 0) {
        return Check::new(
            "acl",
            Status::Warn,
            "cannot check the user's permissions: ACL DRYRUN needs Redis 7",
        )
        .fix("make sure the user may run the list, hash, set, sorted set, stream, pub/sub and scripting commands on the queue's keys");
    }
    let mut m = conn.manager();
    let user: String = match redis::cmd("ACL").arg("WHOAMI").query_async(&mut m).await {
        Ok(u) => u,
        Err(e) => {
            return Check::new(
                "acl",
                Status::Warn,
                format!("cannot tell the current user (ACL WHOAMI failed: {e})"),
            );
        }
    };
    let queue = args.queue.as_deref().unwrap_or("pythia-doctor");
    let commands = needed_commands(queue, &args.redis.key_prefix);
    let mut pipe = redis::pipe();
    for c in &commands {
        pipe.cmd("ACL").arg("DRYRUN").arg(&user).arg(c);
    }
    let replies: Vec<redis::Value> = match pipe.query_async(&mut m).await {
        Ok(r) => r,
        Err(e) => {
            return Check::new(
                "acl",
                Status::Warn,
                format!("cannot check user {user:?}'s permissions (ACL DRYRUN failed: {e})"),
            )
            .fix("run `pythia doctor` as a user allowed ACL DRYRUN, or check the permissions by hand");
        }
    };
    let denied: Vec<String> = commands
        .iter()
        .zip(replies)
        .filter_map(|(c, r)| match r {
            redis::Value::Okay => None,
            redis::Value::SimpleString(s) if s == "OK" => None,
            other => {
                let why = super::inspect::text(Some(&other));
                Some(format!("{} ({why})", c[..c.len().min(2)].join(" ")))
            }
        })
        .collect();
    let on = if args.queue.is_some() {
        format!("on queue {queue:?}'s keys")
    } else {
        format!("on the keys of a placeholder queue {queue:?} (give --queue to check yours)")
    };
    if denied.is_empty() {
        Check::new(
            "acl",
            Status::Pass,
            format!(
                "user {user:?} may run the {} commands Pythia needs {on}",
                commands.len()
            ),
        )
    } else {
        Check::new(
            "acl",
            Status::Fail,
            format!("user {user:?} is denied {} of the commands Pythia needs {on}: {}", denied.len(), denied.join("; ")),
        )
        .fix(format!(
            "ACL SETUSER {user} +@list +@hash +@set +@sortedset +@stream +@pubsub +@scripting +@string +@keyspace +@connection ~{queue} ~{}:{{{queue}}}:* ~{}:queues &{queue}",
            args.redis.key_prefix, args.redis.key_prefix
        ))
    }
}

async fn timeout_check(conn: &RedisConnection) -> Check {
    match config_get(conn, "timeout").await {
        Ok(t) if t.trim() == "0" => Check::new(
            "timeout",
            Status::Pass,
            "client idle timeout off (timeout 0)",
        ),
        Ok(t) => Check::new(
            "timeout",
            Status::Warn,
            format!("idle clients are disconnected after {t} s: a quiet worker's connections drop and reconnect (logged, retried)"),
        )
        .fix("CONFIG SET timeout 0 (and in redis.conf: timeout 0)"),
        Err(e) => Check::new("timeout", Status::Warn, format!("cannot read the idle timeout ({e})")),
    }
}

async fn latency_check(conn: &RedisConnection) -> Result<Check, CliError> {
    let mut m = conn.manager();
    let mut times = Vec::with_capacity(PINGS);
    for _ in 0..PINGS {
        let started = Instant::now();
        redis::cmd("PING")
            .query_async::<String>(&mut m)
            .await
            .map_err(|e| CliError::runtime(conn.error("PING", e)))?;
        times.push(started.elapsed());
    }
    times.sort();
    let median = times[PINGS / 2];
    let max = times[PINGS - 1];
    let detail = format!(
        "PING round trip: median {:.0} µs, max {:.0} µs over {PINGS}",
        median.as_secs_f64() * 1e6,
        max.as_secs_f64() * 1e6
    );
    Ok(if median > SLOW_PING {
        Check::new("latency", Status::Warn, detail).fix(
            "run workers close to Redis (same zone/host); raise --batch-size so each round trip carries more messages",
        )
    } else {
        Check::new("latency", Status::Pass, detail)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare() {
        assert_eq!(parse_version("7.0.15"), (7, 0, 15));
        assert_eq!(
            version_check("6.0.9", parse_version("6.0.9")).status,
            Status::Fail
        );
        assert_eq!(
            version_check("6.2.14", parse_version("6.2.14")).status,
            Status::Warn
        );
        assert_eq!(
            version_check("7.2.4", parse_version("7.2.4")).status,
            Status::Pass
        );
    }

    #[test]
    fn eviction_policies() {
        let info = |p: &str| HashMap::from([("maxmemory_policy".to_owned(), p.to_owned())]);
        assert_eq!(eviction_check(&info("noeviction")).status, Status::Pass);
        let c = eviction_check(&info("allkeys-lru"));
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.unwrap().contains("maxmemory-policy noeviction"));
    }
}

//! `pythia doctor`'s checks of one Redis server: version, eviction policy, memory, persistence,
//! client idle timeout and round-trip latency (the ACL check is `acl.rs`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pythia::redis::RedisConnection;

use super::DoctorArgs;
use super::report::{Check, Status};
use crate::error::CliError;

/// PING round trips timed.
const PINGS: usize = 20;
/// A median round trip above this is a warning.
const SLOW_PING: Duration = Duration::from_millis(5);
/// Used memory above this share of `maxmemory` is a warning.
const MEMORY_WARN_RATIO: f64 = 0.9;

/// The checks of one server: version, eviction policy, memory, persistence, ACL, timeouts,
/// latency. Returns the server's version too.
pub(super) async fn server_checks(
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
    checks.push(super::acl::acl_check(conn, parsed, args).await);
    checks.push(timeout_check(conn).await);
    checks.push(latency_check(conn).await?);
    Ok((version, checks))
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
        crate::commands::human_bytes(used),
        crate::commands::human_bytes(max),
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

//! `pythia doctor`'s checks of the deployment: a Redis Cluster's slots and replicas, the
//! Sentinels' quorum.

use std::time::Duration;

use pythia::redis::RedisConnection;

use super::report::{Check, Status};
use crate::error::CliError;

/// `url` (a seed node's URL, with its credentials and options) pointed at `node` (`host:port`).
pub(super) fn node_url(url: &str, node: &str) -> String {
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
pub(super) async fn cluster_check(conn: &RedisConnection) -> Result<Check, CliError> {
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
pub(super) async fn sentinel_check(conn: &RedisConnection, master: &str) -> Check {
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

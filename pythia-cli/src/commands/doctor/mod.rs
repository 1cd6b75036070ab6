//! `pythia doctor`: is this Redis fit to hold queues? Each check prints PASS, WARN or FAIL with
//! the fix; the exit code is 1 when any check FAILed. The checks: the deployment
//! (`topology.rs`), each server (`server.rs`, `acl.rs`), and with `--queue` the queue itself
//! from the library's report (`queue.rs`); one typed result (`report.rs`) for text and JSON.

mod acl;
mod queue;
mod report;
mod server;
mod topology;

use clap::Args;
use pythia::redis::Topology;

use self::report::DoctorReport;
use crate::cli::RedisArgs;
use crate::error::CliError;

#[derive(Debug, Clone, Args)]
#[command(
    after_long_help = "Each check prints PASS, WARN or FAIL with the fix. Exit 0 when \
    nothing FAILed (warnings allowed), 1 when a check FAILed, 69 when Redis cannot be reached.\n\
    JSON fields (--json): redis_url (password masked), server_version, checks[] {check, status \
    (pass, warn, fail), detail, fix (null when none)}, passed, warnings, failures, queue (with \
    --queue, when its report could be read: the queue's report, as one entry of `pythia queues \
    --json`)."
)]
pub(crate) struct DoctorArgs {
    #[command(flatten)]
    pub(crate) redis: RedisArgs,

    /// Check this queue: the ACL key permissions on its keys (default: a placeholder queue
    /// `pythia-doctor`), and the queue itself: known, paused, dead letters, consumers alive
    /// or without a heartbeat while holding in-flight messages.
    #[arg(long, short = 'q', env = "PYTHIA_QUEUE")]
    pub(crate) queue: Option<String>,

    /// Print one JSON document instead of lines.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn doctor(args: DoctorArgs) -> Result<(), CliError> {
    let conn = args.redis.connect().await?;
    let (version, mut checks) = match args.redis.topology.topology() {
        Topology::Cluster => {
            // The topology first, then every server check on each master, naming the node.
            let mut checks = vec![topology::cluster_check(&conn).await?];
            let mut version = String::new();
            for (node, _) in conn
                .on_each_master(&redis::cmd("PING"))
                .await
                .map_err(CliError::runtime)?
            {
                let url = topology::node_url(conn.config().urls()[0], &node);
                let node_conn = super::connect_url(&url, &args.redis.key_prefix).await?;
                let (v, node_checks) = server::server_checks(&node_conn, &args).await?;
                version = v;
                checks.extend(node_checks.into_iter().map(|mut c| {
                    c.detail = format!("{node}: {}", c.detail);
                    c
                }));
            }
            (version, checks)
        }
        Topology::Sentinel { master } => {
            let mut checks = vec![topology::sentinel_check(&conn, &master).await];
            let (version, server) = server::server_checks(&conn, &args).await?;
            checks.extend(server);
            (version, checks)
        }
        _ => server::server_checks(&conn, &args).await?,
    };
    // The queue last: the server's checks say why its report may be unreadable.
    let queue = match &args.queue {
        Some(q) => {
            let (report, queue_checks) = queue::queue_checks(&conn, q).await;
            checks.extend(queue_checks);
            report
        }
        None => None,
    };

    let report = DoctorReport::new(conn.config().masked_url(), version, checks, queue);
    if args.json {
        crate::output::outln!("{}", report.to_json())?;
    } else {
        crate::output::out!("{}", report.to_text())?;
    }
    report.verdict()
}

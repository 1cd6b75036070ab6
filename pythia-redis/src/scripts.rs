//! The Lua scripts, loaded once from `lua/*.lua`. Every key a script touches is passed in KEYS.
//!
//! Every script that moves a message starts with `lua/lib/checks.lua` (`checked!`): it checks
//! key types and sizes before its first write, adds before it removes, and takes due times from
//! the server's clock (STYLE rule 13: a message is never nowhere).

use std::sync::LazyLock;

use redis::Script;

/// A script from `lua/<file>` with the shared checks of `lua/lib/checks.lua` in front.
macro_rules! checked {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("../lua/lib/checks.lua"),
                include_str!(concat!("../lua/", $file))
            ))
        })
    };
}

/// Promote due retries from the schedule to the queue.
pub(crate) static PROMOTE_DUE: LazyLock<Script> = checked!("promote_due.lua");
/// Schedule retries and dead-letter messages of the at-most-once list broker.
pub(crate) static LIST_SETTLE: LazyLock<Script> = checked!("list_settle.lua");
/// Move a batch into a consumer's in-flight hash.
pub(crate) static RELIABLE_FETCH: LazyLock<Script> = checked!("reliable_fetch.lua");
/// Ack / retry / dead-letter deliveries of one consumer, idempotently.
pub(crate) static RELIABLE_SETTLE: LazyLock<Script> = checked!("reliable_settle.lua");
/// Hand deliveries back to the front of the queue.
pub(crate) static RELIABLE_RELEASE: LazyLock<Script> = checked!("reliable_release.lua");
/// Return a dead consumer's work to the queue.
pub(crate) static RELIABLE_REAP: LazyLock<Script> = checked!("reliable_reap.lua");
/// Ack / retry / dead-letter / hand back entries of one stream consumer group, idempotently.
pub(crate) static STREAM_SETTLE: LazyLock<Script> = checked!("stream_settle.lua");
/// Promote due stream retries from the schedule back onto the stream.
pub(crate) static STREAM_PROMOTE: LazyLock<Script> = checked!("stream_promote.lua");
/// Claim a dead stream consumer's pending entries, and forget it once empty.
pub(crate) static STREAM_CLAIM: LazyLock<Script> = checked!("stream_claim.lua");
/// Count (and clear) the entries trimmed from a stream before a consumer group was delivered
/// them.
pub(crate) static STREAM_TRIMMED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/stream_trimmed.lua")));
/// Trim the entries every consumer group of a stream is done with.
pub(crate) static STREAM_TRIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/stream_trim.lua")));
/// Whether a consumer group has anything pending, undelivered or scheduled.
pub(crate) static STREAM_DRAINED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/stream_drained.lua")));
/// Remove a consumer from its group when it has nothing pending.
pub(crate) static STREAM_LEAVE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/stream_leave.lua")));
/// A snapshot of one stream consumer group, for gauges.
pub(crate) static STREAM_STATS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/stream_stats.lua")));
/// Move dead letters back onto their queue, atomically per item.
pub(crate) static DEAD_LETTERS_REPLAY: LazyLock<Script> = checked!("dead_letters_replay.lua");
/// Schedule delayed messages by id (payload in a hash, `delayed:<id>` in the schedule).
pub(crate) static DELAYED_SCHEDULE: LazyLock<Script> = checked!("delayed_schedule.lua");
/// Cancel a delayed message by id.
pub(crate) static DELAYED_CANCEL: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/delayed_cancel.lua")));
/// Take a lock for an owner token, or refresh it if the token holds it already.
pub(crate) static LOCK_ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/lock_acquire.lua")));
/// Extend a lock's TTL, only for the owner.
pub(crate) static LOCK_EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/lock_extend.lua")));
/// Release a lock, only by the owner (compare-and-delete).
pub(crate) static LOCK_RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/lock_release.lua")));
/// Fire one slot of a periodic job at most once (compare-and-set of the last slot + enqueue).
pub(crate) static PERIODIC_FIRE: LazyLock<Script> = checked!("periodic_fire.lua");
/// Record messages as queued unless they already have a status record.
pub(crate) static JOB_STATUS_QUEUED: LazyLock<Script> = checked!("job_status_queued.lua");
/// Write one change of a job's record: status fields, state index, timeline event, checkpoint.
pub(crate) static JOB_WRITE: LazyLock<Script> = checked!("job_write.lua");
/// Move a checkpoint (an XREAD reader's, a job's) forward, never back.
pub(crate) static CHECKPOINT_SAVE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/checkpoint_save.lua")));
/// Publish payloads to a sharded pub/sub channel on its slot's master (never a replica).
pub(crate) static SPUBLISH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/spublish.lua")));
/// Poll a queue's gate (paused? throttled for how long?), optionally extending the throttle.
pub(crate) static GATE_POLL: LazyLock<Script> = checked!("gate_poll.lua");
/// Grant a batch of a queue's rate-limit tokens (GCRA on the server's clock).
pub(crate) static RATE_LIMIT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/rate_limit.lua")));
/// Empty a queue (and optionally its schedule), counting what went.
pub(crate) static QUEUE_EMPTY: LazyLock<Script> = checked!("queue_empty.lua");
/// Sync one replica's circuit breaker with the state every replica shares.
pub(crate) static BREAKER_SYNC: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/breaker_sync.lua")));

/// Every script with its `lua/` file name.
fn all() -> [(&'static LazyLock<Script>, &'static str); 29] {
    [
        (&PROMOTE_DUE, "promote_due"),
        (&LIST_SETTLE, "list_settle"),
        (&RELIABLE_FETCH, "reliable_fetch"),
        (&RELIABLE_SETTLE, "reliable_settle"),
        (&RELIABLE_RELEASE, "reliable_release"),
        (&RELIABLE_REAP, "reliable_reap"),
        (&STREAM_SETTLE, "stream_settle"),
        (&STREAM_PROMOTE, "stream_promote"),
        (&STREAM_CLAIM, "stream_claim"),
        (&STREAM_TRIMMED, "stream_trimmed"),
        (&STREAM_TRIM, "stream_trim"),
        (&STREAM_DRAINED, "stream_drained"),
        (&STREAM_LEAVE, "stream_leave"),
        (&STREAM_STATS, "stream_stats"),
        (&DEAD_LETTERS_REPLAY, "dead_letters_replay"),
        (&DELAYED_SCHEDULE, "delayed_schedule"),
        (&DELAYED_CANCEL, "delayed_cancel"),
        (&LOCK_ACQUIRE, "lock_acquire"),
        (&LOCK_EXTEND, "lock_extend"),
        (&LOCK_RELEASE, "lock_release"),
        (&PERIODIC_FIRE, "periodic_fire"),
        (&JOB_STATUS_QUEUED, "job_status_queued"),
        (&JOB_WRITE, "job_write"),
        (&CHECKPOINT_SAVE, "checkpoint_save"),
        (&SPUBLISH, "spublish"),
        (&GATE_POLL, "gate_poll"),
        (&RATE_LIMIT, "rate_limit"),
        (&QUEUE_EMPTY, "queue_empty"),
        (&BREAKER_SYNC, "breaker_sync"),
    ]
}

/// The `lua/` file names of every script: the `script` label values of
/// [`REDIS_SCRIPT_ERRORS_TOTAL`](crate::client_metrics::REDIS_SCRIPT_ERRORS_TOTAL).
pub(crate) fn names() -> impl Iterator<Item = &'static str> {
    all().into_iter().map(|(_, name)| name)
}

/// The `lua/` file name of `script` (looked up on the error path only).
pub(crate) fn name_of(script: &Script) -> &'static str {
    all()
        .iter()
        .find(|(s, _)| s.get_hash() == script.get_hash())
        .map_or("unknown", |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lua_script_is_listed_under_its_file_name() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lua");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".lua").map(str::to_owned)
            })
            .collect();
        files.sort();
        let mut listed: Vec<String> = names().map(str::to_owned).collect();
        listed.sort();
        assert_eq!(listed, files, "scripts::all() and lua/*.lua differ");
        for (script, name) in all() {
            assert_eq!(name_of(script), name);
        }
    }
}

//! [`JobStatusStore`]: reads a queue's job records (status, timeline, jobs by state) and
//! records jobs as queued for producers.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use pythia_core::message::unix_millis;
use pythia_core::{BrokerError, Message};

use super::record::{JobEvent, JobState, JobStatus};
use super::writer::JobWriter;
use crate::call::Call;
use crate::connection::RedisConnection;
use crate::connection::transient_retry::retry_transient;
use crate::keys::QueueKeys;
use crate::scripts::JOB_STATUS_QUEUED;

/// Reads and writes job records of one queue: the status hash `<prefix>:{queue}:job:<id>`, the
/// timeline `…:job-events:<id>` and the recent jobs by state `…:jobs:<state>`, each expiring
/// [`DEFAULT_TTL`](Self::DEFAULT_TTL) after its last change.
///
/// Producers call [`record_queued`](Self::record_queued) (before pushing: a record that
/// exists is never overwritten by `queued`); a runtime with
/// [`with_job_status`](crate::JobTrackingExt::with_job_status) writes `running`, `succeeded`,
/// `failed` and `dead` and the handler's progress and events; anyone reads with
/// [`get`](Self::get), [`events`](Self::events) and [`recent`](Self::recent), or waits with
/// [`wait_finished`](Self::wait_finished). The `pythia job <id> --queue <queue>` command prints
/// a record and its timeline, `pythia jobs --queue <queue> --state <state>` the recent jobs.
///
/// ```no_run
/// use std::time::Duration;
/// use pythia_core::Message;
/// use pythia_redis::{JobState, JobStatusStore, ListProducer, RedisConfig, RedisConnection};
/// # async fn f() -> Result<(), pythia_core::BrokerError> {
/// let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
/// let status = JobStatusStore::new(&conn, "thumbnails");
/// let msg = Message::new("photo-7.png");
/// status.record_queued(std::slice::from_ref(&msg)).await?;
/// ListProducer::new(&conn, "thumbnails").push(&msg).await?;
///
/// if let Some(job) = status.wait_finished(msg.id(), Duration::from_secs(30)).await? {
///     if job.state == JobState::Succeeded {
///         println!("done after {} attempts: {:?}", job.attempts, job.result);
///     } else {
///         println!("dead: {:?}", job.last_error);
///     }
/// }
/// for event in status.events(msg.id(), 0, 100).await? {
///     println!("{:?} {} {:?}", event.at, event.kind, event.fields);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct JobStatusStore {
    writer: JobWriter,
    queue: String,
}

impl JobStatusStore {
    /// Default lifetime of a record after its last change: 24 h.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

    /// The records of `queue`, kept for [`DEFAULT_TTL`](Self::DEFAULT_TTL).
    pub fn new(conn: &RedisConnection, queue: &str) -> Self {
        Self {
            writer: JobWriter::new(conn, Self::DEFAULT_TTL),
            queue: queue.to_owned(),
        }
    }

    /// Lifetime of a record after its last change (at least 1 s).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.writer.ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// The queue.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        what: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, BrokerError> {
        let w = &self.writer;
        retry_transient(what, || async move {
            let mut m = w.manager.clone();
            cmd.query_async(&mut m)
                .await
                .map_err(|e| w.conn.error(what, e))
        })
        .await
    }

    /// The status of message `id`, if it has a record (recorded and not expired).
    pub async fn get(&self, id: &str) -> Result<Option<JobStatus>, BrokerError> {
        let key = self.writer.keys(&self.queue).job_status(id);
        let h: HashMap<String, Vec<u8>> = self
            .query("read a job status", redis::cmd("HGETALL").arg(&key))
            .await?;
        JobStatus::from_hash(h)
    }

    /// The timeline of message `id`, oldest first: at most `limit` events from the
    /// `offset`-th. Lines that are not events (written by something else) are skipped.
    pub async fn events(
        &self,
        id: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<JobEvent>, BrokerError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.writer.keys(&self.queue).job_events(id);
        let lines: Vec<Vec<u8>> = self
            .query(
                "read a job's events",
                redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(offset)
                    .arg(offset + limit - 1),
            )
            .await?;
        Ok(lines.iter().filter_map(|l| JobEvent::parse(l)).collect())
    }

    /// The ids of the jobs that entered `state` most recently (within the records' TTL, at
    /// most [`JobTracking::DEFAULT_MAX_PER_STATE`](crate::JobTracking::DEFAULT_MAX_PER_STATE)
    /// kept by default), newest first: at most `limit` from the `offset`-th, with the time each
    /// entered it.
    pub async fn ids_in_state(
        &self,
        state: JobState,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<(String, SystemTime)>, BrokerError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.writer.keys(&self.queue).jobs_in_state(state.as_str());
        let floor =
            unix_millis(SystemTime::now()).saturating_sub(self.writer.ttl.as_millis() as u64);
        let raw: Vec<(String, f64)> = self
            .query(
                "list jobs by state",
                redis::cmd("ZREVRANGEBYSCORE")
                    .arg(&key)
                    .arg("+inf")
                    .arg(floor)
                    .arg("WITHSCORES")
                    .arg("LIMIT")
                    .arg(offset)
                    .arg(limit),
            )
            .await?;
        Ok(raw
            .into_iter()
            .map(|(id, ms)| {
                (
                    id,
                    SystemTime::UNIX_EPOCH + Duration::from_millis(ms as u64),
                )
            })
            .collect())
    }

    /// The records of the jobs that entered `state` most recently, newest first (see
    /// [`ids_in_state`](Self::ids_in_state)); a job whose record expired or moved on meanwhile
    /// is left out.
    pub async fn recent(
        &self,
        state: JobState,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<JobStatus>, BrokerError> {
        let ids = self.ids_in_state(state, offset, limit).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.writer.keys(&self.queue);
        let w = &self.writer;
        let call = &read_all_call(&keys, ids.iter().map(|(id, _)| id.as_str()));
        let hashes: Vec<HashMap<String, Vec<u8>>> =
            retry_transient("read job statuses", || async move {
                let mut m = w.manager.clone();
                call.query(&mut m)
                    .await
                    .map_err(|e| w.conn.error("read job statuses", e))
            })
            .await?;
        let mut out = Vec::with_capacity(hashes.len());
        for h in hashes {
            if let Some(s) = JobStatus::from_hash(h)?
                && s.state == state
            {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Polls [`get`](Self::get) (every 20 ms, backing off to 500 ms) until the job is
    /// succeeded or dead, or `timeout` passes; returns the last record seen.
    pub async fn wait_finished(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<JobStatus>, BrokerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(20);
        loop {
            let status = self.get(id).await?;
            let now = tokio::time::Instant::now();
            if status.as_ref().is_some_and(|s| s.state.is_finished()) || now >= deadline {
                return Ok(status);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Records messages as queued (status, a `queued` event, the `queued` index), in one script
    /// call (at most 1,000 at a time), each only if it has no record yet. Returns how many
    /// records were created.
    pub async fn record_queued(&self, msgs: &[Message]) -> Result<u64, BrokerError> {
        let now = unix_millis(SystemTime::now());
        let ttl = self.writer.ttl.as_millis() as u64;
        let keys = self.writer.keys(&self.queue);
        let mut created = 0;
        for chunk in msgs.chunks(1000) {
            let w = &self.writer;
            let call = &queued_call(&keys, ttl, now, w.max_per_state, chunk);
            created += retry_transient("record queued jobs", || async move {
                let mut m = w.manager.clone();
                call.query::<u64>(&mut m)
                    .await
                    .map_err(|e| w.conn.error("record queued jobs", e))
            })
            .await?;
        }
        Ok(created)
    }

    /// Deletes the record of `id` (status, timeline, checkpoint, index entries); `true` if it
    /// had a status record.
    pub async fn delete(&self, id: &str) -> Result<bool, BrokerError> {
        let keys = self.writer.keys(&self.queue);
        let mut m = self.writer.manager.clone();
        let (n,): (u64,) = delete_call(&keys, id)
            .query(&mut m)
            .await
            .map_err(|e| self.writer.conn.error("delete a job status", e))?;
        Ok(n > 0)
    }
}

/// `job_status_queued.lua` on the queue `keys` name: `msgs` recorded as queued at `now` (ms),
/// each only if it has no record yet, kept for `ttl_ms`, the `queued` index capped at
/// `max_per_state`. Replies how many records it created.
fn queued_call(
    keys: &QueueKeys,
    ttl_ms: u64,
    now: u64,
    max_per_state: usize,
    msgs: &[Message],
) -> Call {
    let mut all = Vec::with_capacity(1 + 2 * msgs.len());
    all.push(keys.jobs_in_state(JobState::Queued.as_str()));
    for msg in msgs {
        all.push(keys.job_status(msg.id()));
        all.push(keys.job_events(msg.id()));
    }
    let mut call = Call::script(&JOB_STATUS_QUEUED, &all);
    call.arg(ttl_ms)
        .arg(now)
        .arg(keys.queue())
        .arg(max_per_state);
    for msg in msgs {
        call.arg(msg.id());
    }
    call
}

/// The status records of the jobs `ids`, one `HGETALL` each, pipelined (empty for a job
/// without one).
fn read_all_call<'a>(keys: &QueueKeys, ids: impl Iterator<Item = &'a str>) -> Call {
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.cmd("HGETALL").arg(keys.job_status(id));
    }
    Call::pipeline(pipe)
}

/// The record of job `id` deleted in one pipeline: status (whose `DEL` alone replies, 1 if it
/// was there), timeline, checkpoint and its entry in every state's index.
fn delete_call(keys: &QueueKeys, id: &str) -> Call {
    let mut pipe = redis::pipe();
    pipe.cmd("DEL").arg(keys.job_status(id));
    pipe.cmd("DEL")
        .arg(keys.job_events(id))
        .arg(keys.job_checkpoint(id))
        .ignore();
    for s in JobState::ALL {
        pipe.cmd("ZREM")
            .arg(keys.jobs_in_state(s.as_str()))
            .arg(id)
            .ignore();
    }
    Call::pipeline(pipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_records_take_two_keys_and_one_id_per_message() {
        let keys = QueueKeys::new("pythia", "q");
        let msgs = [
            Message::new("a").with_id("j1"),
            Message::new("b").with_id("j2"),
        ];
        let args = queued_call(&keys, 60_000, 7, 100, &msgs).text();
        assert_eq!(args[..2], ["EVALSHA", JOB_STATUS_QUEUED.get_hash()]);
        assert_eq!(
            args[2..],
            [
                "5",
                "pythia:{q}:jobs:queued",
                "pythia:{q}:job:j1",
                "pythia:{q}:job-events:j1",
                "pythia:{q}:job:j2",
                "pythia:{q}:job-events:j2",
                "60000",
                "7",
                "q",
                "100",
                "j1",
                "j2"
            ]
        );
    }

    #[test]
    fn records_are_read_with_one_hgetall_each() {
        let keys = QueueKeys::new("pythia", "q");
        assert_eq!(
            read_all_call(&keys, ["j1", "j2"].into_iter()).commands_text(),
            [
                ["HGETALL", "pythia:{q}:job:j1"],
                ["HGETALL", "pythia:{q}:job:j2"]
            ]
        );
    }

    #[test]
    fn a_delete_removes_every_key_and_index_entry_of_the_job() {
        let cmds = delete_call(&QueueKeys::new("pythia", "q"), "j1").commands_text();
        assert_eq!(cmds[0], ["DEL", "pythia:{q}:job:j1"]);
        assert_eq!(
            cmds[1],
            [
                "DEL",
                "pythia:{q}:job-events:j1",
                "pythia:{q}:job-checkpoint:j1"
            ]
        );
        let zrems: Vec<String> = cmds[2..].iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            zrems,
            [
                "ZREM pythia:{q}:jobs:queued j1",
                "ZREM pythia:{q}:jobs:running j1",
                "ZREM pythia:{q}:jobs:succeeded j1",
                "ZREM pythia:{q}:jobs:failed j1",
                "ZREM pythia:{q}:jobs:dead j1"
            ]
        );
    }
}

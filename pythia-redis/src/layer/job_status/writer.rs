//! [`JobWriter`]: how a change of a job's record becomes one call of the `job_write` script
//! (built without I/O, so that tests check its exact arguments), and the sending of a batch of
//! them in one pipeline.

use std::time::{Duration, SystemTime};

use pythia_core::BrokerError;
use pythia_core::message::unix_millis;

use super::record::JobState;
use crate::call::Call;
use crate::connection::transient_retry::retry_transient;
use crate::connection::{RedisConnection, SharedConnection};
use crate::keys::QueueKeys;
use crate::scripts::JOB_WRITE;

/// One change of a job's record.
#[derive(Debug)]
pub(crate) struct Change<'a> {
    pub(crate) queue: &'a str,
    pub(crate) id: &'a str,
    /// The new state, if it changes.
    pub(crate) state: Option<JobState>,
    /// A line for its timeline.
    pub(crate) event: Option<String>,
    /// Whether its checkpoint goes (the message was acked or dead-lettered).
    pub(crate) delete_checkpoint: bool,
    /// Status fields removed.
    pub(crate) clear: &'static [&'static str],
    /// Status fields set.
    pub(crate) set: Vec<(&'static str, Vec<u8>)>,
}

/// Writes job records of any queue (a runtime sees one queue, but its messages name it).
#[derive(Debug, Clone)]
pub(crate) struct JobWriter {
    pub(crate) conn: RedisConnection,
    pub(crate) manager: SharedConnection,
    pub(crate) ttl: Duration,
    pub(crate) max_events: usize,
    pub(crate) max_per_state: usize,
}

impl JobWriter {
    pub(crate) fn new(conn: &RedisConnection, ttl: Duration) -> Self {
        Self {
            conn: conn.clone(),
            manager: conn.manager(),
            ttl,
            max_events: super::JobTracking::DEFAULT_MAX_EVENTS,
            max_per_state: super::JobTracking::DEFAULT_MAX_PER_STATE,
        }
    }

    pub(crate) fn keys(&self, queue: &str) -> QueueKeys {
        QueueKeys::new(self.conn.config().key_prefix(), queue)
    }

    /// The script call for `change`, at time `now`.
    pub(crate) fn call(&self, change: &Change<'_>, now: SystemTime) -> Call {
        self.limits()
            .call(self.conn.config().key_prefix(), change, now)
    }

    fn limits(&self) -> Limits {
        Limits {
            ttl: self.ttl,
            max_events: self.max_events,
            max_per_state: self.max_per_state,
        }
    }
}

/// The bounds a job write keeps to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) ttl: Duration,
    pub(crate) max_events: usize,
    pub(crate) max_per_state: usize,
}

impl Limits {
    /// The script call for `change` of a queue under `prefix`, at time `now`.
    pub(crate) fn call(&self, prefix: &str, change: &Change<'_>, now: SystemTime) -> Call {
        let keys = QueueKeys::new(prefix, change.queue);
        let mut all = vec![
            keys.job_status(change.id),
            keys.job_events(change.id),
            keys.job_checkpoint(change.id),
        ];
        all.extend(JobState::ALL.map(|s| keys.jobs_in_state(s.as_str())));
        let mut call = Call::script(&JOB_WRITE, &all);
        let Limits {
            ttl,
            max_events,
            max_per_state,
        } = *self;
        call.arg(change.state.map_or("", JobState::as_str))
            .arg(unix_millis(now))
            .arg(ttl.as_millis() as u64)
            .arg(max_events.max(1))
            .arg(max_per_state.max(1))
            .arg(change.event.as_deref().unwrap_or(""))
            .arg(if change.delete_checkpoint { "1" } else { "0" })
            .arg(change.id)
            .arg(change.clear.len())
            .arg(change.clear);
        for (k, v) in &change.set {
            call.arg(*k).arg(&v[..]);
        }
        call
    }
}

impl JobWriter {
    /// Sends `calls` in one pipeline, retrying transient errors. The writes are safe to
    /// repeat, but for a repeated timeline line.
    pub(crate) async fn send(&self, what: &str, calls: &[Call]) -> Result<(), BrokerError> {
        if calls.is_empty() {
            return Ok(());
        }
        retry_transient(what, || async move {
            let mut m = self.manager.clone();
            Call::query_all(calls, &mut m)
                .await
                .map_err(|e| self.conn.error(what, e))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_one_script_call_with_every_key_of_the_job() {
        let limits = Limits {
            ttl: Duration::from_secs(60),
            max_events: 1000,
            max_per_state: 10_000,
        };
        let change = Change {
            queue: "q",
            id: "j1",
            state: Some(JobState::Dead),
            event: Some("{}".into()),
            delete_checkpoint: true,
            clear: &["finished_at"],
            set: vec![("error", b"boom".to_vec())],
        };
        let call = limits.call(
            "pythia",
            &change,
            std::time::UNIX_EPOCH + Duration::from_millis(7),
        );
        let args = call.text();
        assert_eq!(args[0], "EVALSHA");
        assert_eq!(
            &args[2..11],
            [
                "8",
                "pythia:{q}:job:j1",
                "pythia:{q}:job-events:j1",
                "pythia:{q}:job-checkpoint:j1",
                "pythia:{q}:jobs:queued",
                "pythia:{q}:jobs:running",
                "pythia:{q}:jobs:succeeded",
                "pythia:{q}:jobs:failed",
                "pythia:{q}:jobs:dead",
            ]
        );
        assert_eq!(
            &args[11..],
            [
                "dead",
                "7",
                "60000",
                "1000",
                "10000",
                "{}",
                "1",
                "j1",
                "1",
                "finished_at",
                "error",
                "boom"
            ]
        );
    }
}

//! What a job's record holds: its [`JobState`], the [`JobStatus`] hash, its [`JobProgress`]
//! and the [`JobEvent`]s of its timeline, with their parsing from what Redis returns.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pythia_core::BrokerError;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobState {
    /// Enqueued by a producer that recorded it; not started yet.
    Queued,
    /// A worker is running it (attempt `attempts`).
    Running,
    /// The last attempt succeeded.
    Succeeded,
    /// The last attempt failed and the message will be retried.
    Failed,
    /// The message failed for good: rejected, or out of attempts; it is in the dead-letter
    /// queue.
    Dead,
}

impl JobState {
    /// Every state, in the order a job goes through them.
    pub const ALL: [JobState; 5] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Dead,
    ];

    /// `queued`, `running`, `succeeded`, `failed` or `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }

    /// Whether nothing more will happen to the job (succeeded or dead), barring a duplicate
    /// delivery.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Dead)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobState {
    type Err = BrokerError;
    fn from_str(s: &str) -> Result<Self, BrokerError> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| BrokerError::backend(format!("unknown job state {s:?}")))
    }
}

/// How far a running job is, as its handler reported it ([`JobHandle::progress`] or
/// [`JobHandle::progress_count`](crate::JobHandle::progress_count)).
///
/// [`JobHandle::progress`]: crate::JobHandle::progress
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobProgress {
    /// Percent done, 0 to 100 (shown `42%`).
    Percent(u8),
    /// Units done, of `total` when known (shown `3/10`, or `3`).
    Count {
        /// Units done.
        done: u64,
        /// Units in all, when known.
        total: Option<u64>,
    },
}

impl std::fmt::Display for JobProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Percent(p) => write!(f, "{p}%"),
            Self::Count {
                done,
                total: Some(t),
            } => write!(f, "{done}/{t}"),
            Self::Count { done, total: None } => write!(f, "{done}"),
        }
    }
}

impl std::str::FromStr for JobProgress {
    type Err = BrokerError;
    fn from_str(s: &str) -> Result<Self, BrokerError> {
        let bad = || BrokerError::backend(format!("job progress {s:?} is not N%, N/M or N"));
        if let Some(p) = s.strip_suffix('%') {
            return Ok(Self::Percent(p.parse::<u8>().map_err(|_| bad())?.min(100)));
        }
        let (done, total) = match s.split_once('/') {
            Some((d, t)) => (d, Some(t.parse().map_err(|_| bad())?)),
            None => (s, None),
        };
        Ok(Self::Count {
            done: done.parse().map_err(|_| bad())?,
            total,
        })
    }
}

/// One job's status record, as read by [`JobStatusStore::get`](crate::JobStatusStore::get).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobStatus {
    /// The message id.
    pub id: String,
    /// The queue (list or stream) it was consumed from.
    pub queue: String,
    /// Where it is.
    pub state: JobState,
    /// Attempts started so far (0 while queued).
    pub attempts: u32,
    /// When a producer recorded it as queued.
    pub queued_at: Option<SystemTime>,
    /// When the current or last attempt started.
    pub started_at: Option<SystemTime>,
    /// When the last attempt ended.
    pub finished_at: Option<SystemTime>,
    /// When the record last changed.
    pub updated_at: Option<SystemTime>,
    /// The last error, if an attempt failed.
    pub last_error: Option<String>,
    /// The result the handler recorded ([`JobHandle::set_result`](crate::JobHandle::set_result)),
    /// if any.
    pub result: Option<Bytes>,
    /// The last progress the handler reported, if any.
    pub progress: Option<JobProgress>,
}

impl JobStatus {
    /// The result decoded as JSON, if there is one.
    pub fn result_json<T: serde::de::DeserializeOwned>(&self) -> Option<serde_json::Result<T>> {
        self.result.as_ref().map(|r| serde_json::from_slice(r))
    }

    pub(crate) fn from_hash(mut h: HashMap<String, Vec<u8>>) -> Result<Option<Self>, BrokerError> {
        let Some(state) = h.remove("state") else {
            return Ok(None);
        };
        let text = |h: &mut HashMap<String, Vec<u8>>, k: &str| {
            h.remove(k)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        };
        let time = |h: &mut HashMap<String, Vec<u8>>, k: &str| {
            text(h, k).and_then(|v| v.parse::<u64>().ok()).map(millis)
        };
        Ok(Some(Self {
            state: String::from_utf8_lossy(&state).parse()?,
            id: text(&mut h, "id").unwrap_or_default(),
            queue: text(&mut h, "queue").unwrap_or_default(),
            attempts: text(&mut h, "attempts")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            queued_at: time(&mut h, "queued_at"),
            started_at: time(&mut h, "started_at"),
            finished_at: time(&mut h, "finished_at"),
            updated_at: time(&mut h, "updated_at"),
            last_error: text(&mut h, "error"),
            result: h.remove("result").map(Bytes::from),
            progress: text(&mut h, "progress").and_then(|p| p.parse().ok()),
        }))
    }
}

/// One line of a job's timeline, as read by
/// [`JobStatusStore::events`](crate::JobStatusStore::events).
///
/// The runtime writes `queued`, `started`, `retried` (with `error` and `delay_ms`),
/// `succeeded`, `failed` (out of attempts or rejected: the job is dead) and `dead` (with
/// `reason`); [`JobHandle::progress`](crate::JobHandle::progress) writes `progress` (with
/// `progress`); a handler's own events ([`JobHandle::event`](crate::JobHandle::event)) carry
/// the kind it gave and its `data`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobEvent {
    /// When it happened.
    pub at: SystemTime,
    /// What happened: `queued`, `started`, `progress`, `retried`, `succeeded`, `dead`, or the
    /// handler's own kind.
    pub kind: String,
    /// The attempt it happened in (0 while queued).
    pub attempt: u32,
    /// The event's other fields (an object; empty when there are none).
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl JobEvent {
    /// The JSON line stored for an event (`at` in ms since the epoch).
    pub(crate) fn line(
        at: SystemTime,
        kind: &str,
        attempt: u32,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> String {
        let mut o = serde_json::Map::with_capacity(fields.len() + 3);
        o.insert("at".into(), pythia_core::message::unix_millis(at).into());
        o.insert("kind".into(), kind.into());
        o.insert("attempt".into(), attempt.into());
        o.extend(fields);
        serde_json::Value::Object(o).to_string()
    }

    pub(crate) fn parse(line: &[u8]) -> Option<Self> {
        let serde_json::Value::Object(mut o) = serde_json::from_slice(line).ok()? else {
            return None;
        };
        let at = millis(o.remove("at")?.as_u64()?);
        let kind = o.remove("kind")?.as_str()?.to_owned();
        let attempt = o
            .remove("attempt")
            .and_then(|a| a.as_u64())
            .unwrap_or(0)
            .try_into()
            .unwrap_or(u32::MAX);
        Some(Self {
            at,
            kind,
            attempt,
            fields: o,
        })
    }
}

fn millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_records_parse() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>().unwrap(), s);
        }
        assert!("nope".parse::<JobState>().is_err());
        let h: HashMap<String, Vec<u8>> = [
            ("id", "m1"),
            ("queue", "q"),
            ("state", "failed"),
            ("attempts", "2"),
            ("started_at", "1000"),
            ("error", "boom"),
            ("progress", "3/10"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
        .collect();
        let s = JobStatus::from_hash(h).unwrap().unwrap();
        assert_eq!(s.state, JobState::Failed);
        assert_eq!(s.attempts, 2);
        assert_eq!(s.started_at, Some(UNIX_EPOCH + Duration::from_secs(1)));
        assert_eq!(s.last_error.as_deref(), Some("boom"));
        assert_eq!(s.result, None);
        assert_eq!(
            s.progress,
            Some(JobProgress::Count {
                done: 3,
                total: Some(10)
            })
        );
        assert_eq!(JobStatus::from_hash(HashMap::new()).unwrap(), None);
    }

    #[test]
    fn progress_and_events_round_trip() {
        for p in [
            JobProgress::Percent(42),
            JobProgress::Count {
                done: 3,
                total: Some(10),
            },
            JobProgress::Count {
                done: 7,
                total: None,
            },
        ] {
            assert_eq!(p.to_string().parse::<JobProgress>().unwrap(), p);
        }
        assert!("x%".parse::<JobProgress>().is_err());
        let mut fields = serde_json::Map::new();
        fields.insert("bytes".into(), 12.into());
        let line = JobEvent::line(millis(5), "downloaded", 2, fields.clone());
        assert_eq!(
            line,
            r#"{"at":5,"attempt":2,"bytes":12,"kind":"downloaded"}"#
        );
        let e = JobEvent::parse(line.as_bytes()).unwrap();
        assert_eq!(
            (e.at, e.kind.as_str(), e.attempt),
            (millis(5), "downloaded", 2)
        );
        assert_eq!(e.fields, fields);
        assert_eq!(JobEvent::parse(b"not json"), None);
    }
}

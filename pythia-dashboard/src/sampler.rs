//! The dashboard's memory: which queues exist, their latest `pythia inspect` report, and a
//! window of samples for the charts and rates.
//!
//! Rates are computed here from samples of what Redis holds, and named for what they are:
//!
//! * **processed / failed** — how fast the queue's daily counters (kept by the workers, see
//!   `pythia_redis::queues::counters`) grew per second over the last minute: acknowledged
//!   and dead-lettered messages. Workers flush their counts every 2 s, so the rate moves in
//!   steps; a worker run with `--no-counters` adds nothing.
//! * **net drain** — how fast the backlog (depth + in flight + scheduled retries) shrank per
//!   second over the last minute; negative when it grows. Producers adding while workers drain
//!   cancel out: it is not the processing rate (each worker's `/metrics` has that).
//! * **dead-lettered** — how fast the dead-letter queue grew per second over the last minute
//!   (replays and purges, which shrink it, are not subtracted).
//!
//! Queues are those of the registry (`<prefix>:queues`, written by every producer and worker)
//! and those found by `SCAN <prefix>:{*}:*`, grouped by hash tag: a tag with a retry schedule,
//! dead letters, consumers, in-flight, staging, heartbeat, pause flag, counter, periodic-job or
//! checkpoint key is a queue (a lock, idempotency record or job status alone is not), and so is
//! any name given with `--queue` or opened in the browser. A queue stays on the list while the process
//! runs, even once its keys are gone (a drained list is an empty list).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use pythia_redis::RedisConnection;
use pythia_redis::queues::inspect::QueueInspection;
use pythia_redis::queues::{discovered_queues, registered_queues};

use crate::documents::{CircuitBreakers, History, Overview, row, series};

use pythia_redis::ListSide;
use pythia_redis::queues::inspect::{InspectError, InspectOptions, inspect_queue};

/// How often the key space is scanned for new queues.
const DISCOVER_EVERY: Duration = Duration::from_secs(10);
/// The span the rates are computed over.
pub(super) const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Queues sampled at once.
const PARALLEL: usize = 8;
/// Most queues tracked: beyond it, new names are ignored (and the overview says so).
pub(super) const MAX_QUEUES: usize = 500;
/// Most samples kept per queue, whatever `--history` says (5.5 h at 2 s; 400 KiB a queue).
const MAX_SAMPLES: usize = 10_000;
/// Most keys read by one discovery `SCAN` of every master (job-status records are keys too).
const SCAN_LIMIT: usize = 1_000_000;

/// What one sample records of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sample {
    /// When, in ms since the Unix epoch (one value per sampling round, shared by all queues).
    pub(super) t_ms: u64,
    /// List depth; for a stream the lag summed over its groups (its length without groups).
    pub(super) depth: u64,
    /// Messages held by consumers: list in-flight, stream pending entries.
    pub(super) in_flight: u64,
    /// Retries waiting for their time.
    pub(super) scheduled: u64,
    /// Dead letters.
    pub(super) dead_letters: u64,
    /// Today's processed count (the workers' daily counter).
    pub(super) processed: u64,
    /// Today's failed (dead-lettered) count.
    pub(super) failed: u64,
}

impl Sample {
    fn backlog(&self) -> u64 {
        self.depth + self.in_flight + self.scheduled
    }

    /// The sample an inspection describes (a stream's depth and in-flight summed over its
    /// groups, as `QueueInspection::depth` counts them).
    fn from_report(t_ms: u64, r: &QueueInspection) -> Self {
        let today = r.today().copied().unwrap_or_default();
        Self {
            t_ms,
            depth: r.depth(),
            in_flight: r.in_flight(),
            scheduled: r.scheduled(),
            dead_letters: r.dead_letters(),
            processed: today.processed,
            failed: today.failed,
        }
    }
}

/// How fast a daily counter grew per second over the last [`RATE_WINDOW`] of `samples`
/// (`None` with fewer than two samples). A counter that went down (a new day) adds nothing.
pub(super) fn counter_rate(samples: &VecDeque<Sample>, f: fn(&Sample) -> u64) -> Option<f64> {
    let last = samples.back()?;
    let from = last.t_ms.saturating_sub(RATE_WINDOW.as_millis() as u64);
    let window: Vec<&Sample> = samples.iter().filter(|s| s.t_ms >= from).collect();
    let secs = (last.t_ms - window[0].t_ms) as f64 / 1000.0;
    if window.len() < 2 || secs <= 0.0 {
        return None;
    }
    let added: u64 = window
        .windows(2)
        .map(|w| f(w[1]).saturating_sub(f(w[0])))
        .sum();
    Some(added as f64 / secs)
}

/// The rates over the last [`RATE_WINDOW`] of `samples` (`None` with fewer than two samples).
pub(super) fn rates(samples: &VecDeque<Sample>) -> (Option<f64>, Option<f64>) {
    let Some(last) = samples.back() else {
        return (None, None);
    };
    let from = last.t_ms.saturating_sub(RATE_WINDOW.as_millis() as u64);
    let window: Vec<&Sample> = samples.iter().filter(|s| s.t_ms >= from).collect();
    let first = window[0];
    let secs = (last.t_ms - first.t_ms) as f64 / 1000.0;
    if window.len() < 2 || secs <= 0.0 {
        return (None, None);
    }
    let drain = (first.backlog() as f64 - last.backlog() as f64) / secs;
    let added: u64 = window
        .windows(2)
        .map(|w| w[1].dead_letters.saturating_sub(w[0].dead_letters))
        .sum();
    (Some(drain), Some(added as f64 / secs))
}

/// One queue as the sampler knows it.
#[derive(Debug, Default)]
pub(super) struct Tracked {
    /// The last inspection.
    pub(super) report: Option<QueueInspection>,
    /// Whether the queue's pause flag was set at the last sample.
    pub(super) paused: bool,
    /// Why the last inspection failed.
    pub(super) error: Option<String>,
    /// The samples, oldest first.
    pub(super) samples: VecDeque<Sample>,
}

#[derive(Debug, Default)]
struct State {
    queues: BTreeMap<String, Tracked>,
    sampled_at_ms: Option<u64>,
    discovery_error: Option<String>,
    /// Names left out because [`MAX_QUEUES`] were tracked already.
    overflow: bool,
}

/// Samples every known queue every `interval`, keeping `capacity` samples of each.
#[derive(Debug)]
pub(super) struct Sampler {
    conn: RedisConnection,
    prefix: String,
    side: ListSide,
    interval: Duration,
    capacity: usize,
    state: RwLock<State>,
}

impl Sampler {
    pub(super) fn new(
        conn: RedisConnection,
        prefix: &str,
        side: ListSide,
        interval: Duration,
        history: Duration,
        queues: &[String],
    ) -> Self {
        let capacity = (history.as_secs_f64() / interval.as_secs_f64()).ceil() as usize;
        let s = Self {
            conn,
            prefix: prefix.to_owned(),
            side,
            interval,
            capacity: capacity.clamp(2, MAX_SAMPLES),
            state: RwLock::default(),
        };
        for q in queues.iter().filter(|q| !q.trim().is_empty()) {
            s.track(q);
        }
        s
    }

    /// The end of a list consumers pop.
    pub(super) fn side(&self) -> ListSide {
        self.side
    }

    /// The sampling interval.
    pub(super) fn interval(&self) -> Duration {
        self.interval
    }

    /// The inspection of `queue`, as `pythia inspect` makes it (the kind read from its key).
    pub(super) async fn inspect(&self, queue: &str) -> Result<QueueInspection, InspectError> {
        let options = InspectOptions::new().with_side(self.side);
        inspect_queue(&self.conn, queue, &options).await
    }

    /// Starts tracking `queue` (no effect when known, or when [`MAX_QUEUES`] are tracked).
    pub(super) fn track(&self, queue: &str) {
        let mut st = self.state.write().expect("sampler lock");
        if st.queues.contains_key(queue) {
            return;
        }
        if st.queues.len() >= MAX_QUEUES {
            st.overflow = true;
            return;
        }
        st.queues.insert(queue.to_owned(), Tracked::default());
    }

    /// Samples forever, every interval (a round that overruns delays the next one).
    /// Stops once the dashboard is dropped (only `weak` is left).
    pub(super) async fn run(weak: Weak<Self>) {
        let Some(interval) = weak.upgrade().map(|s| s.interval) else {
            return;
        };
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut discovered: Option<Instant> = None;
        loop {
            tick.tick().await;
            let Some(this) = weak.upgrade() else {
                return;
            };
            if discovered.is_none_or(|t| t.elapsed() >= DISCOVER_EVERY) {
                discovered = Some(Instant::now());
                let found = this.discover().await;
                let mut st = this.state.write().expect("sampler lock");
                st.discovery_error = found.as_ref().err().cloned();
                drop(st);
                for q in found.unwrap_or_default() {
                    this.track(&q);
                }
            }
            this.sample_all().await;
        }
    }

    /// One sampling round over every tracked queue.
    async fn sample_all(&self) {
        let names: Vec<String> = self
            .state
            .read()
            .expect("sampler lock")
            .queues
            .keys()
            .cloned()
            .collect();
        let t_ms = pythia_core::message::unix_millis(SystemTime::now());
        // The report carries the pause flag and today's counters (see `Sampler::inspect`).
        let results: Vec<(String, Result<QueueInspection, String>)> =
            futures_util::stream::iter(names)
                .map(|q| async move {
                    let r = self.inspect(&q).await.map_err(|e| e.to_string());
                    (q, r)
                })
                .buffer_unordered(PARALLEL)
                .collect()
                .await;
        let mut st = self.state.write().expect("sampler lock");
        st.sampled_at_ms = Some(t_ms);
        for (q, r) in results {
            let Some(tracked) = st.queues.get_mut(&q) else {
                continue;
            };
            match r {
                Ok(report) => {
                    tracked
                        .samples
                        .push_back(Sample::from_report(t_ms, &report));
                    tracked.paused = report.paused() == Some(true);
                    while tracked.samples.len() > self.capacity {
                        tracked.samples.pop_front();
                    }
                    tracked.report = Some(report);
                    tracked.error = None;
                }
                Err(e) => tracked.error = Some(e),
            }
        }
    }

    /// The queue names of the registry and those found among the keys under the prefix.
    async fn discover(&self) -> Result<Vec<String>, String> {
        let mut names: Vec<String> = registered_queues(&self.conn)
            .await
            .map_err(|e| e.to_string())?
            .into_keys()
            .collect();
        names.extend(
            discovered_queues(&self.conn, SCAN_LIMIT)
                .await
                .map_err(|e| e.to_string())?,
        );
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// The overview document (see `pythia dashboard --help`), with the last `points` samples
    /// of each queue.
    pub(super) fn overview(&self, points: usize) -> Overview {
        let st = self.state.read().expect("sampler lock");
        Overview {
            prefix: self.prefix.clone(),
            sampled_at_ms: st.sampled_at_ms,
            interval_ms: self.interval.as_millis() as u64,
            rate_window_seconds: RATE_WINDOW.as_secs(),
            discovery_error: st.discovery_error.clone(),
            queues_capped: st.overflow.then_some(MAX_QUEUES),
            circuit_breakers: CircuitBreakers::default(),
            queues: st
                .queues
                .iter()
                .map(|(name, t)| row(name, t, points))
                .collect(),
        }
    }

    /// The history document of one queue (`None` when it is not tracked).
    pub(super) fn history(&self, queue: &str) -> Option<History> {
        let st = self.state.read().expect("sampler lock");
        let t = st.queues.get(queue)?;
        let (drain, dead) = rates(&t.samples);
        let last = t.samples.back();
        Some(History {
            queue: queue.to_owned(),
            paused: t.paused,
            processed_today: last.map(|s| s.processed),
            failed_today: last.map(|s| s.failed),
            processed_per_second: counter_rate(&t.samples, |s| s.processed),
            failed_per_second: counter_rate(&t.samples, |s| s.failed),
            interval_ms: self.interval.as_millis() as u64,
            rate_window_seconds: RATE_WINDOW.as_secs(),
            net_drain_per_second: drain,
            dead_lettered_per_second: dead,
            history: series(&t.samples, usize::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: u64, depth: u64, dead: u64) -> Sample {
        Sample {
            t_ms: t,
            depth,
            in_flight: 0,
            scheduled: 0,
            dead_letters: dead,
            processed: 0,
            failed: 0,
        }
    }

    #[test]
    fn counter_rates_over_the_window() {
        let at = |t: u64, processed: u64| Sample {
            processed,
            ..s(t, 0, 0)
        };
        let mut v = VecDeque::new();
        assert_eq!(counter_rate(&v, |s| s.processed), None);
        v.push_back(at(0, 100));
        assert_eq!(counter_rate(&v, |s| s.processed), None);
        v.push_back(at(2_000, 120));
        v.push_back(at(4_000, 5)); // midnight UTC: a new day's counter
        v.push_back(at(5_000, 25));
        assert_eq!(counter_rate(&v, |s| s.processed), Some(40.0 / 5.0));
    }

    #[test]
    fn rates_over_the_window() {
        let mut v = VecDeque::new();
        assert_eq!(rates(&v), (None, None));
        v.push_back(s(0, 100, 0));
        assert_eq!(rates(&v), (None, None));
        v.push_back(s(2_000, 80, 2));
        v.push_back(s(4_000, 60, 1)); // a replay shrank the DLQ: not counted
        v.push_back(s(6_000, 40, 3));
        let (drain, dead) = rates(&v);
        assert_eq!(drain, Some(10.0));
        assert_eq!(dead, Some(4.0 / 6.0));
        // Samples older than the window are ignored.
        let v: VecDeque<Sample> = [s(0, 10_000, 0), s(30_000, 50, 0), s(90_000, 50, 0)].into();
        let (drain, _) = rates(&v);
        assert!(drain.unwrap().abs() < 1e-9, "{drain:?}");
    }
}

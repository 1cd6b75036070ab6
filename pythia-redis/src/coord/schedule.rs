//! [`Schedule`]: when a periodic job fires, the instants ("slots") of a cron expression (UTC)
//! or a fixed interval.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use pythia_core::BrokerError;
use pythia_core::message::unix_millis;

/// When a periodic job fires: the instants ("slots") of a cron expression or a fixed interval.
///
/// ```
/// use std::time::Duration;
/// use pythia_redis::Schedule;
///
/// let nightly = Schedule::cron("30 2 * * *").unwrap(); // 02:30 UTC every day
/// let every_15s = Schedule::every(Duration::from_secs(15));
/// let with_seconds = Schedule::cron("*/10 * * * * *").unwrap(); // every 10 s
/// assert!(Schedule::cron("61 * * * *").is_err());
/// # let _ = (nightly, every_15s, with_seconds);
/// ```
#[derive(Debug, Clone)]
pub struct Schedule {
    kind: ScheduleKind,
}

#[derive(Debug, Clone)]
enum ScheduleKind {
    /// Every `ms` milliseconds, at multiples of it since the Unix epoch.
    Every {
        ms: u64,
    },
    Cron {
        cron: Box<Cron>,
        expr: String,
    },
}

impl Schedule {
    /// Every `period` (at least 1 ms), at whole multiples of it since the Unix epoch, so every
    /// replica computes the same slots: `every(1 min)` fires at the start of each minute.
    pub fn every(period: Duration) -> Self {
        Self {
            kind: ScheduleKind::Every {
                ms: (period.as_millis() as u64).max(1),
            },
        }
    }

    /// A cron expression, evaluated in UTC: five fields (minute hour day-of-month month
    /// day-of-week) or six with seconds first; `*`, lists, ranges, steps, month and day names,
    /// `L`, `W`, `#` and `@hourly`-style aliases, with Vixie cron's rule that a day matches
    /// when either the day-of-month or the day-of-week field does. A
    /// [`Config`](pythia_core::BrokerErrorKind::Config) error names a bad expression.
    pub fn cron(expr: &str) -> Result<Self, BrokerError> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| BrokerError::config(format!("invalid cron expression {expr:?}: {e}")))?;
        Ok(Self {
            kind: ScheduleKind::Cron {
                cron: Box::new(cron),
                expr: expr.to_owned(),
            },
        })
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: SystemTime) -> Option<SystemTime> {
        let ms = unix_millis(t);
        let next = match &self.kind {
            ScheduleKind::Every { ms: p } => Some((ms / p + 1) * p),
            ScheduleKind::Cron { cron, .. } => cron
                .find_next_occurrence(&to_utc(ms)?, false)
                .ok()
                .map(|d| d.timestamp_millis().max(0) as u64),
        }?;
        Some(UNIX_EPOCH + Duration::from_millis(next))
    }

    /// The slots in `(after, upto]` (ms since the epoch), the newest `limit` of them in
    /// ascending order, and whether older ones were left out.
    pub(crate) fn due_slots(&self, after: u64, upto: u64, limit: usize) -> (Vec<u64>, bool) {
        let limit = limit.max(1);
        match &self.kind {
            ScheduleKind::Every { ms: p } => {
                let first = after / p + 1;
                let last = upto / p;
                if last < first {
                    return (Vec::new(), false);
                }
                let start = first.max(last.saturating_sub(limit as u64 - 1));
                ((start..=last).map(|k| k * p).collect(), start > first)
            }
            ScheduleKind::Cron { cron, .. } => {
                let mut out = Vec::new();
                let Some(upto_t) = to_utc(upto) else {
                    return (out, false);
                };
                let mut t = cron.find_previous_occurrence(&upto_t, true).ok();
                while let Some(at) = t {
                    let ms = at.timestamp_millis();
                    if ms < 0 || ms as u64 <= after {
                        break;
                    }
                    if out.len() == limit {
                        out.reverse();
                        return (out, true);
                    }
                    out.push(ms as u64);
                    t = cron.find_previous_occurrence(&at, false).ok();
                }
                out.reverse();
                (out, false)
            }
        }
    }

    /// An upper bound on the time between two slots, for the slot record's TTL.
    pub(crate) fn period_hint(&self) -> Duration {
        match &self.kind {
            ScheduleKind::Every { ms } => Duration::from_millis(*ms),
            ScheduleKind::Cron { .. } => {
                let now = SystemTime::now();
                let a = self.next_after(now);
                let b = a.and_then(|a| self.next_after(a));
                match (a, b) {
                    (Some(a), Some(b)) => b.duration_since(a).unwrap_or_default(),
                    _ => Duration::ZERO,
                }
            }
        }
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            ScheduleKind::Every { ms } => write!(f, "every {ms} ms"),
            ScheduleKind::Cron { expr, .. } => write!(f, "cron {expr:?} (UTC)"),
        }
    }
}

impl FromStr for Schedule {
    type Err = BrokerError;
    /// A cron expression, or `every <duration>` with the duration in `ms`, `s`, `m` or `h`
    /// (`every 30s`).
    fn from_str(s: &str) -> Result<Self, BrokerError> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("every ") {
            let rest = rest.trim();
            let split = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let (n, unit) = rest.split_at(split);
            let n: u64 = n.parse().map_err(|_| {
                BrokerError::config(format!("invalid interval {rest:?}: expected e.g. 30s"))
            })?;
            let ms = match unit.trim() {
                "ms" => n,
                "s" | "" => n * 1000,
                "m" => n * 60_000,
                "h" => n * 3_600_000,
                other => {
                    return Err(BrokerError::config(format!(
                        "invalid interval unit {other:?}: expected ms, s, m or h"
                    )));
                }
            };
            return Ok(Self::every(Duration::from_millis(ms)));
        }
        Self::cron(s)
    }
}

fn to_utc(ms: u64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(i64::try_from(ms).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_slots_are_aligned_and_capped() {
        let s = Schedule::every(Duration::from_millis(100));
        assert_eq!(s.due_slots(1000, 1000, 10), (vec![], false));
        assert_eq!(s.due_slots(1000, 1099, 10), (vec![], false));
        assert_eq!(s.due_slots(1000, 1100, 10), (vec![1100], false));
        assert_eq!(s.due_slots(1050, 1350, 10), (vec![1100, 1200, 1300], false));
        assert_eq!(s.due_slots(1000, 2000, 3), (vec![1800, 1900, 2000], true));
        assert_eq!(
            s.next_after(UNIX_EPOCH + Duration::from_millis(1250)),
            Some(UNIX_EPOCH + Duration::from_millis(1300))
        );
    }

    #[test]
    fn cron_slots_walk_back_from_now() {
        let s = Schedule::cron("*/10 * * * * *").unwrap();
        // 2024-01-01T00:00:00Z = 1704067200000
        let t0 = 1_704_067_200_000u64;
        let (slots, skipped) = s.due_slots(t0, t0 + 35_000, 10);
        assert_eq!(slots, vec![t0 + 10_000, t0 + 20_000, t0 + 30_000]);
        assert!(!skipped);
        let (slots, skipped) = s.due_slots(t0 - 1, t0 + 35_000, 2);
        assert_eq!(slots, vec![t0 + 20_000, t0 + 30_000]);
        assert!(skipped);
        let hourly = Schedule::cron("0 * * * *").unwrap();
        assert_eq!(
            hourly.next_after(UNIX_EPOCH + Duration::from_millis(t0 + 1)),
            Some(UNIX_EPOCH + Duration::from_millis(t0 + 3_600_000))
        );
        assert_eq!(hourly.period_hint(), Duration::from_secs(3600));
    }

    #[test]
    fn schedules_parse_from_text() {
        assert!(matches!(
            "every 30s".parse::<Schedule>().unwrap().kind,
            ScheduleKind::Every { ms: 30_000 }
        ));
        assert!(matches!(
            "every 250ms".parse::<Schedule>().unwrap().kind,
            ScheduleKind::Every { ms: 250 }
        ));
        assert!("every 3 weeks".parse::<Schedule>().is_err());
        assert!("0 0 * * *".parse::<Schedule>().is_ok());
        let e = "nope".parse::<Schedule>().unwrap_err();
        assert!(e.to_string().contains("invalid cron expression"), "{e}");
    }
}

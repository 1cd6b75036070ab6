//! `pythia doctor`'s typed result: each check's verdict, detail and fix, and the whole report
//! (with the library's [`QueueReport`] of the queue given by `--queue`), printed as lines or,
//! with `--json`, serialised as it is: the two outputs carry the same checks.

use pythia::redis::queues::QueueReport;
use serde::Serialize;

use crate::error::CliError;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Status {
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
#[derive(Debug, Serialize)]
pub(super) struct Check {
    #[serde(rename = "check")]
    pub(super) name: &'static str,
    pub(super) status: Status,
    pub(super) detail: String,
    pub(super) fix: Option<String>,
}

impl Check {
    pub(super) fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Self {
        Self {
            name,
            status,
            detail: detail.into(),
            fix: None,
        }
    }

    pub(super) fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// Everything `pythia doctor` found.
#[derive(Debug, Serialize)]
pub(super) struct DoctorReport {
    /// The URL, password masked.
    pub(super) redis_url: String,
    pub(super) server_version: String,
    pub(super) checks: Vec<Check>,
    pub(super) passed: usize,
    pub(super) warnings: usize,
    pub(super) failures: usize,
    /// The report of the queue named by `--queue` (absent without it, or when it could not be
    /// read: the `queue` check says why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) queue: Option<QueueReport>,
}

impl DoctorReport {
    pub(super) fn new(
        redis_url: String,
        server_version: String,
        checks: Vec<Check>,
        queue: Option<QueueReport>,
    ) -> Self {
        let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
        Self {
            passed: count(Status::Pass),
            warnings: count(Status::Warn),
            failures: count(Status::Fail),
            redis_url,
            server_version,
            checks,
            queue,
        }
    }

    /// One JSON document. Through a `serde_json::Value` so that the keys come out sorted, as
    /// they always have.
    pub(super) fn to_json(&self) -> String {
        let value = serde_json::to_value(self).expect("the report serialises");
        serde_json::to_string_pretty(&value).expect("JSON values serialise")
    }

    /// The lines of the text output: the server, one line per check (and its fix), the tally.
    pub(super) fn to_text(&self) -> String {
        let mut out = format!("Redis {} ({})\n", self.redis_url, self.server_version);
        for c in &self.checks {
            out.push_str(&format!(
                "{:<5} {:<12} {}\n",
                c.status.as_str().to_ascii_uppercase(),
                c.name,
                c.detail
            ));
            if let Some(fix) = &c.fix {
                out.push_str(&format!("      fix: {fix}\n"));
            }
        }
        out.push_str(&format!(
            "{} failed, {} warnings, {} passed\n",
            self.failures, self.warnings, self.passed
        ));
        out
    }

    /// Exit 1 when a check FAILed.
    pub(super) fn verdict(&self) -> Result<(), CliError> {
        match self.failures {
            0 => Ok(()),
            n => Err(CliError::runtime(format!(
                "{n} check{} FAILed",
                if n == 1 { "" } else { "s" }
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_carry_the_same_checks() {
        let report = DoctorReport::new(
            "redis://127.0.0.1:1".into(),
            "7.2.4".into(),
            vec![
                Check::new("version", Status::Pass, "Redis 7.2.4"),
                Check::new("persistence", Status::Warn, "off").fix("appendonly yes"),
            ],
            None,
        );
        assert_eq!(
            report.to_text(),
            "Redis redis://127.0.0.1:1 (7.2.4)\n\
             PASS  version      Redis 7.2.4\n\
             WARN  persistence  off\n      fix: appendonly yes\n\
             0 failed, 1 warnings, 1 passed\n"
        );
        let doc: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(doc["checks"][1]["check"], "persistence");
        assert_eq!(doc["checks"][1]["status"], "warn");
        assert_eq!(doc["checks"][1]["fix"], "appendonly yes");
        assert_eq!(doc["checks"][0]["fix"], serde_json::Value::Null);
        assert_eq!(
            (doc["passed"].as_u64(), doc["warnings"].as_u64()),
            (Some(1), Some(1))
        );
        assert!(doc.get("queue").is_none());
        assert!(report.verdict().is_ok());
    }
}

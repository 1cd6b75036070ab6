//! A counting metrics recorder for a test binary: `counter(name, labels)` reads what the
//! brokers counted. It installs a global recorder, once per test binary, before the brokers whose
//! counters are read are built.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use metrics::SharedString;

#[derive(Clone, Default)]
pub struct TestRecorder {
    counters: Arc<Mutex<HashMap<String, Arc<AtomicU64>>>>,
}

fn key_text(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

impl metrics::Recorder for TestRecorder {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: SharedString) {}

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
        let text = key_text(key.name(), &labels);
        let cell = Arc::clone(self.counters.lock().unwrap().entry(text).or_default());
        metrics::Counter::from_arc(cell)
    }

    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }

    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// Installs the recorder (before the brokers whose counters are read are built).
pub fn metrics_recorder() -> &'static TestRecorder {
    static RECORDER: OnceLock<TestRecorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let r = TestRecorder::default();
        metrics::set_global_recorder(r.clone()).expect("no other recorder in this binary");
        r
    })
}

/// The value of counter `name` with exactly these labels (0 when never registered).
pub fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    metrics_recorder()
        .counters
        .lock()
        .unwrap()
        .get(&key_text(name, labels))
        .map_or(0, |c| c.load(Ordering::Relaxed))
}

/// The sum of counter `name` over every label set.
pub fn counter_sum(name: &str) -> u64 {
    let prefix = format!("{name}{{");
    metrics_recorder()
        .counters
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, c)| c.load(Ordering::Relaxed))
        .sum()
}

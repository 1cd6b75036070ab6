//! Metric names of the resilience layers (see [`crate::metrics`] for how Pythia records).

/// State of each circuit breaker, by `breaker` name: 0 closed, 1 half-open, 2 open.
pub const CIRCUIT_BREAKER_STATE: &str = "pythia_circuit_breaker_state";
/// Circuit breaker state changes, by `breaker` name and the state entered (`to`: `closed`,
/// `half_open`, `open`).
pub const CIRCUIT_BREAKER_TRANSITIONS_TOTAL: &str = "pythia_circuit_breaker_transitions_total";

/// Describes every resilience metric to the installed recorder.
///
/// [`crate::metrics::describe`] calls this too, so a binary that calls that needs nothing more.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        CIRCUIT_BREAKER_STATE,
        "Circuit breaker state, by breaker (0 closed, 1 half-open, 2 open)"
    );
    describe_counter!(
        CIRCUIT_BREAKER_TRANSITIONS_TOTAL,
        "Circuit breaker state changes, by breaker and state entered (to)"
    );
}

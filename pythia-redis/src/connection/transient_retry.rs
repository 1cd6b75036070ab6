//! Retrying Redis operations that are safe to repeat, after transient failures only.
//!
//! The coordination features (locks, delayed messages, periodic jobs, idempotency records, job
//! status, checkpoints) retry an operation only when repeating it cannot change its meaning
//! (a compare-and-set, an idempotent write, a read), and only on errors that a retry may fix
//! ([`BrokerError::is_retryable`]: a dropped connection, a timeout, a server still loading).
//! Anything else is returned at once, with the operation named in the message.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use pythia_core::BrokerError;

/// Attempts after the first one: 50 ms, 100 ms, 200 ms, 400 ms (each with jitter), so a call
/// gives up after about 1 s of a Redis that does not answer (plus the reply timeouts).
const RETRIES: usize = 4;

/// Runs `op` until it succeeds, fails with a non-retryable error, or the retries run out.
pub(crate) async fn retry_transient<T, F, Fut>(what: &str, mut op: F) -> Result<T, BrokerError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BrokerError>>,
{
    let mut delays = ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_millis(400))
        .with_jitter()
        .with_max_times(RETRIES)
        .build();
    loop {
        match op().await {
            Err(e) if e.is_retryable() => match delays.next() {
                Some(delay) => {
                    tracing::debug!(operation = what, error = %e, ?delay, "transient Redis error; retrying");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(e),
            },
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_only_transient_errors_and_gives_up() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = retry_transient("x", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(BrokerError::connection("down"))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1 + RETRIES as u32);

        let calls = AtomicU32::new(0);
        let r: Result<(), _> = retry_transient("x", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(BrokerError::backend("WRONGTYPE"))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let r = retry_transient("x", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(BrokerError::connection("blip"))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(r.unwrap(), 7);
    }
}

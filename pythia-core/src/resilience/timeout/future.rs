//! [`ResponseFuture`]: what a [`Timeout`](super::Timeout) call returns, the inner call raced
//! against the deadline.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use crate::error::WorkerError;

/// The future [`Timeout`](super::Timeout) returns: the inner future raced against the deadline.
///
/// When the deadline passes, the inner future is dropped at once (before this future returns),
/// so the handler's own drop guards and cancellation run right away.
pub struct ResponseFuture<F> {
    // Boxed because the crate forbids `unsafe` and has no pin-projection dependency; the
    // runtime boxes every layer's future anyway.
    inner: Option<Pin<Box<tokio::time::Timeout<F>>>>,
    limit: Duration,
}

impl<F: Future> ResponseFuture<F> {
    pub(super) fn new(inner: F, limit: Duration) -> Self {
        Self {
            inner: Some(Box::pin(tokio::time::timeout(limit, inner))),
            limit,
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("limit", &self.limit)
            .field("done", &self.inner.is_none())
            .finish()
    }
}

impl<F, T> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, WorkerError>>,
{
    type Output = Result<T, WorkerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let inner = this
            .inner
            .as_mut()
            .expect("timeout::ResponseFuture polled after completion");
        let out = ready!(inner.as_mut().poll(cx));
        // Drop the handler's future now: on a timeout this is the cancellation.
        this.inner = None;
        Poll::Ready(match out {
            Ok(result) => result,
            Err(_elapsed) => {
                tracing::debug!(limit = ?this.limit, "handler overran its deadline and was cancelled");
                Err(WorkerError::timeout(this.limit))
            }
        })
    }
}

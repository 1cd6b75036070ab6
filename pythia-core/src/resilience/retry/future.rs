//! [`ResponseFuture`]: what a [`Retry`](super::Retry) call returns, the first try then any in-
//! process retries.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::worker::BoxFuture;

/// The future [`Retry`](super::Retry) returns: the first try, then any in-process retries.
pub struct ResponseFuture<T> {
    inner: BoxFuture<T>,
}

impl<T> ResponseFuture<T> {
    pub(super) fn new(inner: BoxFuture<T>) -> Self {
        Self { inner }
    }
}

impl<T> std::fmt::Debug for ResponseFuture<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<T> Future for ResponseFuture<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        self.inner.as_mut().poll(cx)
    }
}

//! [`ResponseFuture`]: what a [`CircuitBreaker`](super::CircuitBreaker) call returns, reporting the
//! result to the breaker.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use super::state::{Ticket, Verdict};
use crate::error::WorkerError;

/// The future [`CircuitBreaker`](super::CircuitBreaker) returns: the inner call, whose result is
/// reported to the breaker when it finishes.
///
/// Dropped before it finishes, the call counts neither way (and frees its probe slot if it was
/// a half-open probe).
pub struct ResponseFuture<F> {
    state: State<F>,
}

enum State<F> {
    Running {
        // Boxed because the crate forbids `unsafe` and has no pin-projection dependency.
        future: Pin<Box<F>>,
        ticket: Option<Ticket>,
    },
    Refused(Option<WorkerError>),
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(future: F, ticket: Ticket) -> Self {
        Self {
            state: State::Running {
                future: Box::pin(future),
                ticket: Some(ticket),
            },
        }
    }

    pub(super) fn refused(error: WorkerError) -> Self {
        Self {
            state: State::Refused(Some(error)),
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Running {
                ticket: Some(_), ..
            } => "running",
            State::Running { ticket: None, .. } => "done",
            State::Refused(_) => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, T> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, WorkerError>>,
{
    type Output = Result<T, WorkerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            State::Running { future, ticket } => {
                let out = ready!(future.as_mut().poll(cx));
                if let Some(ticket) = ticket.take() {
                    ticket.finish(Verdict::of(&out));
                }
                Poll::Ready(out)
            }
            State::Refused(error) => Poll::Ready(Err(error
                .take()
                .expect("circuit_breaker::ResponseFuture polled after completion"))),
        }
    }
}

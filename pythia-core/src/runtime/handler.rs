//! What the driver calls per message: the worker directly when no layer was added (one boxed
//! future per message, nothing else), or the tower stack of layers around it.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::task::JoinHandle;
use tower::Service;

use super::driver::panic_text;
use crate::error::WorkerError;
use crate::message::Message;
use crate::worker::{BoxFuture, HandlerService, Worker};

/// A [`Worker`] with its type erased.
pub(crate) trait ErasedWorker: Send + Sync {
    fn call(&self, msg: Message) -> BoxFuture<Result<(), WorkerError>>;
    fn on_start(&self) -> BoxFuture<Result<(), WorkerError>>;
    fn on_stop(&self) -> BoxFuture<()>;
}

impl<W: Worker> ErasedWorker for Arc<W> {
    fn call(&self, msg: Message) -> BoxFuture<Result<(), WorkerError>> {
        let w = Arc::clone(self);
        Box::pin(async move { w.process_message(&msg).await })
    }
    fn on_start(&self) -> BoxFuture<Result<(), WorkerError>> {
        let w = Arc::clone(self);
        Box::pin(async move { Worker::on_start(&*w).await })
    }
    fn on_stop(&self) -> BoxFuture<()> {
        let w = Arc::clone(self);
        Box::pin(async move { Worker::on_stop(&*w).await })
    }
}

/// The handler the driver calls.
pub(crate) enum Handler {
    Direct(Arc<dyn ErasedWorker>),
    Stack(HandlerService),
}

impl Handler {
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WorkerError>> {
        match self {
            Self::Direct(_) => Poll::Ready(Ok(())),
            Self::Stack(s) => s.poll_ready(cx),
        }
    }

    pub(crate) fn call(&mut self, msg: Message) -> BoxFuture<Result<(), WorkerError>> {
        match self {
            Self::Direct(w) => w.call(msg),
            Self::Stack(s) => s.call(msg),
        }
    }
}

/// One message's handler, running: polled on the driver's task, or spawned onto the runtime.
/// Either way a panic comes back as [`WorkerError::panic`], never as an unwinding driver.
pub(crate) enum Running {
    Inline {
        slot: usize,
        fut: BoxFuture<Result<(), WorkerError>>,
        /// The message's span, entered on each poll (a spawned handler is instrumented).
        span: tracing::Span,
    },
    Spawned {
        slot: usize,
        handle: JoinHandle<Result<(), WorkerError>>,
    },
}

impl Future for Running {
    type Output = (usize, Result<(), WorkerError>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Inline { slot, fut, span } => {
                let _in = span.enter();
                match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
                    Ok(Poll::Ready(r)) => Poll::Ready((*slot, r)),
                    Ok(Poll::Pending) => Poll::Pending,
                    Err(p) => Poll::Ready((*slot, Err(WorkerError::panic(panic_text(&*p))))),
                }
            }
            Self::Spawned { slot, handle } => Pin::new(handle).poll(cx).map(|r| {
                let r = r.unwrap_or_else(|e| match e.try_into_panic() {
                    Ok(p) => Err(WorkerError::panic(panic_text(&*p))),
                    Err(e) => Err(WorkerError::panic(e.to_string())),
                });
                (*slot, r)
            }),
        }
    }
}

//! The user's side: the [`Worker`] trait, and the tower [`Service`] it becomes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;
use tower::util::BoxCloneService;

use crate::error::WorkerError;
use crate::message::Message;

/// What a worker does with each message. Implement [`process_message`](Worker::process_message);
/// the hooks are optional.
///
/// `process_message` runs concurrently for up to `concurrency` messages at once, so the worker
/// is shared (`&self`): keep per-message state in the future, shared state behind `Arc`/locks.
///
/// The returned error says what happens next (see [`WorkerError`]): retry with backoff, retry
/// after a given delay, or reject (dead-letter now). `Ok(())` acknowledges the message.
///
/// ```
/// use pythia_core::{Message, MemoryBroker, Worker, WorkerError, WorkerRuntime};
///
/// struct Resize;
///
/// impl Worker for Resize {
///     async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
///         let url = msg.body_str()?; // not UTF-8: poison, rejected (never retried)
///         if url.is_empty() {
///             return Err(WorkerError::reject("empty url"));
///         }
///         // ... fetch and resize; a `?` on an I/O error retries with backoff.
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let broker = MemoryBroker::new("images");
/// broker.push(Message::new("https://example.com/a.png"));
/// let summary = WorkerRuntime::new(broker.clone(), Resize).with_burst(true).run().await.unwrap();
/// assert_eq!(summary.acked, 1);
/// # }
/// ```
pub trait Worker: Send + Sync + 'static {
    /// Handles one message. `Ok(())` acknowledges it; an error retries or dead-letters it.
    fn process_message(
        &self,
        msg: &Message,
    ) -> impl Future<Output = Result<(), WorkerError>> + Send;

    /// Runs once before the first fetch. An error stops the runtime before it consumes anything.
    fn on_start(&self) -> impl Future<Output = Result<(), WorkerError>> + Send {
        async { Ok(()) }
    }

    /// Runs once after the last message has been settled (or handed back) on shutdown.
    fn on_stop(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

impl<W: Worker> Worker for Arc<W> {
    fn process_message(
        &self,
        msg: &Message,
    ) -> impl Future<Output = Result<(), WorkerError>> + Send {
        (**self).process_message(msg)
    }

    fn on_start(&self) -> impl Future<Output = Result<(), WorkerError>> + Send {
        (**self).on_start()
    }

    fn on_stop(&self) -> impl Future<Output = ()> + Send {
        (**self).on_stop()
    }
}

/// The type-erased handler stack the runtime drives: a tower service from [`Message`] to `()`.
///
/// Middleware ([`WorkerRuntime::layer`](crate::WorkerRuntime::layer)) wraps this service.
pub type HandlerService = BoxCloneService<Message, (), WorkerError>;

/// A boxed, sendable future, as the handler service returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A [`Worker`] as a tower [`Service`]: the innermost service of the handler stack.
#[derive(Debug)]
pub struct WorkerService<W> {
    worker: Arc<W>,
}

impl<W> WorkerService<W> {
    /// Wraps a shared worker.
    pub fn new(worker: Arc<W>) -> Self {
        Self { worker }
    }

    /// The wrapped worker.
    pub fn get_ref(&self) -> &W {
        &self.worker
    }
}

impl<W> Clone for WorkerService<W> {
    fn clone(&self) -> Self {
        Self {
            worker: Arc::clone(&self.worker),
        }
    }
}

impl<W: Worker> Service<Message> for WorkerService<W> {
    type Response = ();
    type Error = WorkerError;
    type Future = BoxFuture<Result<(), WorkerError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, msg: Message) -> Self::Future {
        let worker = Arc::clone(&self.worker);
        Box::pin(async move { worker.process_message(&msg).await })
    }
}

/// A [`Worker`] made from an async closure, for small handlers and tests.
///
/// ```
/// use pythia_core::{worker_fn, Message, WorkerError};
///
/// let w = worker_fn(|msg: Message| async move {
///     if msg.body().is_empty() { Err(WorkerError::reject("empty")) } else { Ok(()) }
/// });
/// # let _ = w;
/// ```
pub fn worker_fn<F, Fut>(f: F) -> FnWorker<F>
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), WorkerError>> + Send + 'static,
{
    FnWorker { f }
}

/// The worker [`worker_fn`] returns.
pub struct FnWorker<F> {
    f: F,
}

impl<F> std::fmt::Debug for FnWorker<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnWorker")
    }
}

impl<F, Fut> Worker for FnWorker<F>
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), WorkerError>> + Send + 'static,
{
    fn process_message(
        &self,
        msg: &Message,
    ) -> impl Future<Output = Result<(), WorkerError>> + Send {
        (self.f)(msg.clone())
    }
}

//! [`InOrder`]: requests sent one after another on one connection and answered in that order,
//! a bounded number unanswered at a time, so that a producer encodes the next batch while
//! Redis works on the previous ones.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

use futures_util::future::{MaybeDone, maybe_done};

/// A window of requests in flight, oldest first.
///
/// [`send`](Self::send) polls a request's future once, which hands the command to the
/// connection (a multiplexed connection writes in the order it is handed commands, and
/// answers in that order), then keeps it until its turn. Outputs come back in sending order,
/// whichever future finished first.
pub(crate) struct InOrder<F: Future> {
    depth: usize,
    window: VecDeque<Pin<Box<MaybeDone<F>>>>,
}

impl<F: Future> InOrder<F> {
    /// A window of at most `depth` (at least 1) unanswered requests.
    pub(crate) fn new(depth: usize) -> Self {
        Self {
            depth: depth.max(1),
            window: VecDeque::with_capacity(depth.max(1)),
        }
    }

    /// Sends `request`; when that makes the window overflow, waits for the oldest request and
    /// returns its output.
    pub(crate) async fn send(&mut self, request: F) -> Option<F::Output> {
        let mut request = Box::pin(maybe_done(request));
        // One poll: the command goes out now, not when its turn to be awaited comes.
        let _ = futures_util::poll!(request.as_mut());
        self.window.push_back(request);
        if self.window.len() > self.depth {
            self.next().await
        } else {
            None
        }
    }

    /// Waits for the oldest request still in the window and returns its output; `None` when
    /// the window is empty.
    pub(crate) async fn next(&mut self) -> Option<F::Output> {
        let mut oldest = self.window.pop_front()?;
        oldest.as_mut().await;
        oldest.as_mut().take_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn outputs_come_back_in_sending_order_and_the_window_is_bounded() {
        let mut w = InOrder::new(2);
        let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let req = |i: u64, ms: u64| {
            let started = started.clone();
            async move {
                started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                i
            }
        };
        // The first request is the slowest: its output must still come first.
        assert_eq!(w.send(req(0, 40)).await, None);
        assert_eq!(w.send(req(1, 0)).await, None);
        // Both were polled (sent) at once, not when awaited.
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(w.send(req(2, 10)).await, Some(0));
        assert_eq!(w.next().await, Some(1));
        assert_eq!(w.next().await, Some(2));
        assert_eq!(w.next().await, None);
    }
}

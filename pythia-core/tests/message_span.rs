//! With `with_message_span(true)`, a handler's own tracing events carry the message's span:
//! queue, id and attempt, whether the handler is polled by the driver (inline) or spawned,
//! before and after an await. Without it (the default), no span.

use std::io::Write;
use std::sync::{Arc, Mutex};

use pythia_core::{Dispatch, MemoryBroker, Message, WorkerError, WorkerRuntime, worker_fn};

/// A writer into a shared buffer, for the JSON formatter.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs 3 messages (one of them on its second attempt) through `dispatch`; returns the JSON
/// lines of the handler's events and the messages' ids.
async fn handler_events(dispatch: Dispatch, span: bool) -> (Vec<serde_json::Value>, Vec<String>) {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let broker = MemoryBroker::new("orders");
    let msgs: Vec<Message> = (0..3)
        .map(|i| Message::new(format!("{i}")).with_attempt(if i == 2 { 2 } else { 1 }))
        .collect();
    let ids = msgs.iter().map(|m| m.id().to_owned()).collect();
    broker.push_many(msgs);
    WorkerRuntime::new(
        broker,
        worker_fn(|m: Message| async move {
            tracing::info!(body = m.body_str().unwrap(), "before the await");
            tokio::task::yield_now().await;
            tracing::info!("after the await");
            Ok::<(), WorkerError>(())
        }),
    )
    .with_dispatch(dispatch)
    .with_message_span(span)
    .with_signal_handling(false)
    .with_burst(true)
    .run()
    .await
    .unwrap();
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let events = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| {
            e["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("the await"))
        })
        .collect();
    (events, ids)
}

async fn every_handler_event_carries_the_message(dispatch: Dispatch) {
    let (events, ids) = handler_events(dispatch, true).await;
    assert_eq!(events.len(), 6, "{events:?}");
    for e in &events {
        let span = &e["span"];
        assert_eq!(span["name"], "message", "{e}");
        assert_eq!(span["queue"], "orders", "{e}");
        let id = span["id"].as_str().unwrap_or_else(|| panic!("{e}"));
        let i = ids
            .iter()
            .position(|x| x == id)
            .unwrap_or_else(|| panic!("{e}"));
        assert_eq!(span["attempt"], if i == 2 { 2 } else { 1 }, "{e}");
    }
}

#[tokio::test]
async fn inline_handlers_events_carry_queue_id_and_attempt() {
    every_handler_event_carries_the_message(Dispatch::Inline).await;
}

#[tokio::test]
async fn spawned_handlers_events_carry_queue_id_and_attempt() {
    every_handler_event_carries_the_message(Dispatch::Spawn).await;
}

#[tokio::test]
async fn no_span_unless_asked_for() {
    let (events, _) = handler_events(Dispatch::Inline, false).await;
    assert_eq!(events.len(), 6, "{events:?}");
    for e in &events {
        assert!(e.get("span").is_none(), "{e}");
    }
}

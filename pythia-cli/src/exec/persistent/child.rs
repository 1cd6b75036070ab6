//! One child slot of `--exec-persistent`: the running child ([`Link`]: the messages it holds,
//! the bytes waiting to reach its stdin) and the task that starts it, watches it and restarts
//! it with backoff ([`supervise`]).

use std::collections::HashMap;
use std::io::Write as _;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use pythia::{CancellationToken, Message, WorkerError};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::{Notify, oneshot};

use super::Shared;
use super::protocol::{self, Reply, Verdict};
use crate::exec::{keep_tail, stderr_tail};

/// First delay before restarting a child that died without answering anything; it doubles up
/// to [`MAX_BACKOFF`] while the children keep dying so.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest delay between two restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a child that closed its stdout gets to exit by itself (and tell its exit status)
/// before it is killed.
const EXIT_GRACE: Duration = Duration::from_millis(500);
/// How long a child gets to exit after its stdin closed at shutdown before it is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long the stderr copy may run on after the child exited (a grandchild may hold it open).
const STDERR_LINGER: Duration = Duration::from_millis(200);
/// The longest reply line read; a longer one is a protocol error.
const MAX_LINE: u64 = 1 << 20;

/// Why a child is being stopped.
#[derive(Debug, Clone)]
enum StopReason {
    /// Its stdout reached end of file (it exited, or closed it).
    StdoutClosed,
    /// Writing to its stdin failed (it exited, or closed it).
    StdinFailed(String),
    /// It wrote a line that is not a reply.
    Malformed(String),
    /// A message's deadline passed without a single reply from it since that message was sent.
    Unresponsive,
}

/// How one message ended, as its [`Link`] tells the waiting handler.
enum Settled {
    Verdict(Verdict),
    /// The child stopped while holding it: why.
    Lost(Arc<str>),
}

/// The messages a child holds, by id (a list: the same id may be in flight twice).
#[derive(Default)]
struct Pending {
    /// Set when the child has stopped: nothing more is accepted.
    closed: Option<Arc<str>>,
    waiting: HashMap<String, Vec<oneshot::Sender<Settled>>>,
}

/// A running child: what it holds and what is waiting to reach its stdin.
pub(super) struct Link {
    slot: usize,
    pid: u32,
    /// Request lines not yet written to its stdin: appended by handlers, taken whole by the
    /// writer task, so that many messages reach the child in one `write`.
    outbox: Mutex<Vec<u8>>,
    wake_writer: Notify,
    pending: Mutex<Pending>,
    /// Messages sent and not yet settled or abandoned.
    in_flight: AtomicUsize,
    /// Replies received so far.
    replies: AtomicU64,
    stop: CancellationToken,
    /// Set with `stop`.
    stopping: AtomicBool,
    stop_reason: OnceLock<StopReason>,
    /// The end of its stderr, for the reason given to the messages it held when it stopped.
    stderr_tail: Mutex<Vec<u8>>,
}

impl Link {
    fn new(slot: usize, pid: u32) -> Self {
        Self {
            slot,
            pid,
            outbox: Mutex::new(Vec::new()),
            wake_writer: Notify::new(),
            pending: Mutex::new(Pending::default()),
            in_flight: AtomicUsize::new(0),
            replies: AtomicU64::new(0),
            stop: CancellationToken::new(),
            stopping: AtomicBool::new(false),
            stop_reason: OnceLock::new(),
            stderr_tail: Mutex::new(Vec::new()),
        }
    }

    /// Messages it holds.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether it is stopping or stopped: send it nothing more.
    pub(super) fn is_stopping(&self) -> bool {
        // An atomic, not `stop.is_cancelled()`, which takes a lock: this is read per message.
        self.stopping.load(Ordering::Relaxed)
    }

    /// Asks the supervisor to stop the child (the first reason wins).
    fn stop(&self, why: StopReason) {
        let _ = self.stop_reason.set(why);
        self.stopping.store(true, Ordering::Relaxed);
        self.stop.cancel();
    }

    /// Sends `msg` to the child. `None` when the child has stopped: pick another.
    pub(super) fn submit(self: &Arc<Self>, msg: &Message, shared: &Arc<Shared>) -> Option<Sent> {
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending.lock().expect("pending lock");
            if p.closed.is_some() {
                return None;
            }
            // Registered before the line is written: the reply cannot come first.
            p.waiting.entry(msg.id().to_owned()).or_default().push(tx);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let sent = Sent {
            link: Arc::clone(self),
            shared: Arc::clone(shared),
            id: msg.id().to_owned(),
            replies_before: self.replies.load(Ordering::Relaxed),
            rx: Some(rx),
        };
        protocol::write_request(&mut self.outbox.lock().expect("outbox lock"), msg);
        self.wake_writer.notify_one();
        Some(sent)
    }

    /// Hands a reply to the message waiting for it. A reply for no waiting message (its
    /// deadline passed, or the child answered twice) is dropped with a warning.
    fn settle(&self, reply: Reply) {
        self.replies.fetch_add(1, Ordering::Relaxed);
        let tx = {
            let mut p = self.pending.lock().expect("pending lock");
            match p.waiting.get_mut(&reply.id) {
                Some(list) => {
                    let tx = list.remove(0);
                    if list.is_empty() {
                        p.waiting.remove(&reply.id);
                    }
                    Some(tx)
                }
                None => None,
            }
        };
        match tx {
            Some(tx) => {
                let _ = tx.send(Settled::Verdict(reply.verdict));
            }
            None => tracing::warn!(
                slot = self.slot,
                pid = self.pid,
                id = %reply.id,
                "a persistent child answered a message it does not hold (late after its \
                 deadline, or answered twice): ignored"
            ),
        }
    }

    /// Marks the child stopped and tells every message it held why.
    fn close(&self, reason: &str) {
        let reason: Arc<str> = reason.into();
        let waiting = {
            let mut p = self.pending.lock().expect("pending lock");
            p.closed = Some(Arc::clone(&reason));
            std::mem::take(&mut p.waiting)
        };
        for tx in waiting.into_values().flatten() {
            let _ = tx.send(Settled::Lost(Arc::clone(&reason)));
        }
    }

    /// The id of the only message the child holds, if it holds exactly one.
    fn only_message(&self) -> Option<String> {
        let p = self.pending.lock().expect("pending lock");
        match p.waiting.iter().next() {
            Some((id, list)) if p.waiting.len() == 1 && list.len() == 1 => Some(id.clone()),
            _ => None,
        }
    }
}

/// A message sent to a child, until it is settled. Dropped unsettled (its deadline passed),
/// it stops counting against the child, and stops the child if that has answered nothing since
/// the message was sent.
pub(super) struct Sent {
    link: Arc<Link>,
    shared: Arc<Shared>,
    id: String,
    replies_before: u64,
    /// `None` once settled.
    rx: Option<oneshot::Receiver<Settled>>,
}

impl Sent {
    /// The message's result.
    pub(super) async fn result(mut self) -> Result<(), WorkerError> {
        let rx = self.rx.as_mut().expect("awaited once");
        let settled = rx.await;
        self.rx = None;
        match settled {
            Ok(Settled::Verdict(v)) => v.into_result(&self.shared.program),
            Ok(Settled::Lost(reason)) => Err(WorkerError::retry(reason.to_string())),
            Err(_) => Err(WorkerError::retry(format!(
                "`{}` (child {}) stopped while holding the message",
                self.shared.program, self.link.slot
            ))),
        }
    }
}

impl Drop for Sent {
    fn drop(&mut self) {
        let before = self.link.in_flight.fetch_sub(1, Ordering::Relaxed);
        if before == self.shared.in_flight_per_child {
            self.shared.changed.notify_waiters();
        }
        let Some(rx) = self.rx.take() else { return };
        drop(rx);
        {
            let mut p = self.link.pending.lock().expect("pending lock");
            if let Some(list) = p.waiting.get_mut(&self.id) {
                list.retain(|tx| !tx.is_closed());
                if list.is_empty() {
                    p.waiting.remove(&self.id);
                }
            }
        }
        if self.link.replies.load(Ordering::Relaxed) == self.replies_before
            && !self.shared.shutdown.is_cancelled()
        {
            self.link.stop(StopReason::Unresponsive);
        }
    }
}

/// Starts the child of `slot`, restarts it whenever it stops, until shutdown.
pub(super) async fn supervise(slot: usize, shared: Arc<Shared>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        if shared.shutdown.is_cancelled() {
            return;
        }
        let started = Instant::now();
        let answered = match spawn(slot, &shared) {
            Ok(child) => run_child(slot, &shared, child).await,
            Err(e) => {
                tracing::error!(slot, error = %e, "cannot start a persistent child (`sh`)");
                false
            }
        };
        if shared.shutdown.is_cancelled() {
            return;
        }
        // A child that did some work restarts at once; one that keeps dying before answering
        // anything (a bad command, a crash on start-up) waits longer and longer.
        if answered || started.elapsed() > MAX_BACKOFF {
            backoff = MIN_BACKOFF;
        }
        tracing::warn!(slot, "restarting the persistent child in {backoff:?}");
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shared.shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn spawn(slot: usize, shared: &Shared) -> std::io::Result<Child> {
    Command::new("sh")
        .arg("-c")
        .arg(&shared.command)
        .env_clear()
        .envs(shared.env.iter().map(|(k, v)| (k, v)))
        .env("PYTHIA_CHILD", slot.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group: Ctrl-C in a terminal (or `timeout`) signals the worker's
        // group, and the worker, not the signal, decides when the children stop: after the
        // messages they hold are settled (see `run_child`'s shutdown branch).
        .process_group(0)
        .spawn()
}

/// Serves messages through `child` until it stops; returns whether it answered any.
async fn run_child(slot: usize, shared: &Arc<Shared>, mut child: Child) -> bool {
    let pid = child.id().unwrap_or(0);
    let link = Arc::new(Link::new(slot, pid));
    let stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let writer = tokio::spawn(write_requests(Arc::clone(&link), stdin, shared.clone()));
    let reader = tokio::spawn(read_replies(Arc::clone(&link), stdout));
    let mut copy = tokio::spawn(copy_stderr(
        Arc::clone(&link),
        stderr,
        shared.program.clone(),
    ));
    tracing::debug!(slot, pid, "persistent child started");
    *shared.slots[slot].lock().expect("slot lock") = Some(Arc::clone(&link));
    shared.changed.notify_waiters();

    // Whether this process killed the child (else it exited, or died, by itself).
    let mut killed = false;
    let status = tokio::select! {
        s = child.wait() => s,
        () = link.stop.cancelled() => {
            if matches!(link.stop_reason.get(), Some(StopReason::StdoutClosed | StopReason::StdinFailed(_))) {
                // It is probably exiting: let it say how.
                if let Ok(s) = tokio::time::timeout(EXIT_GRACE, child.wait()).await {
                    s
                } else {
                    killed = child.start_kill().is_ok();
                    child.wait().await
                }
            } else {
                killed = child.start_kill().is_ok();
                child.wait().await
            }
        }
        () = shared.shutdown.cancelled() => {
            // Nothing is in flight any more: the writer stops, which closes the child's
            // stdin; the child sees end of file and exits.
            writer.abort();
            match tokio::time::timeout(SHUTDOWN_GRACE, child.wait()).await {
                Ok(s) => s,
                Err(_) => {
                    killed = child.start_kill().is_ok();
                    child.wait().await
                }
            }
        }
    };
    link.stopping.store(true, Ordering::Relaxed);
    link.stop.cancel();
    *shared.slots[slot].lock().expect("slot lock") = None;
    writer.abort();
    reader.abort();
    if tokio::time::timeout(STDERR_LINGER, &mut copy)
        .await
        .is_err()
    {
        copy.abort();
    }
    let answered = link.replies.load(Ordering::Relaxed) > 0;
    let reason = describe_stop(shared, &link, &status, killed);
    link.close(&reason);
    if !shared.shutdown.is_cancelled() {
        tracing::warn!(slot, pid, "{reason}");
    }
    answered
}

/// Why the child stopped, for the logs and the messages it held: the program, the slot, the
/// pid, what happened, and the end of its stderr; never the command line.
fn describe_stop(
    shared: &Shared,
    link: &Link,
    status: &std::io::Result<std::process::ExitStatus>,
    killed: bool,
) -> String {
    let what = match (status, link.stop_reason.get()) {
        (Err(e), _) => format!("could not be waited for ({e})"),
        (Ok(s), _) if !killed => match s.code() {
            Some(code) => format!("exited {code}"),
            None => "was killed by a signal".to_owned(),
        },
        (Ok(_), Some(StopReason::Malformed(e))) => {
            format!("wrote a line that is not a reply ({e}) and was stopped")
        }
        (Ok(_), Some(StopReason::Unresponsive)) => {
            "answered nothing since a message it held was given up (its --timeout, or the end of the shutdown grace) and was stopped".to_owned()
        }
        (Ok(_), Some(StopReason::StdoutClosed)) => "closed its stdout and was stopped".to_owned(),
        (Ok(_), Some(StopReason::StdinFailed(e))) => {
            format!("stopped reading its stdin ({e}) and was stopped")
        }
        (Ok(_), None) => "was stopped".to_owned(),
    };
    let mut reason = format!(
        "`{}` (persistent child {}, pid {}) {what}",
        shared.program, link.slot, link.pid
    );
    let tail = stderr_tail(&link.stderr_tail.lock().expect("stderr tail lock"));
    if !tail.is_empty() {
        reason.push_str(": ");
        reason.push_str(&tail);
    }
    reason
}

/// Writes the request lines to the child's stdin, all that have accumulated in one `write`.
async fn write_requests(link: Arc<Link>, mut stdin: ChildStdin, shared: Arc<Shared>) {
    let mut spare = Vec::new();
    loop {
        let mut buf = std::mem::replace(
            &mut *link.outbox.lock().expect("outbox lock"),
            std::mem::take(&mut spare),
        );
        if buf.is_empty() {
            spare = buf;
            tokio::select! {
                () = link.wake_writer.notified() => {
                    // Woken by the first of what is often a whole fetched batch: let the
                    // handlers of the rest run first, so that they go out in the same write.
                    tokio::task::yield_now().await;
                    continue;
                }
                () = link.stop.cancelled() => return,
                () = shared.shutdown.cancelled() => return,
            }
        }
        if let Err(e) = stdin.write_all(&buf).await {
            link.stop(StopReason::StdinFailed(e.to_string()));
            return;
        }
        buf.clear();
        spare = buf;
    }
}

/// Reads reply lines and settles their messages; stops the child on end of file or on a line
/// that is not a reply.
async fn read_replies(link: Arc<Link>, stdout: ChildStdout) {
    let mut from = BufReader::with_capacity(64 * 1024, stdout);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let n = match (&mut from)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => {
                link.stop(StopReason::StdoutClosed);
                return;
            }
            Ok(n) => n,
        };
        if line.last() != Some(&b'\n') && n as u64 == MAX_LINE {
            link.stop(StopReason::Malformed(format!(
                "a line longer than {MAX_LINE} bytes"
            )));
            return;
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match protocol::parse_reply(text) {
            Ok(reply) => link.settle(reply),
            Err(e) => {
                let start: String = String::from_utf8_lossy(text).chars().take(80).collect();
                link.stop(StopReason::Malformed(format!(
                    "{e}: {}",
                    start.escape_debug()
                )));
                return;
            }
        }
    }
}

/// Copies the child's stderr to the worker's, line by line, each prefixed with the program,
/// the slot and the pid, and the message id when the child holds exactly one message.
async fn copy_stderr(link: Arc<Link>, stderr: ChildStderr, program: String) {
    let mut from = BufReader::new(stderr);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        match (&mut from)
            .take(64 * 1024)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        keep_tail(
            &mut link.stderr_tail.lock().expect("stderr tail lock"),
            &line,
        );
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        let id = link
            .only_message()
            .map(|id| format!(" msg {id}"))
            .unwrap_or_default();
        let _ = writeln!(
            std::io::stderr().lock(),
            "[{program} #{} pid {}{id}] {text}",
            link.slot,
            link.pid
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::persistent::PersistentExecWorker;

    fn link_and_shared() -> (Arc<Link>, Arc<Shared>) {
        let w = PersistentExecWorker::new("true".into(), &[], 1, 8);
        (Arc::new(Link::new(0, 1)), Arc::clone(&w.shared))
    }

    fn reply(id: &str, verdict: Verdict) -> Reply {
        Reply {
            id: id.to_owned(),
            verdict,
        }
    }

    #[tokio::test]
    async fn replies_settle_by_id_in_any_order_and_a_repeated_id_in_turn() {
        let (link, shared) = link_and_shared();
        let first = Message::new("a").with_id("x");
        let second = Message::new("b").with_id("x");
        let other = Message::new("c").with_id("y");
        let a = link.submit(&first, &shared).unwrap();
        let b = link.submit(&second, &shared).unwrap();
        let c = link.submit(&other, &shared).unwrap();
        assert_eq!(link.in_flight(), 3);
        let outbox = link.outbox.lock().unwrap().clone();
        assert_eq!(outbox.iter().filter(|b| **b == b'\n').count(), 3);

        link.settle(reply("y", Verdict::Reject { reason: None }));
        link.settle(reply("x", Verdict::Ack));
        link.settle(reply(
            "x",
            Verdict::Retry {
                after: None,
                reason: None,
            },
        ));
        // Nobody waits for a third `x`: ignored.
        link.settle(reply("x", Verdict::Ack));
        assert!(a.result().await.is_ok());
        assert!(b.result().await.unwrap_err().is_retryable());
        assert!(!c.result().await.unwrap_err().is_retryable());
        assert_eq!(link.in_flight(), 0);
        assert!(link.pending.lock().unwrap().waiting.is_empty());
        assert!(!link.is_stopping(), "late replies do not stop the child");
    }

    #[tokio::test]
    async fn a_closed_child_fails_what_it_held_retryably_and_takes_nothing_more() {
        let (link, shared) = link_and_shared();
        let msg = Message::new("a").with_id("x");
        let held = link.submit(&msg, &shared).unwrap();
        link.close("`py` (persistent child 0, pid 1) exited 3");
        let e = held.result().await.unwrap_err();
        assert!(e.is_retryable());
        assert!(e.to_string().contains("exited 3"), "{e}");
        assert!(link.submit(&msg, &shared).is_none());
    }

    #[tokio::test]
    async fn a_message_given_up_on_stops_a_silent_child_but_not_a_talking_one() {
        let (link, shared) = link_and_shared();
        let talking = link
            .submit(&Message::new("a").with_id("x"), &shared)
            .unwrap();
        link.settle(reply("other", Verdict::Ack)); // it answered something since
        drop(talking);
        assert!(!link.is_stopping());
        assert_eq!(link.in_flight(), 0);
        assert!(link.pending.lock().unwrap().waiting.is_empty());

        let silent = link
            .submit(&Message::new("b").with_id("y"), &shared)
            .unwrap();
        drop(silent);
        assert!(link.is_stopping());
        assert!(matches!(
            link.stop_reason.get(),
            Some(StopReason::Unresponsive)
        ));
    }
}

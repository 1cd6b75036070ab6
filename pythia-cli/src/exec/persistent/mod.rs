//! `--exec-persistent CMD`: long-lived children that handle many messages each.
//!
//! `--exec` pays a fork, an exec and, for an interpreter, its whole start-up per message (9
//! msg/s for a Python script). Here `pythia run` starts `--exec-children` copies of
//! `sh -c CMD` once, writes each message to one of them as a JSON line and reads a JSON line
//! back ([`protocol`]). Up to `--exec-in-flight` messages are outstanding per child at once
//! (and `--concurrency` in all): the child reads them as they come and may answer in any
//! order. Requests that accumulate while the child's stdin is busy go out in one `write`.
//!
//! # Behaviour
//!
//! * **Dispatch**: each message goes to the running child holding the fewest messages that
//!   is below `--exec-in-flight`; when there is none, it waits (within the message's
//!   `--timeout`).
//! * **A child that stops** — it exits or dies, closes its stdout or its stdin, or writes a line
//!   that is not a reply — is stopped (SIGKILL) if it still runs, and every message it held
//!   fails with a retryable error naming the program, the slot, the pid, what happened and the
//!   end of its stderr: retried by the retry policy, dead-lettered after `--max-attempts`,
//!   never acked and never lost. It is restarted at once if it had answered anything, else
//!   after a backoff from 100 ms doubling to 10 s (a command that cannot start).
//! * **Deadlines**: a message whose reply does not come within `--timeout` fails as a timeout
//!   (retried); a late reply is ignored with a warning. If the child answered nothing at all
//!   since that message was sent, it is taken as hung: stopped and restarted, its other
//!   messages retried. The same when the shutdown grace runs out with the message in flight.
//! * **stderr** is copied to the worker's, each line prefixed `[PROGRAM #SLOT pid PID]`, plus
//!   `msg ID` when the child holds exactly one message (with several in flight, a line cannot
//!   be attributed).
//! * **Shutdown**: once the runtime has settled every message, the children's stdin is closed;
//!   each gets 5 s to exit before it is killed. They run in their own process group, so that
//!   Ctrl-C in a terminal (which signals the whole foreground group) reaches the worker only,
//!   and they finish what they hold while it drains.
//! * **Environment**: the same as `--exec` children ([`super::inherited_env`]), plus
//!   `PYTHIA_CHILD` (the slot, from 0).

mod child;
pub(crate) mod protocol;

use std::ffi::OsString;
use std::sync::{Arc, Mutex};

use pythia::{CancellationToken, Message, Worker, WorkerError};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use self::child::{Link, supervise};
use super::{inherited_env, program_name};

/// Default of `--exec-in-flight`: messages outstanding per child. Enough to keep a child busy
/// while its replies travel back (a child answers a whole read's worth of requests with one
/// write), small enough that a crash retries few messages.
pub(crate) const DEFAULT_IN_FLIGHT: u32 = 128;

/// Default of `--exec-children`: one per CPU, at most this many.
pub(crate) const MAX_DEFAULT_CHILDREN: usize = 8;

/// The default number of children: one per CPU, between 1 and [`MAX_DEFAULT_CHILDREN`].
pub(crate) fn default_children() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, MAX_DEFAULT_CHILDREN)
}

/// What the children share with the handlers: the command and its environment, the slots.
pub(super) struct Shared {
    command: String,
    /// The program, as reasons and stderr prefixes name it.
    program: String,
    env: Vec<(OsString, OsString)>,
    in_flight_per_child: usize,
    /// The running child of each slot (`None` while it restarts).
    slots: Vec<Mutex<Option<Arc<Link>>>>,
    /// Notified when a child starts and when a full child has room again.
    changed: Notify,
    shutdown: CancellationToken,
    supervisors: Mutex<Vec<JoinHandle<()>>>,
}

/// Sends each message to one of a few long-lived `sh -c CMD` children (see the module docs).
#[derive(Clone)]
pub(crate) struct PersistentExecWorker {
    shared: Arc<Shared>,
}

impl PersistentExecWorker {
    /// A worker for `command` with `children` children holding up to `in_flight` messages
    /// each, seeing the safe part of this process's environment and the variables named in
    /// `pass_env`. The children start with the runtime ([`Worker::on_start`]).
    pub(crate) fn new(
        command: String,
        pass_env: &[String],
        children: usize,
        in_flight: usize,
    ) -> Self {
        let children = children.max(1);
        Self {
            shared: Arc::new(Shared {
                program: program_name(&command),
                command,
                env: inherited_env(std::env::vars_os(), pass_env),
                in_flight_per_child: in_flight.max(1),
                slots: (0..children).map(|_| Mutex::new(None)).collect(),
                changed: Notify::new(),
                shutdown: CancellationToken::new(),
                supervisors: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The running child with the fewest messages and room for one more; waits for one.
    async fn pick(&self) -> Arc<Link> {
        let shared = &self.shared;
        // The common case first, without registering for a wake-up (that takes a lock).
        if let Some(link) = self.least_loaded() {
            return link;
        }
        loop {
            let changed = shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(link) = self.least_loaded() {
                return link;
            }
            changed.await;
        }
    }

    /// The running child with the fewest messages, if one has room.
    fn least_loaded(&self) -> Option<Arc<Link>> {
        let shared = &self.shared;
        let mut best: Option<Arc<Link>> = None;
        for slot in &shared.slots {
            let slot = slot.lock().expect("slot lock");
            let Some(link) = slot.as_ref() else { continue };
            let n = link.in_flight();
            if !link.is_stopping()
                && n < shared.in_flight_per_child
                && best.as_ref().is_none_or(|b| n < b.in_flight())
            {
                best = Some(Arc::clone(link));
            }
        }
        best
    }
}

/// Names the program and the inherited variables, never the command line or the values.
impl std::fmt::Debug for PersistentExecWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistentExecWorker")
            .field("program", &self.shared.program)
            .field("children", &self.shared.slots.len())
            .field("in_flight_per_child", &self.shared.in_flight_per_child)
            .field(
                "env",
                &self.shared.env.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Worker for PersistentExecWorker {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        loop {
            let link = self.pick().await;
            // `None`: it stopped since it was picked; it is no longer picked.
            if let Some(sent) = link.submit(msg, &self.shared) {
                return sent.result().await;
            }
        }
    }

    async fn on_start(&self) -> Result<(), WorkerError> {
        let mut tasks = self.shared.supervisors.lock().expect("supervisors lock");
        if tasks.is_empty() {
            for slot in 0..self.shared.slots.len() {
                tasks.push(tokio::spawn(supervise(slot, Arc::clone(&self.shared))));
            }
        }
        Ok(())
    }

    async fn on_stop(&self) {
        self.shared.shutdown.cancel();
        let tasks = std::mem::take(&mut *self.shared.supervisors.lock().expect("supervisors lock"));
        for t in tasks {
            let _ = t.await;
        }
    }
}

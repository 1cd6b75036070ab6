//! The Lua scripts, loaded once from `lua/*.lua`. Every key a script touches is passed in KEYS.

use std::sync::LazyLock;

use redis::Script;

/// Promote due retries from the schedule to the queue.
pub(crate) static PROMOTE_DUE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/promote_due.lua")));
/// Move a batch into a consumer's in-flight hash.
pub(crate) static RELIABLE_FETCH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/reliable_fetch.lua")));
/// Ack / retry / dead-letter deliveries of one consumer, idempotently.
pub(crate) static RELIABLE_SETTLE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/reliable_settle.lua")));
/// Hand deliveries back to the front of the queue.
pub(crate) static RELIABLE_RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/reliable_release.lua")));
/// Return a dead consumer's work to the queue.
pub(crate) static RELIABLE_REAP: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/reliable_reap.lua")));

//! `pythia doctor`'s ACL check: may the connected user run every command Pythia sends (directly
//! and inside its scripts) on the queue's keys? Asked of the server with `ACL DRYRUN`.

use pythia::redis::{QueueKeys, RedisConnection};

use super::DoctorArgs;
use super::report::{Check, Status};

/// The commands Pythia runs (directly and inside its Lua scripts), with arguments naming the
/// queue's keys, as `ACL DRYRUN` takes them.
fn needed_commands(queue: &str, prefix: &str) -> Vec<Vec<String>> {
    let k = QueueKeys::new(prefix, queue);
    let (q, c) = (queue.to_owned(), "doctor-consumer".to_owned());
    let (inflight, staging, hb) = (k.in_flight(&c), k.staging(&c), k.heartbeat(&c));
    let (sched, dlq, cons) = (k.scheduled(), k.dead_letters(), k.consumers());
    let (registry, stat) = (
        pythia::redis::keys::registry(prefix),
        k.stat("processed", "2026-01-01"),
    );
    let v = |parts: &[&str]| parts.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    vec![
        v(&["PING"]),
        v(&["LPUSH", &q, "x"]),
        v(&["RPUSH", &q, "x"]),
        v(&["RPOP", &q, "10"]),
        v(&["LPOP", &q, "10"]),
        v(&["BRPOP", &q, "1"]),
        v(&["BLPOP", &q, "1"]),
        v(&["BLMOVE", &q, &staging, "RIGHT", "LEFT", "1"]),
        v(&["LMOVE", &staging, &q, "LEFT", "RIGHT"]),
        v(&["LLEN", &q]),
        v(&["LINDEX", &q, "0"]),
        v(&["LRANGE", &dlq, "0", "10"]),
        v(&["LREM", &dlq, "1", "x"]),
        v(&["LTRIM", &dlq, "0", "10"]),
        v(&["HSET", &inflight, "1", "x"]),
        v(&["HGET", &inflight, "1"]),
        v(&["HDEL", &inflight, "1"]),
        v(&["HLEN", &inflight]),
        v(&["HGETALL", &inflight]),
        v(&["SET", &hb, "1", "PX", "10000"]),
        v(&["GET", &hb]),
        v(&["EXISTS", &hb]),
        v(&["DEL", &hb]),
        v(&["SADD", &cons, &c]),
        v(&["SREM", &cons, &c]),
        v(&["SMEMBERS", &cons]),
        v(&["ZADD", &sched, "1", "x"]),
        v(&["ZCARD", &sched]),
        v(&["ZRANGEBYSCORE", &sched, "-inf", "+inf"]),
        v(&["ZREM", &sched, "x"]),
        v(&[
            "EVALSHA",
            "0000000000000000000000000000000000000000",
            "1",
            &q,
        ]),
        v(&["SCRIPT", "LOAD", "return 1"]),
        v(&["XADD", &q, "*", "body", "x"]),
        v(&[
            "XREADGROUP",
            "GROUP",
            "g",
            &c,
            "COUNT",
            "1",
            "STREAMS",
            &q,
            ">",
        ]),
        v(&["XACK", &q, "g", "0-1"]),
        v(&["XGROUP", "CREATE", &q, "g", "$", "MKSTREAM"]),
        v(&["XGROUP", "DELCONSUMER", &q, "g", &c]),
        v(&["XINFO", "GROUPS", &q]),
        v(&["XINFO", "CONSUMERS", &q, "g"]),
        v(&["XPENDING", &q, "g"]),
        v(&["XCLAIM", &q, "g", &c, "0", "0-1"]),
        v(&["XDEL", &q, "0-1"]),
        v(&["XTRIM", &q, "MINID", "~", "0"]),
        v(&["XRANGE", &q, "-", "+"]),
        v(&["XLEN", &q]),
        v(&["XADD", &dlq, "*", "body", "x"]),
        v(&["PUBLISH", &q, "x"]),
        v(&["SUBSCRIBE", &q]),
        v(&["PSUBSCRIBE", &format!("{q}*")]),
        // The queue registry, the daily counters and the pause flag (`pythia queues`).
        v(&["HSETNX", &registry, &q, "list"]),
        v(&["HSET", &registry, &q, "list"]),
        v(&["HGETALL", &registry]),
        v(&["INCRBY", &stat, "1"]),
        v(&["EXPIRE", &stat, "60"]),
        v(&["EXISTS", &k.paused()]),
    ]
}

pub(super) async fn acl_check(
    conn: &RedisConnection,
    version: (u32, u32, u32),
    args: &DoctorArgs,
) -> Check {
    if version < (7, 0, 0) {
        return Check::new(
            "acl",
            Status::Warn,
            "cannot check the user's permissions: ACL DRYRUN needs Redis 7",
        )
        .fix("make sure the user may run the list, hash, set, sorted set, stream, pub/sub and scripting commands on the queue's keys");
    }
    let mut m = conn.manager();
    let user: String = match redis::cmd("ACL").arg("WHOAMI").query_async(&mut m).await {
        Ok(u) => u,
        Err(e) => {
            return Check::new(
                "acl",
                Status::Warn,
                format!("cannot tell the current user (ACL WHOAMI failed: {e})"),
            );
        }
    };
    let queue = args.queue.as_deref().unwrap_or("pythia-doctor");
    let commands = needed_commands(queue, &args.redis.key_prefix);
    let mut pipe = redis::pipe();
    for c in &commands {
        pipe.cmd("ACL").arg("DRYRUN").arg(&user).arg(c);
    }
    let replies: Vec<redis::Value> = match pipe.query_async(&mut m).await {
        Ok(r) => r,
        Err(e) => {
            return Check::new(
                "acl",
                Status::Warn,
                format!("cannot check user {user:?}'s permissions (ACL DRYRUN failed: {e})"),
            )
            .fix("run `pythia doctor` as a user allowed ACL DRYRUN, or check the permissions by hand");
        }
    };
    let denied: Vec<String> = commands
        .iter()
        .zip(replies)
        .filter_map(|(c, r)| match r {
            redis::Value::Okay => None,
            redis::Value::SimpleString(s) if s == "OK" => None,
            other => {
                let why = crate::commands::inspect::text(Some(&other));
                Some(format!("{} ({why})", c[..c.len().min(2)].join(" ")))
            }
        })
        .collect();
    let on = if args.queue.is_some() {
        format!("on queue {queue:?}'s keys")
    } else {
        format!("on the keys of a placeholder queue {queue:?} (give --queue to check yours)")
    };
    if denied.is_empty() {
        Check::new(
            "acl",
            Status::Pass,
            format!(
                "user {user:?} may run the {} commands Pythia needs {on}",
                commands.len()
            ),
        )
    } else {
        Check::new(
            "acl",
            Status::Fail,
            format!("user {user:?} is denied {} of the commands Pythia needs {on}: {}", denied.len(), denied.join("; ")),
        )
        .fix(format!(
            "ACL SETUSER {user} +@list +@hash +@set +@sortedset +@stream +@pubsub +@scripting +@string +@keyspace +@connection ~{queue} ~{}:{{{queue}}}:* ~{}:queues &{queue}",
            args.redis.key_prefix, args.redis.key_prefix
        ))
    }
}

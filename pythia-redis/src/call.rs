//! [`Call`]: one Redis round trip built without I/O (a command, a Pythia script, a pipeline or
//! a transaction), so that the brokers, unit tests of exact arguments and the benches share the
//! one building code and only the brokers send it.

use redis::aio::ConnectionLike;
use redis::{Cmd, FromRedisValue, Pipeline, RedisResult, Script, ToRedisArgs};

/// A Redis call as a broker operation builds it, before it is sent.
///
/// The settle commands of [`ReliableListCommands`](crate::list::ReliableListCommands),
/// [`ListCommands`](crate::list::ListCommands) and
/// [`StreamCommands`](crate::stream::StreamCommands) return one: a broker sends it, a test reads
/// its arguments, a bench measures its building and its [`packed`](Self::packed) bytes. So do
/// the crate's other scripts and pipelines (pub/sub, locks, periodic jobs, delayed messages, the
/// gate, job status, counters, dead letters, checkpoints), from a function beside their sender.
#[derive(Debug, Clone)]
pub struct Call(Kind);

#[derive(Debug, Clone)]
enum Kind {
    /// A plain command.
    Command(Cmd),
    /// `EVALSHA <sha> <numkeys> <keys…> <args…>` of a Pythia script, loaded on `NOSCRIPT`.
    Script(&'static Script, Cmd),
    /// A `MULTI`/`EXEC` transaction.
    Transaction(Pipeline),
    /// Commands sent together, not atomically (one reply each, unless ignored).
    Pipeline(Pipeline),
}

impl Call {
    /// A plain command.
    pub(crate) fn command(cmd: Cmd) -> Self {
        Self(Kind::Command(cmd))
    }

    /// A call of `script` with `keys`; add its arguments with [`arg`](Self::arg).
    pub(crate) fn script<K: ToRedisArgs>(script: &'static Script, keys: &[K]) -> Self {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
        Self(Kind::Script(script, cmd))
    }

    /// A `MULTI`/`EXEC` transaction of `pipe`'s commands.
    pub(crate) fn transaction(mut pipe: Pipeline) -> Self {
        pipe.atomic();
        Self(Kind::Transaction(pipe))
    }

    /// Commands sent together in one round trip, not as a transaction.
    pub(crate) fn pipeline(pipe: Pipeline) -> Self {
        Self(Kind::Pipeline(pipe))
    }

    /// Appends an argument (to a command or a script call; a no-op on a transaction).
    pub(crate) fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        match &mut self.0 {
            Kind::Command(cmd) | Kind::Script(_, cmd) => {
                cmd.arg(arg);
            }
            Kind::Transaction(_) | Kind::Pipeline(_) => {
                debug_assert!(false, "arguments go to a pipeline's commands")
            }
        }
        self
    }

    /// The bytes the client writes for this call (RESP; `MULTI … EXEC` for a transaction).
    pub fn packed(&self) -> Vec<u8> {
        match &self.0 {
            Kind::Command(cmd) | Kind::Script(_, cmd) => cmd.get_packed_command(),
            Kind::Transaction(pipe) | Kind::Pipeline(pipe) => pipe.get_packed_pipeline(),
        }
    }

    /// The arguments of a command or script call, the command name first (`EVALSHA`, the
    /// script's hash, the key count, keys, arguments); empty for a pipeline or transaction
    /// (see [`commands`](Self::commands)).
    pub fn args(&self) -> Vec<&[u8]> {
        match &self.0 {
            Kind::Command(cmd) | Kind::Script(_, cmd) => args_of(cmd),
            Kind::Transaction(_) | Kind::Pipeline(_) => Vec::new(),
        }
    }

    /// The arguments of each command the call sends, in order: one for a command or script
    /// call, each of a pipeline's or transaction's (without `MULTI` and `EXEC`).
    pub fn commands(&self) -> Vec<Vec<&[u8]>> {
        match &self.0 {
            Kind::Command(cmd) | Kind::Script(_, cmd) => vec![args_of(cmd)],
            Kind::Transaction(pipe) | Kind::Pipeline(pipe) => {
                pipe.cmd_iter().map(args_of).collect()
            }
        }
    }

    /// [`args`](Self::args) as text (lossy UTF-8), for tests that compare them.
    #[cfg(test)]
    pub(crate) fn text(&self) -> Vec<String> {
        self.args()
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    /// [`commands`](Self::commands) as text (lossy UTF-8), for tests that compare them.
    #[cfg(test)]
    pub(crate) fn commands_text(&self) -> Vec<Vec<String>> {
        self.commands()
            .iter()
            .map(|c| {
                c.iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            })
            .collect()
    }

    /// Sends `calls` in one pipeline (not a transaction), ignoring their replies. A script the
    /// server does not have is loaded and the whole pipeline sent once more: calls sent this way
    /// must be safe to repeat.
    pub(crate) async fn query_all(
        calls: &[Call],
        con: &mut impl ConnectionLike,
    ) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        for c in calls {
            match &c.0 {
                Kind::Command(cmd) | Kind::Script(_, cmd) => {
                    pipe.add_command(cmd.clone()).ignore();
                }
                Kind::Transaction(_) | Kind::Pipeline(_) => {
                    debug_assert!(false, "a pipeline does not nest in a pipeline")
                }
            }
        }
        match pipe.query_async::<()>(con).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                let mut loaded: Vec<&str> = Vec::new();
                for c in calls {
                    if let Kind::Script(script, _) = &c.0
                        && !loaded.contains(&script.get_hash())
                    {
                        script.load_async(con).await?;
                        loaded.push(script.get_hash());
                    }
                }
                pipe.query_async(con).await
            }
            res => res,
        }
    }

    /// Sends the call on `con`. A script the server does not have (`NOSCRIPT`: a restart, a
    /// failover, `SCRIPT FLUSH`) is loaded and the call sent once more, as
    /// [`redis::ScriptInvocation`] does.
    pub async fn query<T: FromRedisValue>(&self, con: &mut impl ConnectionLike) -> RedisResult<T> {
        match &self.0 {
            Kind::Command(cmd) => cmd.query_async(con).await,
            Kind::Transaction(pipe) | Kind::Pipeline(pipe) => pipe.query_async(con).await,
            Kind::Script(script, cmd) => {
                let res = match cmd.query_async(con).await {
                    Err(e)
                        if e.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                    {
                        script.load_async(con).await?;
                        cmd.query_async(con).await
                    }
                    res => res,
                };
                if let Err(e) = &res {
                    crate::client_metrics::script_failed(crate::scripts::name_of(script), e);
                }
                res
            }
        }
    }
}

/// A command's arguments, its name first (only plain arguments: Pythia builds no cursors).
fn args_of(cmd: &Cmd) -> Vec<&[u8]> {
    cmd.args_iter()
        .filter_map(|a| match a {
            redis::Arg::Simple(b) => Some(b),
            _ => None,
        })
        .collect()
}

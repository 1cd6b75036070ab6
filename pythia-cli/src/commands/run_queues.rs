//! `pythia run` over several queues: the `--queue` list (strict priority, first first) or
//! `--weights` (weighted priority) served by one worker through a `QueueSet`.

use pythia::Broker;
use pythia::exporter::MetricsServer;
use pythia::queues::QueueSet;
use pythia::redis::{
    ListBroker, RedisConnection, ReliableListBroker, ShardedStreamBroker, StreamBroker,
};

use super::run::RunArgs;
use super::run::{counted, gated};
use crate::cli::{BrokerKind, QueueArgs, sharded_queue};
use crate::error::CliError;

/// `--weights` item: `QUEUE=N`, N at least 1.
pub(crate) fn parse_weight(s: &str) -> Result<(String, u32), String> {
    let (name, weight) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected QUEUE=WEIGHT, e.g. critical=6"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("`{s}`: the queue name is empty"));
    }
    let weight: u32 = weight
        .trim()
        .parse()
        .map_err(|_| format!("`{s}`: the weight must be a whole number, e.g. {name}=3"))?;
    if weight == 0 {
        return Err(format!(
            "`{s}`: a weight must be at least 1 (leave the queue out instead)"
        ));
    }
    Ok((name.to_owned(), weight))
}

/// The queues of a run over several, with their priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueuePlan {
    /// In strict priority, highest first.
    Strict(Vec<String>),
    /// With weights.
    Weighted(Vec<(String, u32)>),
}

impl QueuePlan {
    /// The queue names, in order.
    fn names(&self) -> Vec<&str> {
        match self {
            Self::Strict(q) => q.iter().map(String::as_str).collect(),
            Self::Weighted(q) => q.iter().map(|(n, _)| n.as_str()).collect(),
        }
    }

    /// The set of brokers `make` builds, one per queue.
    fn build<B: Broker>(
        &self,
        mut make: impl FnMut(&str) -> Result<B, CliError>,
    ) -> Result<QueueSet<B>, CliError>
    where
        B::Token: Clone,
    {
        let set = match self {
            Self::Strict(q) => {
                let brokers = q.iter().map(|n| make(n)).collect::<Result<Vec<_>, _>>()?;
                QueueSet::strict(brokers)
            }
            Self::Weighted(q) => {
                let brokers = q
                    .iter()
                    .map(|(n, w)| make(n).map(|b| (b, *w)))
                    .collect::<Result<Vec<_>, _>>()?;
                QueueSet::weighted(brokers)
            }
        };
        set.map_err(CliError::usage)
    }
}

/// The plan of a run: `None` for one queue without `--weights` (a plain broker, as ever) and
/// for pub/sub, else the queues and their priority. Usage errors for names that do not match.
pub(crate) fn plan(
    qa: &QueueArgs,
    weights: &[(String, u32)],
) -> Result<Option<QueuePlan>, CliError> {
    if qa.broker == BrokerKind::Pubsub {
        if !weights.is_empty() {
            return Err(CliError::usage(
                "--weights is for list and stream brokers: pub/sub delivers every channel's \
                 messages as they are published, there is nothing to prioritise",
            ));
        }
        return Ok(None);
    }
    if !qa.pattern.is_empty() {
        return Err(CliError::usage(format!(
            "--pattern is for --broker pubsub, not {}",
            qa.broker.as_str()
        )));
    }
    let queues: Vec<&str> = qa.queue.iter().map(|q| q.trim()).collect();
    if queues.iter().any(|q| q.is_empty()) {
        return Err(CliError::usage("--queue must not be empty"));
    }
    for (i, q) in queues.iter().enumerate() {
        if queues[..i].contains(q) {
            return Err(CliError::usage(format!("--queue {q} is given twice")));
        }
    }
    for (i, (q, _)) in weights.iter().enumerate() {
        if weights[..i].iter().any(|(o, _)| o == q) {
            return Err(CliError::usage(format!("--weights names {q} twice")));
        }
    }
    if weights.is_empty() {
        return Ok((queues.len() > 1)
            .then(|| QueuePlan::Strict(queues.iter().map(|q| (*q).to_owned()).collect())));
    }
    if queues.is_empty() {
        // The weights name the queues.
        return Ok(Some(QueuePlan::Weighted(weights.to_vec())));
    }
    if let Some((q, _)) = weights.iter().find(|(w, _)| !queues.contains(&w.as_str())) {
        return Err(CliError::usage(format!(
            "--weights names {q}, which is not a --queue (the queues: {})",
            queues.join(", ")
        )));
    }
    let mut planned = Vec::with_capacity(queues.len());
    for q in &queues {
        let Some((_, w)) = weights.iter().find(|(n, _)| n == q) else {
            return Err(CliError::usage(format!(
                "--queue {q} has no weight: give every queue one in --weights (e.g. {q}=1)"
            )));
        };
        planned.push(((*q).to_owned(), *w));
    }
    Ok(Some(QueuePlan::Weighted(planned)))
}

/// Runs the worker over the queues of `plan`, all of the kind of `--broker`.
pub(super) async fn run(
    conn: &RedisConnection,
    plan: &QueuePlan,
    args: &RunArgs,
    metrics: Option<&MetricsServer>,
) -> Result<(), CliError> {
    let qa = &args.queue;
    let side = qa.list_side.into();
    let names = plan.names();
    tracing::info!(
        queues = names.join(","),
        priority = match plan {
            QueuePlan::Strict(_) => "strict",
            QueuePlan::Weighted(_) => "weighted",
        },
        "several queues in one worker"
    );
    if qa.shards > 1 {
        let set = plan.build(|n| {
            let queue = sharded_queue(qa.broker, n, qa.shards)?.expect("more than one shard");
            let b = ShardedStreamBroker::new(conn, &queue, &qa.group).with_start(qa.group_start);
            Ok(counted(conn, gated(conn, b, args), args))
        })?;
        return super::run::with_handler(set, args, metrics).await;
    }
    match qa.broker {
        BrokerKind::List => {
            let set = plan.build(|n| {
                Ok(counted(
                    conn,
                    gated(conn, ListBroker::new(conn, n).with_side(side), args),
                    args,
                ))
            })?;
            super::run::with_handler(set, args, metrics).await
        }
        BrokerKind::ReliableList => {
            let set = plan.build(|n| {
                let b = ReliableListBroker::new(conn, n).with_side(side);
                Ok(counted(conn, gated(conn, b, args), args))
            })?;
            if let Some(b) = set.get(0) {
                tracing::info!(consumer = b.inner().inner().consumer(), "consumer name");
            }
            super::run::with_handler(set, args, metrics).await
        }
        BrokerKind::Stream => {
            let set = plan.build(|n| {
                let b = StreamBroker::new(conn, n, &qa.group).with_start(qa.group_start);
                Ok(counted(conn, gated(conn, b, args), args))
            })?;
            super::run::with_handler(set, args, metrics).await
        }
        BrokerKind::Pubsub => unreachable!("pub/sub has no plan of several queues"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse_and_refuse_zero_and_junk() {
        assert_eq!(parse_weight("critical=6"), Ok(("critical".into(), 6)));
        assert_eq!(parse_weight(" low = 1 "), Ok(("low".into(), 1)));
        assert!(parse_weight("low=0").unwrap_err().contains("at least 1"));
        assert!(parse_weight("low").unwrap_err().contains("QUEUE=WEIGHT"));
        assert!(parse_weight("=3").unwrap_err().contains("empty"));
        assert!(parse_weight("low=x").unwrap_err().contains("whole number"));
    }
}

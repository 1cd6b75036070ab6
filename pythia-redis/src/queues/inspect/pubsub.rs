//! Pub/sub channels' inspection: subscribers per channel, the server's pattern
//! subscriptions, each channel's dead letters.

use std::collections::HashMap;

use redis::Value;

use super::InspectError;
use super::model::{ChannelReport, PubsubInspection};
use crate::connection::RedisConnection;
use crate::keys::QueueKeys;
use crate::queues::registry::QueueKind;

/// Inspects the pub/sub `channels`: subscribers per channel (`PUBSUB NUMSUB`; on a cluster,
/// where channels are sharded, `SHARDNUMSUB` summed over the nodes), pattern subscriptions of
/// the server (`PUBSUB NUMPAT`; none on a cluster) and each channel's dead letters.
pub async fn inspect_channels(
    conn: &RedisConnection,
    channels: &[String],
) -> Result<PubsubInspection, InspectError> {
    let prefix = conn.config().key_prefix();
    let mut m = conn.manager();
    let mut numsub = redis::cmd("PUBSUB");
    numsub.arg(if conn.is_cluster() {
        "SHARDNUMSUB"
    } else {
        "NUMSUB"
    });
    for c in channels {
        numsub.arg(c);
    }
    let (counts, numpat, dead): (Value, u64, Vec<u64>) = if conn.is_cluster() {
        let counts: Value = numsub
            .query_async(&mut m)
            .await
            .map_err(|e| conn.error("PUBSUB SHARDNUMSUB", e))?;
        // Each dead-letter list is in its own slot: one command each.
        let mut dead = Vec::with_capacity(channels.len());
        for c in channels {
            let len: u64 = redis::cmd("LLEN")
                .arg(QueueKeys::new(prefix, c).dead_letters())
                .query_async(&mut m)
                .await
                .map_err(|e| conn.error("LLEN", e))?;
            dead.push(len);
        }
        (counts, 0, dead)
    } else {
        let mut pipe = redis::pipe();
        pipe.add_command(numsub).cmd("PUBSUB").arg("NUMPAT");
        for c in channels {
            pipe.llen(QueueKeys::new(prefix, c).dead_letters());
        }
        let mut reply: Vec<Value> = pipe
            .query_async(&mut m)
            .await
            .map_err(|e| conn.error("PUBSUB", e))?;
        let dead = reply
            .split_off(2)
            .into_iter()
            .map(|v| redis::from_redis_value(v).unwrap_or(0))
            .collect();
        let numpat = reply
            .pop()
            .and_then(|v| redis::from_redis_value(v).ok())
            .unwrap_or(0);
        (reply.pop().unwrap_or(Value::Nil), numpat, dead)
    };
    let counts = subscriber_counts(counts);
    Ok(PubsubInspection {
        broker: QueueKind::Pubsub,
        channels: channels
            .iter()
            .zip(dead)
            .map(|(c, dead_letters)| ChannelReport {
                channel: c.clone(),
                subscribers: counts.get(c.as_str()).copied().unwrap_or(0),
                dead_letters,
            })
            .collect(),
        pattern_subscriptions: numpat,
    })
}

/// A `NUMSUB` reply — `[channel, count, …]` (RESP2) or a map (RESP3) — by channel.
fn subscriber_counts(reply: Value) -> HashMap<String, u64> {
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Array(flat) => {
            let mut it = flat.into_iter();
            std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect()
        }
        Value::Map(map) => map,
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter_map(|(k, v)| {
            Some((
                redis::from_redis_value(k).ok()?,
                redis::from_redis_value(v).ok()?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numsub_replies_parse_in_both_shapes() {
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let resp2 = Value::Array(vec![b("a"), Value::Int(2), b("b"), Value::Int(0)]);
        let counts = subscriber_counts(resp2);
        assert_eq!((counts["a"], counts["b"]), (2, 0));
        let resp3 = Value::Map(vec![(b("a"), Value::Int(3))]);
        assert_eq!(subscriber_counts(resp3)["a"], 3);
    }
}

//! A [`PubSubBroker`](super::PubSubBroker)'s subscription on a Redis Cluster: sharded pub/sub
//! (`SSUBSCRIBE`) through one RESP3 cluster connection, and the signs that it was lost.
//!
//! # Why the broker, not the redis crate, restores the subscription
//!
//! redis 1.8's cluster connection re-sends its tracked subscriptions to a node it reconnects to,
//! and to the new owners of slots after it refreshes its slot map. Against a real cluster
//! (redis-server 7.0) that is not enough:
//!
//! * **A master killed and its replica promoted.** The connection reports the drop (a
//!   `Disconnection` push), then keeps reconnecting to the dead address: its slot map is
//!   refreshed only after a `MOVED` reply, which a subscriber that sends nothing never gets (a
//!   command routed to the dead master's slot goes to the shard's replica or a random node,
//!   which answer without `MOVED`). The subscription stayed silent for good.
//! * **A graceful `CLUSTER FAILOVER` or a slot migration.** The former owner sends a
//!   `sunsubscribe` push for the channels of the slots it lost; the crate takes it as a
//!   confirmed unsubscription, forgets the channel and never subscribes it again.
//!
//! So [`classify`] reports either as [`Event::Lost`], and the broker drops the whole cluster
//! connection and opens a new one (a fresh slot map from the seed nodes, every channel
//! subscribed again), with the same backoff as on a standalone server. The subscriber sends no
//! keyed command after subscribing, so the crate never refreshes that connection's slot map and
//! never resubscribes by itself (which could subscribe a channel on two nodes of a shard, and
//! deliver its messages twice).
//!
//! # Where each subscription lives
//!
//! `SSUBSCRIBE` is routed like a read: to the slot's master, or, when the crate has no
//! connection to it, to one of the shard's replicas, which serve sharded pub/sub for their
//! master's slots and receive its messages from the master. [`ShardedLink::check`] asks the
//! node each slot's subscription went to for its `ROLE` (a `PING` that also says where it
//! landed; a plain `PING` for a user whose ACL denies `ROLE`, an `@admin` command):
//!
//! * a master, or a replica that lost its master (the failover candidate: it keeps its
//!   subscribers when promoted): in place;
//! * a replica still linked to its master: the slot map was stale (the cluster had not yet
//!   agreed on a failover), so messages would arrive only through the master and `SPUBLISH`
//!   would not count this subscriber. The link counts as lost, and is opened again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, try_join_all};
use pythia_core::BrokerError;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::connection::RedisConnection;

/// One subscription of every channel, each `SSUBSCRIBE`d on the node that serves its slot.
pub(super) struct ShardedLink {
    conn: ClusterConnection,
    pushes: UnboundedReceiver<PushInfo>,
    /// One channel of each distinct slot: a command routed by it reaches the node holding the
    /// subscriptions of that slot.
    probes: Arc<[String]>,
}

/// What the cluster connection pushed.
pub(super) enum Event {
    /// A published message: its channel and payload.
    Message(Vec<u8>, Vec<u8>),
    /// The subscription is (or may be) gone; why.
    Lost(String),
    /// A confirmation or another push that changes nothing.
    Other,
}

impl ShardedLink {
    /// Opens a cluster connection, subscribes every channel and [checks](Self::check) where
    /// the subscriptions landed. `SSUBSCRIBE` takes channels of one slot only, so there is one
    /// per distinct slot, sent together; each returns once its node confirmed.
    pub(super) async fn open(
        conn: &RedisConnection,
        channels: &[String],
        limit: Duration,
    ) -> Result<Self, BrokerError> {
        let (tx, pushes) = unbounded_channel();
        let cluster = conn.cluster_subscriber(tx).await?;
        let groups = by_slot(channels);
        let subscribing = try_join_all(groups.iter().map(|group| {
            let mut cluster = cluster.clone();
            async move { cluster.ssubscribe(group).await }
        }));
        match tokio::time::timeout(limit, subscribing).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(conn.error("SSUBSCRIBE", e)),
            Err(_) => {
                return Err(BrokerError::connection(format!(
                    "Redis SSUBSCRIBE failed ({}): no reply within {limit:?}",
                    conn.config().masked_url()
                )));
            }
        }
        let link = Self {
            conn: cluster,
            pushes,
            probes: groups.into_iter().map(|mut g| g.swap_remove(0)).collect(),
        };
        link.check(limit).await.map_err(|why| {
            BrokerError::connection(format!(
                "sharded pub/sub on {}: {why}",
                conn.config().masked_url()
            ))
        })?;
        Ok(link)
    }

    /// Waits for pushes and appends up to `max` to `out`; false once the connection is gone.
    pub(super) async fn recv(&mut self, out: &mut Vec<PushInfo>, max: usize) -> bool {
        self.pushes.recv_many(out, max).await > 0
    }

    /// Appends up to `max` pushes already received, without waiting.
    pub(super) fn received_now(&mut self, out: &mut Vec<PushInfo>, max: usize) {
        for _ in 0..max {
            match self.pushes.try_recv() {
                Ok(push) => out.push(push),
                Err(_) => break,
            }
        }
    }

    /// `ROLE` on the node of each slot the subscription covers (routed as `SSUBSCRIBE` was),
    /// all answered within `limit`, and each node [in place](self#where-each-subscription-lives).
    /// The cluster's counterpart of the standalone subscription's `PING`: a node that stalls,
    /// or a network path that died without a reset, fails it. A node whose connection dropped
    /// is reported by its `Disconnection` push instead (the crate then routes to another node
    /// of the shard, which may answer this).
    pub(super) fn check(&self, limit: Duration) -> BoxFuture<'static, Result<(), String>> {
        let cluster = self.conn.clone();
        let probes = Arc::clone(&self.probes);
        Box::pin(async move {
            let asking = probes.iter().map(|channel| {
                let mut cluster = cluster.clone();
                let to = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::with_key(channel, SlotAddr::ReplicaOptional),
                ));
                async move {
                    let failed = |e: redis::RedisError| {
                        format!("the node of channel {channel:?} did not answer: {e}")
                    };
                    let role = cluster.route_command(redis::cmd("ROLE"), to.clone()).await;
                    let reply = match role.and_then(Value::extract_error) {
                        Ok(reply) => reply,
                        // ROLE is an @admin command: a user without it gets the stall check.
                        Err(e) if e.code() == Some("NOPERM") => {
                            return cluster
                                .route_command(redis::cmd("PING"), to)
                                .await
                                .and_then(Value::extract_error)
                                .map(drop)
                                .map_err(failed);
                        }
                        Err(e) => return Err(failed(e)),
                    };
                    match placement(&reply) {
                        Placement::InPlace => Ok(()),
                        Placement::LinkedReplica => Err(format!(
                            "channel {channel:?} is subscribed on a replica of its slot's master \
                             (a stale slot map after a failover)"
                        )),
                        Placement::Unknown => Err(format!(
                            "unexpected ROLE reply from the node of channel {channel:?}: {reply:?}"
                        )),
                    }
                }
            });
            match tokio::time::timeout(limit, try_join_all(asking)).await {
                Ok(res) => res.map(drop),
                Err(_) => Err(format!("no reply to ROLE within {limit:?}")),
            }
        })
    }
}

/// Whether a node is a right place for a slot's subscriptions, from its `ROLE` reply.
#[derive(Debug, PartialEq, Eq)]
enum Placement {
    /// A master, or a replica whose link to its master is down.
    InPlace,
    /// A replica linked to its master.
    LinkedReplica,
    Unknown,
}

fn placement(role: &Value) -> Placement {
    let Value::Array(fields) = role else {
        return Placement::Unknown;
    };
    let text = |i: usize| match fields.get(i) {
        Some(Value::BulkString(b)) => std::str::from_utf8(b).ok(),
        Some(Value::SimpleString(s)) => Some(s.as_str()),
        _ => None,
    };
    match (text(0), text(3)) {
        (Some("master"), _) => Placement::InPlace,
        (Some("slave"), Some("connected")) => Placement::LinkedReplica,
        (Some("slave"), Some(_)) => Placement::InPlace,
        _ => Placement::Unknown,
    }
}

/// Classifies one push of the subscriber's cluster connection.
pub(super) fn classify(push: PushInfo) -> Event {
    match push.kind {
        PushKind::SMessage => {
            let mut data = push.data.into_iter();
            match (data.next(), data.next()) {
                (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) => {
                    Event::Message(channel, payload)
                }
                other => {
                    tracing::debug!(push = ?other, "pub/sub: malformed smessage push ignored");
                    Event::Other
                }
            }
        }
        // The broker never unsubscribes a live link: this is the server dropping the channel
        // because its slot left the node (failover, resharding).
        PushKind::SUnsubscribe => {
            let channel = match push.data.first() {
                Some(Value::BulkString(c)) => String::from_utf8_lossy(c).into_owned(),
                _ => "?".to_owned(),
            };
            Event::Lost(format!(
                "the cluster unsubscribed channel {channel:?} (its slot moved to another node)"
            ))
        }
        PushKind::Disconnection => {
            Event::Lost("the connection to a cluster node dropped".to_owned())
        }
        _ => Event::Other,
    }
}

/// The channels grouped by hash slot, in first-seen order.
fn by_slot(channels: &[String]) -> Vec<Vec<String>> {
    let mut index: HashMap<Slot, usize> = HashMap::new();
    let mut groups: Vec<Vec<String>> = Vec::new();
    for channel in channels {
        let slot = Slot::for_key(channel);
        match index.get(&slot) {
            Some(&i) => groups[i].push(channel.clone()),
            None => {
                index.insert(slot, groups.len());
                groups.push(vec![channel.clone()]);
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn channels_of_one_slot_share_a_group() {
        let channels: Vec<String> = ["{a}x", "b", "{a}y", "b", "c"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let groups = by_slot(&channels);
        assert_eq!(groups[0], ["{a}x", "{a}y"]);
        assert!(groups.iter().all(|g| {
            let slot = Slot::for_key(&g[0]);
            g.iter().all(|c| Slot::for_key(c) == slot)
        }));
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), 5);
    }

    #[test]
    fn pushes_are_classified() {
        let push = |kind, data| PushInfo { kind, data };
        assert!(matches!(
            classify(push(PushKind::SMessage, vec![bulk("c"), bulk("p")])),
            Event::Message(c, p) if c == b"c" && p == b"p"
        ));
        assert!(matches!(
            classify(push(PushKind::SUnsubscribe, vec![bulk("c"), Value::Int(0)])),
            Event::Lost(why) if why.contains("\"c\"")
        ));
        assert!(matches!(
            classify(push(PushKind::Disconnection, vec![])),
            Event::Lost(_)
        ));
        assert!(matches!(
            classify(push(PushKind::SSubscribe, vec![bulk("c"), Value::Int(1)])),
            Event::Other
        ));
    }

    #[test]
    fn a_replica_is_in_place_only_once_its_master_is_gone() {
        let master = Value::Array(vec![bulk("master"), Value::Int(42), Value::Array(vec![])]);
        let replica = |state: &str| {
            Value::Array(vec![
                bulk("slave"),
                bulk("127.0.0.1"),
                Value::Int(7000),
                bulk(state),
                Value::Int(42),
            ])
        };
        assert_eq!(placement(&master), Placement::InPlace);
        assert_eq!(placement(&replica("connected")), Placement::LinkedReplica);
        assert_eq!(placement(&replica("connect")), Placement::InPlace);
        assert_eq!(placement(&replica("sync")), Placement::InPlace);
        assert_eq!(placement(&Value::Nil), Placement::Unknown);
    }
}

//! `queues::inspect` against a real redis-server: the typed inspection of each kind of queue
//! (list, reliable list, stream, sharded stream, channels), its errors, and its JSON, which
//! `pythia inspect --json` prints.

use pythia_test_support as support;

use pythia_core::{Broker, Message};
use pythia_redis::queues::inspect::{
    Heartbeat, InspectError, InspectOptions, QueueInspection, detect_kind, inspect_channels,
    inspect_queue, inspect_sharded,
};
use pythia_redis::queues::{QueueKind, pause};
use pythia_redis::{
    GroupStart, ListProducer, QueueKeys, ReliableListBroker, ShardedQueue, ShardedStreamBroker,
    ShardedStreamProducer, StreamBroker, StreamProducer,
};
use support::{RedisServer, cmd};

#[tokio::test]
async fn a_reliable_list_shows_its_consumers_heartbeats_and_memory() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let msgs: Vec<Message> = (0..5).map(|i| Message::new(format!("m{i}"))).collect();
    ListProducer::new(&conn, "jobs")
        .push_many(&msgs)
        .await
        .unwrap();
    let live = ReliableListBroker::new(&conn, "jobs");
    assert_eq!(live.fetch(2).await.unwrap().len(), 2);
    let _: i64 = cmd(&conn, &["SADD", "pythia:{jobs}:consumers", "ghost"]).await;
    let _: i64 = cmd(&conn, &["HSET", "pythia:{jobs}:inflight:ghost", "1", "x"]).await;
    let _: i64 = cmd(&conn, &["ZADD", "pythia:{jobs}:scheduled", "1", "retry"]).await;
    let _: i64 = cmd(&conn, &["LPUSH", "pythia:{jobs}:dlq", "dead"]).await;
    pause(&conn, "jobs").await.unwrap();

    assert_eq!(
        detect_kind(&conn, "jobs").await.unwrap(),
        QueueKind::ReliableList
    );
    let got = inspect_queue(&conn, "jobs", &InspectOptions::new())
        .await
        .unwrap();
    assert_eq!(got.paused(), Some(true));
    assert!(got.exists());
    let QueueInspection::List(l) = &got else {
        panic!("not a list: {got:?}")
    };
    assert_eq!(l.broker, QueueKind::ReliableList);
    assert_eq!(
        (l.depth, l.in_flight, l.scheduled, l.dead_letters),
        (3, 3, 1, 1)
    );
    assert!(l.oldest_age_seconds.unwrap() < 60.0);
    assert!(l.memory_bytes.queue.unwrap() > 0 && l.memory_bytes.pythia_keys.unwrap() > 0);
    let names: Vec<&str> = l.consumers.iter().map(|c| c.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "consumers by name");
    let me = l
        .consumers
        .iter()
        .find(|c| c.name == live.consumer())
        .unwrap();
    assert_eq!((me.in_flight, me.alive), (2, true));
    assert!(matches!(me.heartbeat(), Heartbeat::Alive(Some(left)) if !left.is_zero()));
    let ghost = l.consumers.iter().find(|c| c.name == "ghost").unwrap();
    assert_eq!((ghost.in_flight, ghost.heartbeat()), (1, Heartbeat::Dead));

    // The JSON: the field names `pythia inspect --json` always had.
    let doc = serde_json::to_value(&got).unwrap();
    assert_eq!(doc["broker"], "reliable-list");
    assert_eq!(doc["queue"], "jobs");
    assert_eq!(doc["paused"], true);
    assert_eq!(doc["today"]["processed"], 0);
    assert_eq!(doc["consumers"][0]["name"], "ghost");
    assert_eq!(
        doc["consumers"][0]["heartbeat_ttl_ms"],
        serde_json::Value::Null
    );
    assert!(doc["memory_bytes"]["pythia_keys"].as_u64().unwrap() > 0);

    // Nothing under a name: a list with nothing in it, which does not exist.
    let none = inspect_queue(&conn, "nothing", &InspectOptions::new())
        .await
        .unwrap();
    assert!(!none.exists());
}

#[tokio::test]
async fn a_stream_shows_its_groups_and_consumers_and_refuses_what_is_not_there() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let entries: Vec<Message> = (0..4).map(|i| Message::new(format!("e{i}"))).collect();
    StreamProducer::new(&conn, "events")
        .add_many(&entries)
        .await
        .unwrap();
    let reader = StreamBroker::new(&conn, "events", "billing").with_start(GroupStart::Beginning);
    let mut got = 0;
    while got < 2 {
        got += reader.fetch(2 - got).await.unwrap().len();
    }
    // A consumer of another library: no registration, no heartbeat.
    let _: redis::Value = cmd(
        &conn,
        &[
            "XREADGROUP",
            "GROUP",
            "billing",
            "stranger",
            "COUNT",
            "1",
            "STREAMS",
            "events",
            ">",
        ],
    )
    .await;

    let got = inspect_queue(&conn, "events", &InspectOptions::new())
        .await
        .unwrap();
    let QueueInspection::Stream(s) = &got else {
        panic!("not a stream: {got:?}")
    };
    assert_eq!((s.length, s.dead_letters, s.paused), (4, 0, Some(false)));
    let g = &s.groups[0];
    assert_eq!((g.name.as_str(), g.lag, g.pending), ("billing", 1, 3));
    assert!(!g.lag_lower_bound);
    assert!(g.oldest_age_seconds.is_some());
    let mine = g
        .consumers
        .iter()
        .find(|c| c.name == reader.consumer())
        .unwrap();
    assert_eq!(
        (mine.pending, mine.pythia, mine.alive),
        (2, true, Some(true))
    );
    let stranger = g.consumers.iter().find(|c| c.name == "stranger").unwrap();
    assert_eq!(
        (stranger.pythia, stranger.heartbeat()),
        (false, Heartbeat::None)
    );
    let doc = serde_json::to_value(&got).unwrap();
    assert_eq!(doc["broker"], "stream");
    assert_eq!(
        doc["groups"][0]["last_delivered_id"],
        g.last_delivered_id.as_str()
    );
    assert!(doc.get("shard").is_none(), "{doc}");
    assert!(
        doc["groups"][0].get("unlisted_consumers").is_none(),
        "every registered consumer is listed: {doc}"
    );

    let only = InspectOptions::new().with_group("nope");
    match inspect_queue(&conn, "events", &only).await {
        Err(e @ InspectError::NoSuchGroup { .. }) => {
            assert!(e.is_usage());
            assert_eq!(
                e.to_string(),
                "stream \"events\" has no consumer group \"nope\" (groups: billing)"
            );
        }
        other => panic!("{other:?}"),
    }
    let as_list = InspectOptions::new().with_kind(QueueKind::List);
    match inspect_queue(&conn, "events", &as_list).await {
        Err(InspectError::WrongType {
            found, expected, ..
        }) => {
            assert_eq!((found.as_str(), expected), ("stream", "list"));
        }
        other => panic!("{other:?}"),
    }
    let _: String = cmd(&conn, &["SET", "plain", "1"]).await;
    let e = detect_kind(&conn, "plain").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "\"plain\" is a Redis string, not a queue (a list or a stream)"
    );
}

#[tokio::test]
async fn a_stream_group_shows_the_registered_consumers_redis_does_not_list() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    StreamProducer::new(&conn, "events")
        .add_many(&[Message::new("e0"), Message::new("e1")])
        .await
        .unwrap();
    let reader = StreamBroker::new(&conn, "events", "billing").with_start(GroupStart::Beginning);
    let mut got = 0;
    while got < 2 {
        got += reader.fetch(2 - got).await.unwrap().len();
    }
    // One registered and heartbeating that has not read yet; one left registered, dead, after
    // its group was recreated: Redis lists neither in the group.
    let keys = QueueKeys::new("pythia", "events");
    let _: i64 = cmd(
        &conn,
        &["SADD", &keys.group_consumers("billing"), "early", "stale"],
    )
    .await;
    let _: String = cmd(
        &conn,
        &["SET", &keys.heartbeat("early"), "1", "PX", "60000"],
    )
    .await;

    let got = inspect_queue(&conn, "events", &InspectOptions::new())
        .await
        .unwrap();
    let QueueInspection::Stream(s) = &got else {
        panic!("not a stream: {got:?}")
    };
    let g = &s.groups[0];
    let listed: Vec<&str> = g.consumers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(listed, [reader.consumer()]);
    let unlisted: Vec<_> = g
        .unlisted_consumers
        .iter()
        .map(|c| (c.name.as_str(), c.pending, c.idle_ms, c.pythia, c.alive))
        .collect();
    assert_eq!(
        unlisted,
        [
            ("early", 0, None, true, Some(true)),
            ("stale", 0, None, true, Some(false))
        ]
    );
    assert!(
        g.unlisted_consumers[0]
            .heartbeat_ttl_ms
            .is_some_and(|ms| ms > 0)
    );
    assert_eq!(g.unlisted_consumers[1].heartbeat(), Heartbeat::Dead);
    // The consumers Redis lists keep their meaning: the heartbeats are theirs only.
    assert_eq!(got.heartbeats().len(), 1);
    let doc = serde_json::to_value(&got).unwrap();
    let names: Vec<&str> = doc["groups"][0]["unlisted_consumers"]
        .as_array()
        .unwrap_or_else(|| panic!("{doc}"))
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["early", "stale"]);
    assert!(doc["groups"][0]["unlisted_consumers"][1]["idle_ms"].is_null());
}

#[tokio::test]
async fn a_sharded_stream_sums_its_shards_and_compares_its_layout() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let queue = ShardedQueue::new("orders", 2).unwrap();
    let producer = ShardedStreamProducer::new(&conn, &queue);
    for i in 0..6 {
        producer.add(&Message::new(format!("o{i}"))).await.unwrap();
    }
    let consumer =
        ShardedStreamBroker::new(&conn, &queue, "ship").with_start(GroupStart::Beginning);
    let mut fetched = 0;
    for _ in 0..20 {
        fetched += consumer.fetch(1).await.unwrap().len();
        if fetched >= 1 {
            break;
        }
    }
    assert_eq!(fetched, 1);

    let s = inspect_sharded(&conn, &queue, None).await.unwrap();
    assert_eq!((s.shard_count, s.length, s.shards.len()), (2, 6, 2));
    assert_eq!(s.layout.matches, Some(true));
    assert_eq!(s.layout.stored_shards, Some(2));
    assert_eq!(s.shards[1].shard, Some(1));
    assert_eq!(s.shards.iter().map(|x| x.length).sum::<u64>(), 6);
    assert!(s.shards.iter().all(|x| x.paused.is_none()));
    let g = s.groups.iter().find(|g| g.name == "ship").unwrap();
    assert_eq!(g.pending, 1);
    assert!(g.shards_with_group >= 1);
    // A sharded queue named by the registry is inspected with its stored layout.
    let by_kind = InspectOptions::new().with_kind(QueueKind::ShardedStream);
    let QueueInspection::Sharded(again) = inspect_queue(&conn, "orders", &by_kind).await.unwrap()
    else {
        panic!("not sharded")
    };
    assert_eq!((again.shard_count, again.length), (2, 6));
    // Another shard count than the stored one: the layout says so.
    let other = ShardedQueue::new("orders", 3).unwrap();
    let s = inspect_sharded(&conn, &other, None).await.unwrap();
    assert_eq!(
        (s.layout.matches, s.layout.stored_shards),
        (Some(false), Some(2))
    );
    let e = inspect_sharded(&conn, &queue, Some("nope"))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "no shard of the sharded queue \"orders\" has a consumer group \"nope\""
    );
    let doc = serde_json::to_value(inspect_sharded(&conn, &queue, None).await.unwrap()).unwrap();
    assert_eq!(doc["broker"], "stream");
    assert_eq!(doc["shards"][0]["shard"], 0);
    assert!(
        doc["layout"]["key"]
            .as_str()
            .unwrap()
            .ends_with(":{orders}:shards")
    );
}

#[tokio::test]
async fn channels_show_their_subscribers_and_dead_letters() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let mut sub = conn.pubsub().await.unwrap();
    sub.subscribe("alerts").await.unwrap();
    let _: i64 = cmd(&conn, &["LPUSH", "pythia:{quiet}:dlq", "a", "b"]).await;
    let p = inspect_channels(&conn, &["alerts".to_owned(), "quiet".to_owned()])
        .await
        .unwrap();
    assert_eq!(p.channels.len(), 2);
    assert_eq!(
        (p.channels[0].channel.as_str(), p.channels[0].subscribers),
        ("alerts", 1)
    );
    assert_eq!(
        (p.channels[1].subscribers, p.channels[1].dead_letters),
        (0, 2)
    );
    assert_eq!(p.pattern_subscriptions, 0);
    let doc = serde_json::to_value(&p).unwrap();
    assert_eq!(doc["broker"], "pubsub");
    assert_eq!(doc["channels"][1]["dead_letters"], 2);
}
